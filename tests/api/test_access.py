"""Anonymous and keyed callers against the restricted product: readable with the role, and without it
no route leaks it — not answers, hits, catalog entries, counts, releases, error messages or provenance."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from api.auth import create_key
from tests.api.conftest import PUBLIC, RESTRICTED, Api, sse_events

pytestmark = pytest.mark.slow

RESTRICTED_QUESTIONS = [
    "What is the midpoint salary for an L4 software engineer in zone A?",
    "How is someone's annual bonus payout worked out?",
    "How do new-hire stock options vest?",
]
CHAT = {"model": "meshrag-extractive"}


def _without_ids(body: dict) -> str:
    """An error body with its request id and the product id it names removed, for comparisons."""
    err = dict(body["error"])
    err.pop("request_id")
    return json.dumps(err, sort_keys=True)


def test_people_partner_reads_the_restricted_product(api: Api):
    with api.client("pat") as c:
        detail = c.get(f"/v1/catalog/{RESTRICTED}")
        assert detail.status_code == 200 and detail.json()["classification"] == "restricted"
        assert c.get("/v1/catalog").json()["count"] == 2
        answer = c.post("/v1/ask", json={"question": RESTRICTED_QUESTIONS[0]}).json()
    assert not answer["answer"]["abstained"]
    assert RESTRICTED in {cit["product_id"] for cit in answer["answer"]["citations"]}
    assert "176,000" in answer["answer"]["text"]


@pytest.mark.parametrize("who", [None, "sam", "ana"])
def test_no_route_leaks_the_restricted_product(api: Api, who: str | None):
    markers = api.restricted_markers()
    seen: list[tuple[str, str]] = []  # (what, body)
    with api.client(who) as c:

        def call(what: str, method: str, path: str, **kwargs) -> dict | list | str:
            r = c.request(method, path, **kwargs)
            seen.append((what, r.text))
            assert r.status_code < 500, (what, r.text)
            return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

        for q in RESTRICTED_QUESTIONS:
            hits = call("search", "POST", "/v1/search", json={"query": q, "k": 50})
            assert hits["hits"] and RESTRICTED not in hits["params"]["products_searched"]
        for q in RESTRICTED_QUESTIONS[:2]:
            call("ask", "POST", "/v1/ask", json={"question": q, "k": 20})
        call("ask stream", "POST", "/v1/ask", json={"question": RESTRICTED_QUESTIONS[0], "stream": True})
        call(
            "chat",
            "POST",
            "/v1/chat/completions",
            json=CHAT | {"messages": [{"role": "user", "content": RESTRICTED_QUESTIONS[0]}]},
        )
        call(
            "chat stream",
            "POST",
            "/v1/chat/completions",
            json=CHAT
            | {
                "stream": True,
                "messages": [
                    {"role": "user", "content": "pay bands"},
                    {"role": "user", "content": "and the bonus plan?"},
                ],
            },
        )

        listing = call("catalog", "GET", "/v1/catalog")
        expected = 5 if who == "ana" else 1
        assert listing["count"] == expected == len(listing["products"])
        for params in (
            {"classification": "restricted"},
            {"domain": "people"},
            {"owner": "People Operations"},
            {"q": "compensation handbook pay bands bonus equity"},
            {"tag": "compensation"},
        ):
            found = call(f"catalog {params}", "GET", "/v1/catalog", params=params)
            assert RESTRICTED not in {p["id"] for p in found["products"]}
            if "q" not in params:
                assert found["count"] == 0, params

        hidden = c.get(f"/v1/catalog/{RESTRICTED}")
        missing = c.get("/v1/catalog/people.no-such-handbook")
        seen.append(("catalog detail (restricted)", hidden.text.replace(RESTRICTED, "<asked>")))
        assert hidden.status_code == missing.status_code == 404
        assert _without_ids(hidden.json()).replace(RESTRICTED, "X") == _without_ids(missing.json()).replace(
            "people.no-such-handbook", "X"
        )

        for path, body in (("/v1/search", {"query": "pay"}), ("/v1/ask", {"question": "pay?"})):
            named = c.post(path, json=body | {"products": [RESTRICTED]})
            other = c.post(path, json=body | {"products": ["people.no-such-handbook"]})
            seen.append((f"{path} product filter", named.text.replace(RESTRICTED, "<asked>")))
            assert named.status_code == other.status_code == 404
            assert _without_ids(named.json()).replace(RESTRICTED, "X") == _without_ids(other.json()).replace(
                "people.no-such-handbook", "X"
            )
        chat_named = c.post(
            "/v1/chat/completions",
            json=CHAT
            | {"messages": [{"role": "user", "content": "pay?"}], "meshrag": {"products": [RESTRICTED]}},
        )
        seen.append(("chat product filter", chat_named.text.replace(RESTRICTED, "<asked>")))
        assert chat_named.status_code == 404

        releases = call("releases", "GET", "/v1/releases")
        assert releases["releases"][-1]["products"] == expected
        call("release detail", "GET", f"/v1/releases/{releases['current']}")
        call("release current", "GET", "/v1/releases/current")
        call("models", "GET", "/v1/models")
        call("metrics", "GET", "/metrics")
        call("openapi", "GET", "/openapi.json")

    for what, body in seen:
        for marker in markers:
            assert marker not in body, f"{what} leaks {marker!r}"
    assert not re.search(r"people\.compensation", "".join(b for _, b in seen))


def test_provenance_of_another_principal_looks_missing(api: Api):
    with api.client("pat") as pat:
        asked = pat.post("/v1/ask", json={"question": RESTRICTED_QUESTIONS[1]}).json()
        rid = asked["request_id"]
        assert pat.get(f"/v1/provenance/{rid}").status_code == 200
    with api.client("ana2") as other:
        theirs = other.get(f"/v1/provenance/{rid}")
        nothing = other.get("/v1/provenance/0123456789abcdef0123456789abcdef")
    assert theirs.status_code == nothing.status_code == 404
    assert _without_ids(theirs.json()).replace(rid, "X") == _without_ids(nothing.json()).replace(
        "0123456789abcdef0123456789abcdef", "X"
    )
    for marker in api.restricted_markers():
        assert marker not in theirs.text
    with api.client() as anonymous:
        anon = anonymous.get(f"/v1/provenance/{rid}")
    assert anon.status_code == 401 and anon.headers["www-authenticate"].startswith("Bearer")
    assert RESTRICTED_QUESTIONS[1] not in anon.text + theirs.text


def test_provenance_needs_the_readers_current_roles_over_every_cited_product(api: Api):
    confidential = "finance.revenue-reporting"
    keys_file = api.data_dir.parent / "api-keys.json"

    def client(key: str) -> httpx.Client:
        return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)

    analyst = create_key(keys_file, "dana", ["analyst"]).key
    with client(analyst) as c:
        asked = c.post("/v1/ask", json={"question": "How is net revenue defined?"}).json()
    rid = asked["request_id"]
    cited = [cit for cit in asked["answer"]["citations"] if cit["product_id"] == confidential]
    assert cited

    # A second key under the same principal name, without the role (the key file is re-read).
    employee = create_key(keys_file, "dana", ["employee"]).key
    missing = uuid.uuid4().hex
    assert len(missing) == len(rid)
    with client(employee) as c:
        theirs = c.get(f"/v1/provenance/{rid}", headers={"X-Request-ID": "same-probe"})
        nothing = c.get(f"/v1/provenance/{missing}", headers={"X-Request-ID": "same-probe"})
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.content.replace(rid.encode(), b"ID") == nothing.content.replace(missing.encode(), b"ID")
    assert theirs.headers["content-type"] == nothing.headers["content-type"]
    assert theirs.headers["content-length"] == nothing.headers["content-length"]
    assert confidential not in theirs.text
    assert all(cit["text"] not in theirs.text for cit in cited)

    with client(analyst) as c:
        own = c.get(f"/v1/provenance/{rid}")
    assert own.status_code == 200
    assert confidential in {cit["product_id"] for cit in own.json()["citations"]}


def test_anonymous_and_keyless_roles_see_only_public(api: Api):
    for who in (None, "sam"):
        with api.client(who) as c:
            body = c.post("/v1/search", json={"query": "net revenue definition", "k": 20}).json()
            assert {h["product_id"] for h in body["hits"]} == {PUBLIC}
            stream = c.post(
                "/v1/ask", json={"question": "How do new-hire stock options vest?", "stream": True}
            )
            events = sse_events(stream.text)
            retrieval = next(data for name, data in events if name == "retrieval")
            assert {h["product_id"] for h in retrieval["hits"]} <= {PUBLIC}
