"""The real app over real HTTP: one uvicorn server on a free loopback port per session, serving a copy
of the sample-mesh index (real MiniLM), with API keys for principals of different roles."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.auth import create_key
from api.settings import ApiSettings
from indexing.releases import ReleaseRegistry
from indexing.versions import VersionStore
from knowledge.catalog import Catalog
from knowledge.settings import SAMPLE_MESH

RESTRICTED = "people.compensation-handbook"
PUBLIC = "platform.mesh-handbook"

# Who the session's keys act as: principal → roles.
PRINCIPALS = {
    "ana": ["analyst"],  # reads everything but the restricted product
    "ana2": ["analyst"],  # same roles, another principal (for provenance isolation)
    "pat": ["people-partner"],  # reads public + the restricted product
    "sam": [],  # a key without roles: public only, like anonymous
}


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run `app` (lifespan included) with uvicorn in a thread on a free 127.0.0.1 port; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    # Ready means the answer passages are in memory (the session index ships them, so this takes
    # seconds); a test that wants the not-ready state asks /readyz itself before this returns.
    while time.monotonic() < deadline:
        vectors = (httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).json().get("answer_vectors") or {})
        if vectors.get("status") != "running":
            break  # other readiness problems are for the tests to report, not the fixture
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass
class Api:
    """The running session server and how to call it as each principal."""

    url: str
    app: FastAPI
    data_dir: Path
    keys: dict[str, str]  # principal → key

    def client(self, principal: str | None = None, headers: dict[str, str] | None = None) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.keys[principal]}"} if principal else {}
        return httpx.Client(base_url=self.url, headers=auth | (headers or {}), timeout=120)

    def restricted_markers(self) -> list[str]:
        """Strings that only the restricted product's data contains: its id, title, document ids,
        version ids and every chunk id. None may reach a caller without the role."""
        catalog = Catalog.load([SAMPLE_MESH])
        product = catalog.products[RESTRICTED]
        entry = ReleaseRegistry(self.data_dir).current().products[RESTRICTED]  # type: ignore[union-attr]
        chunk_ids = [c.chunk_id for c in VersionStore(self.data_dir).read_chunks(entry.chunk_version)]
        docs = [product.document_id(p) for p in product.documents()]
        return [
            RESTRICTED,
            product.name,
            product.title,
            entry.chunk_version,
            entry.embedding_version,
            *docs,
            *chunk_ids,
        ]


@pytest.fixture(scope="session")
def api_data_dir(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample index: the API writes its provenance log and keys beside it."""
    target = tmp_path_factory.mktemp("api") / "data"
    shutil.copytree(sample_index, target, ignore=shutil.ignore_patterns("provenance.sqlite*", "index.lock"))
    return target


@pytest.fixture(scope="session")
def api(api_data_dir: Path) -> Iterator[Api]:
    keys_file = api_data_dir.parent / "api-keys.json"
    keys = {name: create_key(keys_file, name, roles).key for name, roles in PRINCIPALS.items()}
    # Rate limits off (MESHRAG_RATE_LIMIT=off, the load-test switch): the suite and the schemathesis run
    # fire hundreds of requests from one address; tests/api/test_rate_limits.py checks the limits.
    app = create_app(ApiSettings(data_dir=api_data_dir, mesh_roots=[SAMPLE_MESH], api_keys_file=keys_file,
                                 rate_limit=False))
    with serving(app) as url:
        yield Api(url=url, app=app, data_dir=api_data_dir, keys=keys)


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event name, parsed data) of a text/event-stream body; comments and pings are skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            payload = "\n".join(data)
            events.append((name, payload if payload == "[DONE]" else json.loads(payload)))
    return events


# The number of schemathesis cases of this session, reported at the end of the run.
FUZZ_CASES: dict[str, int] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FUZZ_CASES:
        total = sum(FUZZ_CASES.values())
        terminalreporter.write_line(
            f"schemathesis: {total} generated cases over {len(FUZZ_CASES)} operations "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(FUZZ_CASES.items()))})"
        )
