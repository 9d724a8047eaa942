"""pgvector mode: PostgreSQL restarts while the app serves. Requests during the outage get 503 with a
retry hint; the next requests after it succeed without restarting the app."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth import hash_key
from api.settings import ApiKeyEntry, ApiSettings
from indexing.pipeline import IndexPipeline
from indexing.settings import IndexSettings
from indexing.stores.embedded_pg import start_postgres, stop_postgres
from tests.retrieval.conftest import SMALL_MESH, write_product

pytestmark = pytest.mark.pg


def test_store_outage_is_503_and_recovers_without_restart(
    tmp_path: Path, pg_dsn_schema: Any, pg_data_dir: Path
):
    root = tmp_path / "mesh"
    for pid, spec in SMALL_MESH.items():
        write_product(root, pid, spec["classification"], spec["roles"], spec["docs"])
    common: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "mesh_roots": [root],
        "embedder": "hash",
        "store": "pgvector",
        "dsn": pg_dsn_schema.dsn,
        "pg_schema": pg_dsn_schema.schema,
    }
    report = IndexPipeline(IndexSettings(**common)).run()
    assert report.published and not report.blocked
    key = "mr_abcdef123456_" + "k" * 43
    entry = ApiKeyEntry(id="abcdef123456", hash=hash_key(key), principal="ops", roles=["employee"])
    app = create_app(ApiSettings(**common, api_keys=[entry], api_keys_file=tmp_path / "no-keys.json"))

    async def scenario() -> None:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://meshrag", headers={"X-API-Key": key}
            ) as c,
        ):
            search = {"query": "When is the release alias moved?"}
            ask = {"question": "Who answers reader questions about a published product?"}
            assert (await c.post("/v1/search", json=search)).status_code == 200
            assert (await c.post("/v1/ask", json=ask)).status_code == 200

            stop_postgres(pg_data_dir)
            try:
                for r in (
                    await c.post("/v1/search", json=search),
                    await c.post("/v1/ask", json=ask),
                    await c.post("/v1/ask", json=ask | {"stream": True}),
                ):
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"] == "5"
                    err = r.json()["error"]
                    assert err["type"] == "store_unavailable" and "retry" in err["message"]
                    assert pg_dsn_schema.dsn not in r.text and "Traceback" not in r.text
                # MCP answers a tool call in-band: the same error object, with the seconds to wait.
                mcp = await c.post("/mcp/", headers={"Accept": "application/json, text/event-stream"}, json={
                    "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "search", "arguments": search}})
                assert mcp.status_code == 200, mcp.text
                result = mcp.json()["result"]
                assert result["isError"]
                err = json.loads(result["content"][0]["text"].split(": ", 1)[1])["error"]  # "Error executing tool …: {…}"
                assert err["status"] == 503 and err["type"] == "store_unavailable" and err["retry_after_s"] == 5
                assert pg_dsn_schema.dsn not in mcp.text and "Traceback" not in mcp.text
                ready = await c.get("/readyz")
                assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
                assert (await c.get("/healthz")).status_code == 200  # alive, just not ready
            finally:
                assert start_postgres(pg_data_dir) == pg_dsn_schema.dsn

            found = await c.post("/v1/search", json=search)
            assert found.status_code == 200 and found.json()["hits"]
            answered = await c.post("/v1/ask", json=ask)
            assert answered.status_code == 200, answered.text
            record = await c.get(f"/v1/provenance/{answered.json()['request_id']}")
            assert (
                record.status_code == 200 and record.json()["principal"]["id"] == "ops"
            )  # in PostgreSQL
            assert (await c.get("/readyz")).status_code == 200
            metrics = (await c.get("/metrics")).text
            assert "meshrag_store_unavailable_total 3.0" in metrics  # REST only: MCP answered 200 in-band
            assert 'route="/v1/search",status="503"' in metrics

    asyncio.run(scenario())
