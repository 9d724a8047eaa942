"""Discovery answers through every door of the one pipeline (REST JSON and SSE, chat, MCP, `meshrag ask`):
the owner's name and the status word, citations to contract spans, the provenance record written; and the
contract file view a citation links to (readers see the file, discover-only visitors the catalog page)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from api.auth import create_key
from knowledge.catalog import Catalog, freshness
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from tests.api.conftest import PRINCIPALS, Api, sse_events
from tests.api.test_mcp import _call

pytestmark = pytest.mark.slow

QUESTION = "who should I ping about the shipping data, and is it still fresh?"
PRODUCT = "operations.fulfilment-ops"
OWNER = "Kenji Watanabe"


def _check(answer: dict, text: str | None = None) -> None:
    """A discovery answer: answered, owner and status word stated, every citation a contract.yaml span."""
    text = answer["text"] if text is None else text
    assert answer["outcome"] == "answered", text
    assert OWNER in text and "stale: last updated 2026-05-29" in text
    root = Catalog.load([SAMPLE_MESH]).products[PRODUCT].root
    assert answer["citations"]
    for c in answer["citations"]:
        assert c["product_id"] == PRODUCT and c["document"] == "contract.yaml"
        assert (root / "contract.yaml").read_text("utf-8")[c["start"]:c["end"]] == c["text"]
        assert f"[{c['marker']}]" in text


def test_rest_json_and_stream_and_provenance(api: Api):
    with api.client("ana") as c:
        body = c.post("/v1/ask", json={"question": QUESTION}).json()
        _check(body["answer"])
        assert body["retrieval"]  # retrieval ran: the Retrieved event is the same as for any answer
        record = c.get(f"/v1/provenance/{body['request_id']}")
        assert record.status_code == 200
        rec = record.json()
        assert rec["answer"] == body["answer"]["text"] and rec["answerer"] == body["answer"]["answerer"]
        assert [x["chunk_id"] for x in rec["citations"]] == [x["chunk_id"] for x in body["answer"]["citations"]]
        streamed = c.post("/v1/ask", json={"question": QUESTION, "stream": True})
    events = dict(sse_events(streamed.text))
    assert {"retrieval", "sentence", "citations", "done"} <= set(events)
    assert events["citations"]["answer"] == body["answer"]["text"]


def test_chat_renders_the_discovery_answer(api: Api):
    with api.client("ana") as c:
        r = c.post("/v1/chat/completions", json={"model": "meshrag-extractive",
                                                 "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200, r.text
    text = r.json()["choices"][0]["message"]["content"]
    assert "contract.yaml" in text.partition("\n\nSources:\n")[2]
    _check(r.json()["meshrag"], text.partition("\n\nSources:\n")[0])


def test_mcp_ask(api: Api):
    result = anyio.run(_call, f"{api.url}/mcp/", {"Authorization": f"Bearer {api.keys['ana']}"}, "ask",
                       {"question": QUESTION})
    assert not result.is_error
    _check(result.structured_content)


def test_cli_ask(api_data_dir: Path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="250")
    done = subprocess.run([sys.executable, "-m", "api.cli.main", "ask", QUESTION, "--as", "analyst", "--json",
                           "--data-dir", str(api_data_dir)], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    _check(out["answer"])
    assert out["provenance"]["hash"]


def test_aggregation_over_rest_lists_what_the_key_may_see(api: Api):
    catalog = Catalog.load([SAMPLE_MESH])
    for who in ("ana", "pat", "sam"):
        with api.client(who) as c:
            answer = c.post("/v1/ask", json={"question": "which of our products are out of date?"}).json()["answer"]
        principal = Principal(who, frozenset(PRINCIPALS[who]))
        expected = [p.id for p in catalog if principal.can_discover(p) and freshness(p).status == "stale"]
        assert answer["answerer"].startswith("discovery@") and answer["decision"]["products"] == expected
        assert f": {len(expected)}" in answer["text"]


def test_contract_view_for_readers_catalog_page_for_discoverers(api: Api):
    with api.client("ana") as c:
        cited = c.post("/v1/ask", json={"question": QUESTION}).json()["answer"]["citations"][0]
    web = httpx.Client(base_url=api.url, timeout=120)
    assert web.post("/signin", data={"api_key": api.keys["ana"]}).status_code == 303
    page = web.get(f"/documents/{PRODUCT}/contract.yaml", params={"start": cited["start"], "end": cited["end"]})
    assert page.status_code == 200
    assert f'id="cited" tabindex="-1">{cited["text"]}</mark>' in page.text
    # A visitor who may not read the product: like a missing product, or its catalog page when discoverable.
    anon = httpx.Client(base_url=api.url, timeout=120)
    hidden = anon.get(f"/documents/{PRODUCT}/contract.yaml")
    missing = anon.get("/documents/operations.no-such-product/contract.yaml")
    assert hidden.status_code == missing.status_code == 404
    catalog = Catalog.load([SAMPLE_MESH])
    employee = Principal("emp", frozenset({"employee"}))
    discover_only = [p.id for p in catalog if employee.can_discover(p) and not employee.can_read(p)]
    if discover_only:
        key = create_key(api.app.state.settings.resolved_api_keys_file(), "emp-discovery", ["employee"]).key
        emp = httpx.Client(base_url=api.url, timeout=120)
        assert emp.post("/signin", data={"api_key": key}).status_code == 303
        sent = emp.get(f"/documents/{discover_only[0]}/contract.yaml")
        assert sent.status_code == 303 and sent.headers["location"] == f"/catalog/{discover_only[0]}"


def test_discover_only_facts_answer_and_its_record(api: Api):
    catalog = Catalog.load([SAMPLE_MESH])
    employee = Principal("emp", frozenset({"employee"}))
    revenue = catalog.products["finance.revenue-reporting"]
    if not (employee.can_discover(revenue) and not employee.can_read(revenue)):
        pytest.skip("the sample contract does not make revenue reporting discoverable to employees")
    key = create_key(api.app.state.settings.resolved_api_keys_file(), "emp-discovery-2", ["employee"]).key
    with httpx.Client(base_url=api.url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as c:
        body = c.post("/v1/ask", json={"question": "who owns the revenue figures and how long are they kept?"}).json()
        answer = body["answer"]
        assert answer["answerer"].startswith("discovery@") and revenue.owner.name in answer["text"]
        assert "7 years" not in answer["text"] and "not its retention SLA" in answer["text"]
        assert {c["product_id"] for c in answer["citations"]} == {revenue.id}
        assert all(c["heading_path"][0] in {"owner", "contact", "team"} for c in answer["citations"])
        assert not body["retrieval"] or revenue.id not in {h["product_id"] for h in body["retrieval"]}
        assert c.get(f"/v1/provenance/{body['request_id']}").status_code == 200  # its own record, facts only
