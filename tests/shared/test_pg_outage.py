"""Shared mode while PostgreSQL restarts: every entry point (REST, chat, SSE before the stream starts, MCP,
the web pages) answers 503 with Retry-After, whether the key table, the session table or the vector
store is what cannot be reached; the rate limiter lets requests through and says so in the log; after
the server is back everything works again without restarting the app, the same session included."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from api.app import create_app
from api.auth import REFRESH_S
from api.errors import RETRY_AFTER_S
from api.settings import ApiSettings
from api.state.keys import PgKeyTable
from api.web.session import COOKIE
from indexing.pipeline import IndexPipeline
from indexing.settings import IndexSettings
from indexing.stores.embedded_pg import start_postgres, stop_postgres
from tests.retrieval.conftest import SMALL_MESH, write_product

pytestmark = pytest.mark.pg

SEARCH = {"query": "When is the release alias moved?", "k": 3}
ASK = {"question": "Who answers reader questions about a published product?"}
CHAT = {"model": "meshrag-extractive", "messages": [{"role": "user", "content": ASK["question"]}]}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
MCP_SEARCH = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": "search", "arguments": {"query": SEARCH["query"]}}}
RECOVERY_BOUND_S = 60.0


@pytest.fixture
def shared(pg_server: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    schema = f"test_outage_{uuid.uuid4().hex[:12]}"
    for pid, spec in SMALL_MESH.items():
        write_product(tmp_path / "mesh", pid, spec["classification"], spec["roles"], spec["docs"])
    common: dict[str, Any] = {"data_dir": tmp_path / "data", "mesh_roots": [tmp_path / "mesh"],
                              "embedder": "hash", "store": "pgvector", "dsn": pg_server, "pg_schema": schema}
    report = IndexPipeline(IndexSettings(**common)).run()
    assert report.published and not report.blocked
    yield common | {"api_keys_file": tmp_path / "no-keys.json"}
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def assert_unavailable(response: Any, *kinds: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "Traceback" not in response.text and "postgres" not in response.text.lower()
    if kinds:
        assert response.json()["error"]["type"] in kinds, response.text


def test_a_postgresql_restart_is_503_with_retry_after_everywhere_then_recovers(
    shared: dict[str, Any], pg_data_dir: Path, caplog: pytest.LogCaptureFixture
):
    keys = PgKeyTable(shared["dsn"], shared["pg_schema"])
    key = keys.create("ops", ["employee"]).key
    keys.close()
    keyed = {"X-API-Key": key}
    with TestClient(create_app(ApiSettings(**shared)), follow_redirects=False) as c:
        token = c.post("/signin", data={"api_key": key}).cookies[COOKIE]
        c.cookies.clear()
        session = {"Cookie": f"{COOKIE}={token}"}
        assert c.post("/v1/search", json=SEARCH, headers=keyed).status_code == 200
        assert c.post("/v1/ask", json=ASK, headers=keyed).status_code == 200
        assert "Signed in as <strong>ops</strong>" in c.get("/catalog", headers=session).text

        stop_postgres(pg_data_dir)
        try:
            time.sleep(REFRESH_S + 0.2)  # past the key table's refresh: keys are checked against PostgreSQL
            with caplog.at_level(logging.WARNING, logger="meshrag.api"):
                # The key table is down: keyed requests are refused, whatever the entry point.
                assert_unavailable(c.post("/v1/search", json=SEARCH, headers=keyed), "unavailable")
                assert_unavailable(c.post("/v1/chat/completions", json=CHAT, headers=keyed), "unavailable")
                mcp = c.post("/mcp/", json=MCP_SEARCH, headers=keyed | MCP_HEADERS)
                assert_unavailable(mcp, "unavailable")
                # Anonymous requests reach the store, which is down too.
                assert_unavailable(c.post("/v1/search", json=SEARCH), "store_unavailable")
                assert_unavailable(c.post("/v1/ask", json=ASK | {"stream": True}), "store_unavailable")
                assert_unavailable(c.post("/v1/chat/completions", json=CHAT), "store_unavailable")
                # The web page: its session cannot be read.
                page = c.get("/catalog", headers=session)
                assert_unavailable(page)
                assert "text/html" in page.headers["content-type"]
            assert "rate limits not checked" in caplog.text  # let through, and said so
        finally:
            assert start_postgres(pg_data_dir) == shared["dsn"]

        deadline = time.monotonic() + RECOVERY_BOUND_S
        while c.post("/v1/search", json=SEARCH, headers=keyed).status_code != 200:
            assert time.monotonic() < deadline, "the app did not recover after PostgreSQL came back"
            time.sleep(0.2)
        answered = c.post("/v1/ask", json=ASK, headers=keyed)
        assert answered.status_code == 200, answered.text
        assert "Signed in as <strong>ops</strong>" in c.get("/catalog", headers=session).text  # same session
        mcp = c.post("/mcp/", json=MCP_SEARCH, headers=keyed | MCP_HEADERS)
        assert mcp.status_code == 200, mcp.text
