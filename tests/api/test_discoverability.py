"""Discoverability as contract policy, per role (anonymous, employee, analyst, people partner), on the real
app over HTTP: a product the caller may discover but not read shows exactly its catalog facts (id, title,
purpose, owner, team, contact, classification, freshness) on the catalog routes — REST, MCP and the web
pages — and nothing of it anywhere else (releases, search, ask, chat, provenance); a product the caller may
neither read nor discover stays byte-identical to a missing one. Counts reveal no more than the facts."""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import anyio
import httpx
import pytest

from api.auth import create_key
from indexing.releases import ReleaseRegistry
from indexing.versions import VersionStore
from knowledge.catalog import Catalog, product_facts
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from tests.api.conftest import PRINCIPALS, Api, sse_events

pytestmark = pytest.mark.slow

# Who asks: None is anonymous; "emp" is an employee key made for this module.
ROLES = {None: [], "emp": ["employee"], "ana": PRINCIPALS["ana"], "pat": PRINCIPALS["pat"]}
FACT_KEYS = {"access", "id", "domain", "name", "purpose", "owner", "owner_username", "team", "contact",
             "classification", "freshness", "match"}
MISSING = "people.no-such-handbook"
# Questions each of which one of the non-public products answers.
QUESTIONS = (
    "What is the midpoint salary for an L4 software engineer in zone A?",
    "how much can a shift supervisor refund without asking anyone?",
    "How is net revenue reconciled at month-end close?",
)
CHAT = {"model": "meshrag-extractive"}


@dataclass(frozen=True)
class View:
    """What one principal may see of the sample mesh, from the catalog's own rules."""

    principal: Principal
    readable: set[str]
    discover_only: set[str]
    hidden: set[str]  # neither readable nor discoverable


def view_of(who: str | None) -> View:
    catalog = Catalog.load([SAMPLE_MESH])
    principal = Principal(who or "anonymous", frozenset(ROLES[who]))
    readable = {p.id for p in catalog.readable(principal)}
    visible = {p.id for p in catalog.discoverable(principal)}
    return View(principal, readable, visible - readable, set(catalog.products) - visible)


def readable_text(api: Api, view: View) -> str:
    """The indexed text of every product the principal may read."""
    release = ReleaseRegistry(api.data_dir).current()
    assert release is not None
    store = VersionStore(api.data_dir)
    return "\n".join(c.text for pid in view.readable for c in store.read_chunks(release.products[pid].chunk_version))


def content_markers(api: Api, view: View) -> list[str]:
    """Strings only the unreadable products' content and non-fact metadata hold, that nothing the principal
    may see also holds: document ids, chunk ids, chunk and embedding versions, lines of their indexed
    text, usage and limitations, tags and read roles."""
    catalog = Catalog.load([SAMPLE_MESH])
    release = ReleaseRegistry(api.data_dir).current()
    assert release is not None
    store = VersionStore(api.data_dir)
    seen_text = readable_text(api, view)
    seen_text += "\n" + json.dumps([product_facts(catalog.products[pid]) for pid in view.readable | view.discover_only])
    seen_text += "\n" + "\n".join(f"{p.usage} {p.limitations} {' '.join(p.tags)} {' '.join(p.read_roles)} "
                                  + " ".join(p.document_id(d) for d in p.documents())
                                  for p in catalog if p.id in view.readable)
    markers: list[str] = []
    for pid in view.discover_only | view.hidden:
        product, entry = catalog.products[pid], release.products[pid]
        markers += [entry.chunk_version, entry.embedding_version]
        markers += [m.name for m in product.members if m.username != product.owner.username]
        markers += [product.document_id(p) for p in product.documents()]
        for chunk in store.read_chunks(entry.chunk_version):
            markers.append(chunk.chunk_id)
            markers += [line.strip() for line in chunk.text.splitlines() if len(line.strip()) >= 40]
        markers += [product.usage, product.limitations]
        markers += [t for t in (*product.tags, *product.read_roles) if len(t) >= 5]
        if pid in view.hidden:
            markers += [pid, product.title]
    return [m for m in dict.fromkeys(markers) if m and m.lower() not in seen_text.lower()]


@pytest.fixture(scope="module")
def keys(api: Api) -> dict[str | None, str | None]:
    emp = create_key(api.data_dir.parent / "api-keys.json", "emp", ["employee"]).key
    return {None: None, "emp": emp, "ana": api.keys["ana"], "pat": api.keys["pat"]}


def client(api: Api, key: str | None) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=120)


@pytest.fixture
def web_client(api: Api) -> Iterator:
    def open_(key: str | None) -> httpx.Client:
        c = httpx.Client(base_url=api.url, timeout=120, follow_redirects=True)
        if key:
            assert c.post("/signin", data={"api_key": key}).status_code == 200
        return c
    yield open_


async def _mcp(url: str, key: str | None, calls: list[tuple[str, dict]]) -> list:
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx.AsyncClient(headers=headers, timeout=120) as http,
        Client(streamable_http_client(url, http_client=http)) as mcp,
    ):
        return [await mcp.call_tool(tool, args) for tool, args in calls]


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def _without_request_id(body: dict) -> dict:
    err = dict(body["error"])
    err.pop("request_id")
    return err


def test_the_views_per_role_are_what_the_contracts_say():
    assert view_of("emp").discover_only == {"people.compensation-handbook", "customer.support-knowledge",
                                            "finance.revenue-reporting"}
    for who in (None, "ana", "pat"):
        assert view_of(who).discover_only == set(), who
    assert view_of("ana").hidden == {"people.compensation-handbook"}
    assert view_of(None).hidden == view_of("pat").hidden | {"people.compensation-handbook"}


@pytest.mark.parametrize("who", [None, "emp", "ana", "pat"])
def test_a_discoverable_product_shows_its_facts_and_nothing_else_on_every_route(api: Api, keys, web_client, who):
    view = view_of(who)
    markers = content_markers(api, view)
    catalog = Catalog.load([SAMPLE_MESH])
    facts = {pid: product_facts(catalog.products[pid]) for pid in view.discover_only}
    seen: list[tuple[str, str]] = []  # (route, body) of everything the caller got back
    not_facts: list[tuple[str, str]] = []  # routes where not even a discoverable product's facts belong
    release = ReleaseRegistry(api.data_dir).current()
    assert release is not None
    asked_ids: list[str] = []  # the caller's own provenance records

    with client(api, keys[who]) as c:
        def get(what: str, path: str, *, facts_ok: bool = True, **kwargs) -> httpx.Response:
            r = c.get(path, **kwargs)
            assert r.status_code < 500, (what, r.text)
            seen.append((what, r.text))
            if not facts_ok:
                not_facts.append((what, r.text))
            return r

        # --- REST catalog: the readable products in full, the discoverable ones as facts, nothing else.
        listing = get("catalog", "/v1/catalog").json()
        assert listing["count"] == len(view.readable) + len(view.discover_only) == len(listing["products"])
        by_id = {p["id"]: p for p in listing["products"]}
        assert set(by_id) == view.readable | view.discover_only
        for pid, entry in by_id.items():
            if pid in view.discover_only:
                assert set(entry) == FACT_KEYS and entry["access"] == "discover", entry
                expected = json.loads(json.dumps(facts[pid]))
                assert all(entry[k] == v for k, v in expected.items() if k != "freshness"), entry
                assert entry["freshness"]["status"] == expected["freshness"]["status"]
                assert _when(entry["freshness"]["last_update"]) == _when(expected["freshness"]["last_update"])
            else:
                assert entry["access"] == "read" and "tags" in entry
        for pid in view.discover_only:
            product = catalog.products[pid]
            for params in ({"domain": product.domain}, {"owner": product.owner.username},
                           {"classification": product.classification}, {"q": product.title}):
                found = get(f"catalog {params}", "/v1/catalog", params=params).json()
                assert found["count"] == len(found["products"])
                [entry] = [p for p in found["products"] if p["id"] == pid]
                assert set(entry) == FACT_KEYS, params
            for tag in product.tags:  # a tag is not a fact: it never finds a product one may only discover
                found = get(f"catalog tag={tag}", "/v1/catalog", params={"tag": tag}).json()
                assert pid not in {p["id"] for p in found["products"]}
            usage_words = " ".join(w for w in re.findall(r"[a-z]{6,}", product.limitations.lower())
                                   if w not in json.dumps(facts[pid]).lower())
            if usage_words:
                found = get("catalog q=limitations words", "/v1/catalog", params={"q": usage_words}).json()
                assert pid not in {p["id"] for p in found["products"]}, usage_words
            detail = get(f"catalog detail {pid}", f"/v1/catalog/{pid}")
            assert detail.status_code == 200 and set(detail.json()) == FACT_KEYS
            assert detail.json()["access"] == "discover" and detail.json()["match"] is None

        missing = c.get(f"/v1/catalog/{MISSING}")
        for pid in view.hidden:
            hidden = c.get(f"/v1/catalog/{pid}")
            seen.append((f"catalog detail {pid}", hidden.text.replace(pid, "<asked>")))  # the id typed is echoed
            assert hidden.status_code == missing.status_code == 404
            assert json.dumps(_without_request_id(hidden.json())).replace(pid, "X") == json.dumps(
                _without_request_id(missing.json())).replace(MISSING, "X")
            assert hidden.headers["content-length"] == str(
                int(missing.headers["content-length"]) + len(pid) - len(MISSING))
        for params in ({"classification": "restricted"}, {"domain": "people"}, {"q": "compensation pay bands"}):
            found = get(f"catalog {params}", "/v1/catalog", params=params).json()
            assert not view.hidden & {p["id"] for p in found["products"]}

        # --- Releases: content versions, so only what the caller may read, in the lists and the counts.
        releases = get("releases", "/v1/releases", facts_ok=False).json()
        last = releases["releases"][-1]
        assert last["products"] == len(view.readable & set(release.products))
        assert last["chunks"] == sum(e.n_chunks for pid, e in release.products.items() if pid in view.readable)
        for path in (f"/v1/releases/{release.id}", "/v1/releases/current"):
            detail = get("release detail", path, facts_ok=False).json()
            assert {p["product_id"] for p in detail["products"]} == view.readable & set(release.products)

        # --- Search, ask, chat, provenance: never a chunk of a product the caller cannot read.
        for q in QUESTIONS:
            r = c.post("/v1/search", json={"query": q, "k": 50})
            not_facts.append(("search", r.text))
            seen.append(("search", r.text))
            assert {h["product_id"] for h in r.json()["hits"]} <= view.readable
            asked = c.post("/v1/ask", json={"question": q, "k": 20})
            seen.append(("ask", asked.text))
            body = asked.json()
            assert {cit["product_id"] for cit in body["answer"]["citations"]} <= view.readable
            assert set(body["answer"]["closest_products"]) <= view.readable
            assert {h["product_id"] for h in body["retrieval"]} <= view.readable
            if who:
                assert get("provenance", f"/v1/provenance/{body['request_id']}").status_code == 200
                asked_ids.append(body["request_id"])
        stream = c.post("/v1/ask", json={"question": QUESTIONS[0], "stream": True})
        seen.append(("ask stream", stream.text))
        retrieval = next(data for name, data in sse_events(stream.text) if name == "retrieval")
        assert {h["product_id"] for h in retrieval["hits"]} <= view.readable
        chat = c.post("/v1/chat/completions", json=CHAT | {"messages": [{"role": "user", "content": QUESTIONS[1]}]})
        seen.append(("chat", chat.text))
        for pid in view.discover_only:  # discoverable is not readable: a product filter names it as missing
            for path, body in (("/v1/search", {"query": "pay"}), ("/v1/ask", {"question": "pay?"})):
                named = c.post(path, json=body | {"products": [pid]})
                other = c.post(path, json=body | {"products": [MISSING]})
                assert named.status_code == other.status_code == 404
                assert json.dumps(_without_request_id(named.json())).replace(pid, "X") == json.dumps(
                    _without_request_id(other.json())).replace(MISSING, "X")

    # --- MCP: the same shapes as REST.
    calls = [("search_catalog", {"query": ""})]
    calls += [("get_product", {"product_id": pid}) for pid in sorted(view.discover_only | view.hidden)]
    calls += [("search", {"query": QUESTIONS[0], "k": 20}), ("ask", {"question": QUESTIONS[2]})]
    results = anyio.run(_mcp, f"{api.url}/mcp/", keys[who], calls)
    cards = results[0].structured_content["result"]
    assert {p["id"] for p in cards} == view.readable | view.discover_only
    assert all(set(p) == FACT_KEYS for p in cards if p["id"] in view.discover_only)
    for (_, args), result in zip(calls[1:], results[1:], strict=False):
        pid = args.get("product_id")
        if pid in view.discover_only:
            assert not result.is_error and set(result.structured_content) == FACT_KEYS
        elif pid in view.hidden:
            assert result.is_error and pid not in result.content[0].text.split(";")[1]
    assert {h["product_id"] for h in results[-2].structured_content["hits"]} <= view.readable
    for (tool, args), r in zip(calls, results, strict=True):
        body = json.dumps(r.structured_content) if not r.is_error else r.content[0].text
        if r.is_error and "product_id" in args:
            body = body.replace(args["product_id"], "<asked>")  # the id typed is echoed
        seen.append((f"mcp {tool}", body))
    not_facts.append(("mcp search", json.dumps(results[-2].structured_content)))

    # --- Web pages (server-rendered; the browser tests drive the same pages for an employee).
    web = web_client(keys[who])
    try:
        page = web.get("/catalog")
        assert page.status_code == 200
        seen.append(("web /catalog", page.text))
        rows = re.findall(r'<tr data-product="([^"]+)">(.*?)</tr>', page.text, re.DOTALL)
        assert {pid for pid, _ in rows} == view.readable | view.discover_only
        for pid, row in rows:
            assert ("discoverable only" in row) == (pid in view.discover_only)
            if pid in view.discover_only:
                assert "?tag=" not in row and f"ask {facts[pid]['contact']}" in html_lib.unescape(row)
        total = len(view.readable) + len(view.discover_only)
        assert f"of {total} product" in page.text
        for pid in view.discover_only:
            product_page = web.get(f"/catalog/{pid}")
            assert product_page.status_code == 200
            seen.append((f"web /catalog/{pid}", product_page.text))
            text = html_lib.unescape(product_page.text)
            for fact in (pid, facts[pid]["name"], facts[pid]["owner"], facts[pid]["team"], facts[pid]["purpose"],
                         facts[pid]["contact"], facts[pid]["classification"], facts[pid]["freshness"]["status"]):
                assert fact in text, fact
            assert "discoverable only" in text and 'id="product-documents"' not in text
            assert 'id="product-versions"' not in text and 'id="product-evals' not in text
            assert f"/documents/{pid}/" not in text and "/releases/rel-" not in text
            document = catalog.products[pid].document_id(catalog.products[pid].documents()[0])
            assert web.get(f"/documents/{pid}/{document}").status_code == 404
        web_missing = web.get(f"/catalog/{MISSING}")
        for pid in view.hidden:
            hidden_page = web.get(f"/catalog/{pid}")
            seen.append((f"web /catalog/{pid}", hidden_page.text.replace(pid, "<asked>")))
            assert hidden_page.status_code == web_missing.status_code == 404
            def message(r: httpx.Response) -> str:
                return re.search(r'role="alert">(.*?)</p>', r.text, re.DOTALL).group(1)  # type: ignore[union-attr]
            assert message(hidden_page).replace(pid, "X") == message(web_missing).replace(MISSING, "X")
        for rid in asked_ids:
            record_page = web.get(f"/provenance/{rid}")
            assert record_page.status_code == 200
            seen.append((f"web /provenance/{rid}", record_page.text))
        for path in ("/releases", f"/releases/{release.id}", "/catalog?tag=compensation", "/catalog?q=pay+refund"):
            r = web.get(path)
            assert r.status_code == 200, path
            (not_facts if path.startswith("/releases") else seen).append((f"web {path}", r.text))
            if path.startswith("/releases"):
                seen.append((f"web {path}", r.text))
    finally:
        web.close()

    # --- Nothing but the facts, anywhere.
    for what, body in seen:
        text = html_lib.unescape(body)
        leaked = [m for m in markers if m in text]
        assert not leaked, (who, what, [text[max(0, text.find(m) - 200):text.find(m) + 100] for m in leaked[:3]])
    named_in_readable_text = readable_text(api, view)  # e.g. the public handbook names product ids
    for what, body in not_facts:
        text = html_lib.unescape(body)
        leaked = [pid for pid in view.discover_only | view.hidden if pid in text and pid not in named_in_readable_text]
        assert not leaked, (who, what, [text[max(0, text.find(p) - 200):text.find(p) + 100] for p in leaked])
