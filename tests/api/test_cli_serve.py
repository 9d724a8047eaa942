"""`meshrag serve` as a user runs it: on an empty data dir it indexes first (progress shown), then
serves on 127.0.0.1; a key made with `meshrag keys create` works against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.retrieval.conftest import SMALL_MESH, write_product

pytestmark = pytest.mark.slow
MESHRAG = [sys.executable, "-m", "api.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_indexes_when_nothing_is_published_then_serves(tmp_path: Path):
    root = tmp_path / "mesh"
    for pid, spec in SMALL_MESH.items():
        write_product(root, pid, spec["classification"], spec["roles"], spec["docs"])
    data = tmp_path / "data"
    env = os.environ | {
        "MESHRAG_EMBEDDER": "hash",
        "MESHRAG_MESH_ROOTS": json.dumps([str(root)]),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    created = subprocess.run(
        [
            *MESHRAG,
            "keys",
            "create",
            "--principal",
            "ops",
            "--role",
            "employee",
            "--data-dir",
            str(data),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["key"]

    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [*MESHRAG, "serve", "--data-dir", str(data), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            answer = c.post("/v1/ask", json={"question": "What do I do when the carrier misses the pickup?"})
            assert answer.status_code == 200
            rid = answer.headers["x-request-id"]
            assert c.get(f"/v1/provenance/{rid}").json()["principal"]["id"] == "ops"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    output = (tmp_path / "serve.log").read_text()
    assert "no release is current" in output and "index run" in output and "published as current" in output
    assert f"serving on http://127.0.0.1:{port}" in output
    assert (
        f"[{rid}] POST /v1/ask -> 200" in output and "(principal ops)" in output
    )  # every request's log line carries its id
    assert key not in output and key.split("_", 2)[2] not in output
