"""`meshrag serve --workers 2` as a user runs it, on a small mesh (hash embedder): both workers answer,
/metrics counts every worker's requests whichever worker answers it, an MCP session whose requests land
on different workers works (stateless MCP), and the provenance chain the workers wrote together verifies
with one record per answer. Which worker answered a request is read from the server log, whose lines
carry the worker's pid and the request id the test sent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from indexing.stores.embedded_pg import stop_postgres
from retrieval.provenance import create_provenance_log
from retrieval.requests import client_id_of
from tests.retrieval.conftest import SMALL_MESH, write_product

pytestmark = pytest.mark.slow
MESHRAG = [sys.executable, "-m", "api.cli.main"]
WORKERS = 2
ASK = {"question": "What do I do when the carrier misses the pickup?"}
ASKS_PER_ROUND = 12
ASK_COUNTER = ("meshrag_http_requests_total", {"method": "POST", "route": "/v1/ask", "status": "200"})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def workers_of(self, prefix: str) -> dict[str, str]:
        """request id → pid of the worker that logged it, for the request ids starting with `prefix`."""
        found = re.findall(r"\[(\d+)\] \[(" + re.escape(prefix) + r"[^\]]*)\] (?:GET|POST) ", self.log.read_text())
        return {rid: pid for pid, rid in found}

    def started_workers(self) -> set[str]:
        return set(re.findall(r"uvicorn\.error\[(\d+)\] \[-\] Application startup complete", self.log.read_text()))


def _mesh(tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    for pid, spec in SMALL_MESH.items():
        write_product(root, pid, spec["classification"], spec["roles"], spec["docs"])
    return root


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Starts `meshrag serve --workers 2` with extra environment; waits until both workers are up."""
    procs: list[subprocess.Popen[str]] = []

    def start(extra_env: dict[str, str], *args: str) -> Server:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        env = os.environ | {
            "MESHRAG_EMBEDDER": "hash",
            "MESHRAG_MESH_ROOTS": json.dumps([str(_mesh(tmp_path))]),
            "MESHRAG_RATE_LIMIT": "off",  # bursts from one address; the shared limits are tested elsewhere
            "HF_HUB_OFFLINE": "1",
            "COLUMNS": "200",
        } | extra_env
        proc = subprocess.Popen([*MESHRAG, "serve", "--workers", str(WORKERS), "--port", str(port), *args],
                                env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        server = Server(f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 300
        while len(server.started_workers()) < WORKERS:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200, log.read_text()
        return server

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=60)


def _burst(server: Server, prefix: str, n: int, offset: int) -> None:
    """`n` asks, four at a time, each on a new connection (so the kernel hands them to either worker)."""

    def ask(i: int) -> None:
        r = httpx.post(f"{server.url}/v1/ask", json=ASK, headers={"X-Request-ID": f"{prefix}{offset + i}"},
                       timeout=120)
        assert r.status_code == 200, r.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ask, range(n)))


def _asks_over_both_workers(server: Server, prefix: str) -> dict[str, str]:
    """Bursts of asks until both workers have answered some; request id → worker pid."""
    sent = 0
    for _ in range(10):
        _burst(server, prefix, ASKS_PER_ROUND, sent)
        sent += ASKS_PER_ROUND
        served = _wait_logged(server, prefix, sent)
        if len(set(served.values())) == WORKERS:
            return served
    pytest.fail(f"{sent} asks were all answered by one worker: {set(served.values())}")


def _wait_logged(server: Server, prefix: str, n: int) -> dict[str, str]:
    deadline = time.monotonic() + 30  # a worker logs a request just after its last byte is sent
    while len(served := server.workers_of(prefix)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(served) == n, served
    return served


def _counter(text: str, name: str, labels: dict[str, str]) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and sample.labels == labels)


def _metrics_count_every_worker(server: Server, asks: int) -> None:
    """/metrics, whichever worker answers it (each call on a new connection), counts all the asks."""
    deadline = time.monotonic() + 30
    while _counter(httpx.get(f"{server.url}/metrics", timeout=30).text, *ASK_COUNTER) < asks:
        assert time.monotonic() < deadline, "the ask counter never reached the number of asks answered"
        time.sleep(0.2)
    seen = [_counter(httpx.get(f"{server.url}/metrics", headers={"X-Request-ID": f"metrics-{i}"}, timeout=30).text,
                     *ASK_COUNTER) for i in range(8)]
    assert seen == [asks] * 8
    assert len(set(_wait_logged(server, "metrics-", 8).values())) >= 1


async def _mcp_session(url: str, session: int) -> tuple[Any, Any, int]:
    """One MCP session, every HTTP request of it on a new connection with an id naming its session."""
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    count = 0

    async def stamp(request: httpx.Request) -> None:
        nonlocal count
        count += 1
        request.headers["X-Request-ID"] = f"mcp-{session}-{count}"

    async with (
        httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_keepalive_connections=0),
                          event_hooks={"request": [stamp]}) as http,
        Client(streamable_http_client(f"{url}/mcp/", http_client=http)) as client,
    ):
        tools = await client.list_tools()
        found = await client.call_tool("search", {"query": "owner before it is published", "k": 3})
    return tools, found, count


def _handshake_mcp_session(url: str, session: int) -> dict[str, Any]:
    """One session of the 2025 protocol (initialize first, then requests that carry the Mcp-Session-Id
    the server handed out, if it handed one out), as older clients speak it; each request on a new
    connection. A server keeping sessions in one worker's memory fails the requests another worker gets."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    def post(n: int, message: dict[str, Any], extra: dict[str, str]) -> httpx.Response:
        r = httpx.post(f"{url}/mcp/", json={"jsonrpc": "2.0", **message}, timeout=60,
                       headers=headers | extra | {"X-Request-ID": f"legacy-{session}-{n}"})
        assert r.status_code in (200, 202), r.text
        return r

    init = post(1, {"id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}, {})
    version = init.json()["result"]["protocolVersion"]
    follow = {"MCP-Protocol-Version": version} | (
        {"Mcp-Session-Id": init.headers["mcp-session-id"]} if "mcp-session-id" in init.headers else {})
    post(2, {"method": "notifications/initialized"}, follow)
    called = post(3, {"id": 2, "method": "tools/call", "params": {
        "name": "search", "arguments": {"query": "owner before it is published", "k": 3}}}, follow)
    return called.json()["result"]


def _mcp_across_workers(server: Server) -> None:
    """Both protocol generations: the SDK's own client, and the initialize handshake of 2025 clients."""
    spanned: set[str] = set()
    for session in range(12):
        tools, found, requests = anyio.run(_mcp_session, server.url, session)
        assert [t.name for t in tools.tools] == ["search_catalog", "get_product", "search", "ask"]
        assert not found.is_error, found.content
        assert found.structured_content["hits"][0]["product_id"] == "platform.handbook"
        legacy = _handshake_mcp_session(server.url, session)
        assert not legacy.get("isError"), legacy
        assert legacy["structuredContent"]["hits"][0]["product_id"] == "platform.handbook"
        for kind, n in (("mcp", requests), ("legacy", 3)):
            if len(set(_wait_logged(server, f"{kind}-{session}-", n).values())) > 1:
                spanned.add(kind)
        if spanned == {"mcp", "legacy"}:
            return  # in each, one request of a session went to one worker and a later one to the other
    pytest.fail(f"sessions spanning both workers: only {spanned or 'none'}")


def test_two_workers_on_faiss_share_metrics_mcp_and_one_provenance_chain(tmp_path: Path, serve: Any) -> None:
    data = tmp_path / "data"
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left over from an earlier run")  # must be wiped at start
    server = serve({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, "--data-dir", str(data))

    served = _asks_over_both_workers(server, "ask-")
    _metrics_count_every_worker(server, len(served))
    _mcp_across_workers(server)

    log = create_provenance_log("sqlite", data, create=False)
    try:
        report = log.verify()
        assert report.ok, report.problems
        assert report.records == report.head_seq == len(served)  # one record per answer, none lost
        assert {client_id_of(r.request_id) for r in log.list(limit=len(served))} == set(served)
    finally:
        log.close()
    text = server.log.read_text()
    assert "no release is current" in text and "published as current" in text  # indexed once, by the parent
    assert text.count("index run") == 1


@pytest.fixture
def outside_basetemp() -> Iterator[Path]:
    """A folder for an embedded PostgreSQL's data (see tests/conftest.py's pg_data_dir for why not under
    pytest's basetemp); torn down after the server that uses it."""
    parent = Path(tempfile.mkdtemp(prefix="meshrag-test-workers-"))
    yield parent
    stop_postgres(parent / "data" / "postgres")
    shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.pg
def test_two_workers_on_pgvector_answer_and_write_one_chain(outside_basetemp: Path, serve: Any) -> None:
    """Shared mode with the embedded server under the data dir: the parent indexes and starts it, the
    workers reuse it (none races another to start it), and their provenance is one chain in PostgreSQL."""
    data = outside_basetemp / "data"
    server = serve({}, "--data-dir", str(data), "--store", "pgvector")
    served = _asks_over_both_workers(server, "pg-ask-")
    _metrics_count_every_worker(server, len(served))

    log = create_provenance_log("postgres", data)
    try:
        report = log.verify()
        assert report.ok, report.problems
        assert report.records == report.head_seq == len(served)
        assert {client_id_of(r.request_id) for r in log.list(limit=len(served))} == set(served)
    finally:
        log.close()


def test_workers_are_handed_the_resolved_settings(tmp_path: Path) -> None:
    """What a worker rebuilds from the environment equals what the serve command resolved, lists and
    keys included; a secret is not copied into the environment."""
    from api.cli.serve import worker_environment
    from api.settings import ApiKeyEntry, ApiSettings

    saved = dict(os.environ)
    try:
        for name in [k for k in os.environ if k.startswith("MESHRAG_")]:
            del os.environ[name]
        os.environ["MESHRAG_LLM_API_KEY"] = "sk-secret"
        key = ApiKeyEntry(id="abcd1234", hash="sha256:" + "0" * 64, principal="ops", roles=["employee"])
        settings = ApiSettings(data_dir=tmp_path, workers=3, port=9999, store="faiss", api_keys=[key],
                               cors_origins=["https://example.org"], rate_limit_anon_per_minute=7.5)
        worker_environment(settings)
        assert ApiSettings() == settings
        assert os.environ["MESHRAG_WORKERS"] == "3"
        assert json.loads(os.environ["MESHRAG_API_KEYS"])[0]["id"] == "abcd1234"
        assert os.environ["MESHRAG_LLM_API_KEY"] == "sk-secret"  # untouched, not "**********"
    finally:
        os.environ.clear()
        os.environ.update(saved)
