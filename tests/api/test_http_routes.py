"""Every route of the real app over real HTTP: shapes, errors, limits, request ids, health, metrics."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import PUBLIC, RESTRICTED, Api

pytestmark = pytest.mark.slow

QUESTION = "What is a knowledge product?"


def counter(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when it is not exposed yet)."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_search_returns_ranked_hits_with_provenance(api: Api):
    with api.client("ana") as c:
        r = c.post("/v1/search", json={"query": "How is net revenue defined?", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    assert len(body["hits"]) == 5 and [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
    top = body["hits"][0]
    assert top["product_id"] == "finance.revenue-reporting" and top["text"] and top["doc_revision"]
    assert top["release_id"] == body["release_id"] and body["params"]["k"] == 5
    assert RESTRICTED not in body["params"]["products_searched"]


def test_ask_json_answer_cites_and_is_recorded(api: Api):
    with api.client("ana") as c:
        r = c.post("/v1/ask", json={"question": "Who owns the net revenue product?"})
        assert r.status_code == 200, r.text
        body = r.json()
        answer = body["answer"]
        assert not answer["abstained"] and answer["citations"]
        for cit in answer["citations"]:
            assert f"[{cit['marker']}]" in answer["text"]
        cited = {c["product_id"] for c in answer["citations"]}
        assert "finance.revenue-reporting" in cited
        product = next(p for p in body["products"] if p["id"] == "finance.revenue-reporting")
        assert product["owner"] == "Hannah Lindqvist" and product["freshness"]["status"] in ("fresh", "stale")
        assert body["retrieval"] and all(len(h["snippet"]) <= 241 for h in body["retrieval"])
        assert set(body["timings_ms"]) >= {"search", "answer", "provenance", "total"}

        record = c.get(f"/v1/provenance/{body['request_id']}")
    assert record.status_code == 200, record.text
    rec = record.json()
    assert rec["principal"] == {"id": "ana", "roles": ["analyst"]}
    assert rec["question"] == "Who owns the net revenue product?" and rec["answer"] == answer["text"]
    assert [c["chunk_id"] for c in rec["citations"]] == [c["chunk_id"] for c in answer["citations"]]
    assert len(rec["hash"]) == 64 and rec["release_id"] == body["release_id"]


def test_abstains_and_names_closest_readable_products(api: Api):
    with api.client() as c:
        r = c.post("/v1/ask", json={"question": "What is the L4 pay band midpoint for engineers?"})
    assert r.status_code == 200
    answer = r.json()["answer"]
    assert answer["abstained"] and answer["citations"] == []
    assert answer["closest_products"] == [PUBLIC]


def test_catalog_list_filters_search_and_detail(api: Api):
    with api.client("ana") as c:
        everything = c.get("/v1/catalog").json()
        assert everything["count"] == 5 == len(everything["products"])
        assert c.get("/v1/catalog", params={"domain": "customer"}).json()["count"] == 2
        assert c.get("/v1/catalog", params={"classification": "internal"}).json()["count"] == 2
        assert (
            c.get("/v1/catalog", params={"owner": "Priya Raman"}).json()["products"][0]["id"]
            == "customer.subscription-metrics"
        )
        found = c.get("/v1/catalog", params={"q": "net revenue reporting"}).json()
        assert (
            found["products"][0]["id"] == "finance.revenue-reporting" and found["products"][0]["match"] >= 2
        )
        assert c.get("/v1/catalog", params={"q": "zzzz qqqq"}).json() == {"count": 0, "products": []}

        detail = c.get("/v1/catalog/operations.fulfilment-ops")
        assert detail.status_code == 200
        d = detail.json()
        assert d["freshness"]["status"] == "stale" and d["owner"] and d["members"] and d["document_ids"]
        assert d["versions"] and d["versions"][0]["current"] and d["versions"][0]["chunks"] > 0
        assert "root" not in d and "contract" not in d  # no server paths


def test_releases_list_and_detail(api: Api):
    with api.client("pat") as c:
        listing = c.get("/v1/releases").json()
        assert listing["current"] and listing["releases"][-1]["current"]
        assert listing["releases"][-1]["products"] == 2  # public + restricted for a people partner
        detail = c.get(f"/v1/releases/{listing['current']}").json()
        assert {p["product_id"] for p in detail["products"]} == {PUBLIC, RESTRICTED}
        assert c.get("/v1/releases/current").json()["id"] == listing["current"]
        missing = c.get("/v1/releases/rel-0000000000000000")
    assert missing.status_code == 404
    assert listing["current"] in missing.json()["error"]["message"]  # lists what exists


def test_unknown_product_404_lists_only_readable_products(api: Api):
    with api.client("ana") as c:
        r = c.post("/v1/search", json={"query": "net revenue", "products": ["finance.nope"]})
        detail = c.get("/v1/catalog/finance.nope")
    for resp in (r, detail):
        assert resp.status_code == 404
        err = resp.json()["error"]
        assert err["type"] == "not_found" and "finance.revenue-reporting" in err["message"]
        assert RESTRICTED not in err["message"]


def test_wrong_or_malformed_key_is_401_with_www_authenticate(api: Api):
    good = api.keys["ana"]
    wrong_secret = good[: good.rindex("_") + 1] + "A" * 43
    for headers in (
        {"Authorization": f"Bearer {wrong_secret}"},
        {"Authorization": "Bearer nonsense"},
        {"X-API-Key": "mr_ffffffffffff_" + "B" * 43},
        {"Authorization": f"Basic {good}"},
    ):
        with api.client(headers=headers) as c:
            for r in (c.get("/v1/catalog"), c.post("/v1/ask", json={"question": QUESTION})):
                assert r.status_code == 401, (headers, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.json()["error"]["type"] == "unauthorized"
                assert good not in r.text and wrong_secret not in r.text
    with api.client(headers={"X-API-Key": good}) as c:
        assert c.get("/v1/catalog").json()["count"] == 5


def test_validation_errors_are_422_with_field_messages(api: Api):
    with api.client() as c:
        cases = {
            "/v1/ask": [
                ({}, ["body", "question"]),
                ({"question": ""}, ["body", "question"]),
                ({"question": QUESTION, "k": 0}, ["body", "k"]),
                ({"question": QUESTION, "classifications": ["secret"]}, ["body", "classifications", 0]),
                ({"question": QUESTION, "surprise": 1}, ["body", "surprise"]),
            ],
            "/v1/search": [({"query": QUESTION, "k": "many"}, ["body", "k"])],
        }
        for path, bodies in cases.items():
            for body, loc in bodies:
                r = c.post(path, json=body)
                assert r.status_code == 422, (body, r.text)
                err = r.json()["error"]
                assert err["type"] == "validation_error" and loc in [f["loc"] for f in err["fields"]], err
        bad_json = c.post("/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 422
        assert c.get("/v1/catalog", params={"classification": "secret"}).status_code == 422
        blank = c.post("/v1/ask", json={"question": "   "})
        assert blank.status_code == 422 and blank.json()["error"]["fields"][0]["loc"] == ["body", "question"]


def test_limits_name_the_limit(api: Api):
    with api.client() as c:
        long = c.post("/v1/ask", json={"question": "x" * 2001})
        many = c.post("/v1/search", json={"query": "revenue", "products": [f"p{i}" for i in range(21)]})
        big_k = c.post("/v1/search", json={"query": "revenue", "k": 51})
        huge = c.post(
            "/v1/ask",
            content=b'{"question": "' + b"a" * 1_100_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        chunked = c.post(
            "/v1/ask",
            content=iter([b'{"question": "'] + [b"a" * 65536] * 20 + [b'"}']),
            headers={"Content-Type": "application/json"},
        )
    for r, loc, limit in (
        (long, ["body", "question"], "2000"),
        (many, ["body", "products"], "20"),
        (big_k, ["body", "k"], "50"),
    ):
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["type"] == "limit_exceeded" and err["fields"][0]["loc"] == loc and limit in err["message"]
    for r in (huge, chunked):
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
        assert "MESHRAG_MAX_BODY_BYTES" in r.json()["error"]["message"]


def test_request_id_on_every_response_and_client_ids_kept(api: Api):
    with api.client() as c:
        responses = [
            c.get("/healthz"),
            c.get("/readyz"),
            c.get("/metrics"),
            c.get("/openapi.json"),
            c.get("/v1/catalog"),
            c.get("/v1/nowhere"),
            c.post("/v1/ask", json={}),
            c.get("/v1/provenance/x"),
            c.delete("/v1/catalog"),
        ]
        for r in responses:
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), (r.request.url, r.headers)
            if r.status_code >= 400:
                assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
                assert "Traceback" not in r.text
        assert len({r.headers["x-request-id"] for r in responses}) == len(responses)
        mine = c.get("/v1/catalog", headers={"X-Request-ID": "trace-42.a"})
        junk = c.get("/v1/catalog", headers={"X-Request-ID": "bad id\twith spaces"})
    assert mine.headers["x-request-id"] == "trace-42.a"
    assert re.fullmatch(r"[0-9a-f]{32}", junk.headers["x-request-id"])


def test_client_request_id_names_the_answer_and_cannot_be_reused(api: Api):
    with api.client("ana") as c:
        first = c.post("/v1/ask", json={"question": QUESTION}, headers={"X-Request-ID": "ana-q-0001"})
        again = c.post("/v1/ask", json={"question": QUESTION}, headers={"X-Request-ID": "ana-q-0001"})
        record = c.get("/v1/provenance/ana-q-0001")
    assert first.status_code == 200 and first.json()["request_id"] == "ana-q-0001"
    assert again.status_code == 409 and again.json()["error"]["type"] == "conflict"
    assert record.status_code == 200 and record.json()["question"] == QUESTION


def test_health_ready_and_metrics_move(api: Api):
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["warm"] and ready["store"] and ready["current_release"]

        before = c.get("/metrics").text
        assert c.post("/v1/ask", json={"question": QUESTION}).status_code == 200
        assert (
            c.post("/v1/ask", json={"question": "What is the zebrafish bonus multiplier?"}).status_code == 200
        )
        assert c.get("/v1/catalog/nope.nothing").status_code == 404
        after = c.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    ask_labels = {"method": "POST", "route": "/v1/ask", "status": "200"}
    assert (
        counter(text, "meshrag_http_requests_total", **ask_labels)
        == counter(before, "meshrag_http_requests_total", **ask_labels) + 2
    )
    assert (
        counter(
            text, "meshrag_http_requests_total", method="GET", route="/v1/catalog/{product_id}", status="404"
        )
        >= 1
    )
    assert counter(text, "meshrag_http_request_duration_seconds_count", **ask_labels) >= 2
    assert (
        counter(text, "meshrag_answers_total", endpoint="ask")
        >= counter(before, "meshrag_answers_total", endpoint="ask") + 2
    )
    assert counter(text, "meshrag_abstentions_total", endpoint="ask") >= 1
    assert counter(text, "meshrag_retrieval_duration_seconds_count", endpoint="ask") >= 2
    assert counter(text, "meshrag_answer_duration_seconds_count", endpoint="ask") >= 2
    assert "meshrag_citations_dropped_total" in text
    assert "/v1/catalog/nope.nothing" not in text  # labels are route templates, never raw paths


def test_openapi_is_complete(api: Api):
    with api.client() as c:
        spec = c.get("/openapi.json").json()
    assert {
        "/v1/ask",
        "/v1/search",
        "/v1/catalog",
        "/v1/catalog/{product_id}",
        "/v1/releases",
        "/v1/releases/{release_id}",
        "/v1/provenance/{request_id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/chat/completions",
        "/v1/models",
    } <= set(spec["paths"])
    assert "look missing" in spec["info"]["description"] and "never 403" in spec["info"]["description"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            ok = op["responses"]["200"]
            for media, content in ok["content"].items():
                assert content.get("schema"), (path, method, media)
                assert "example" in content or "examples" in content, (path, method, media)
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert resp.get("content"), (path, status)
            if "requestBody" in op:
                body_schema = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit(
                    "/", 1
                )[1]
                assert spec["components"]["schemas"][body_schema].get("examples"), body_schema
    assert RESTRICTED not in str(spec)
    ask_props = spec["components"]["schemas"]["AskBody"]["properties"]
    assert all(p.get("description") for p in ask_props.values())
