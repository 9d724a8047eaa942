"""Shared mode end to end: two `meshrag serve` processes on one embedded PostgreSQL, each with its own
empty scratch data dir and no mesh sources, plus `meshrag index` / `releases` / `keys` run as third
processes, exactly as replicas behind a load balancer and index jobs would run.

What must hold (issue #16): both replicas give the same answers (same release id, same hits and
citations); a publish or rollback from a third process is served by both within 5 s; a key created or
revoked through the CLI applies on both; one replica killed mid-load leaves the other answering; a
PostgreSQL restart is 503 with Retry-After, then both recover without a restart. Also: an answer recorded
by one replica and a web session signed in on one are found by the other (no stickiness needed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from api.web.session import COOKIE
from indexing.stores.embedded_pg import start_postgres, stop_postgres
from tests.polling import poll_until
from tests.retrieval.conftest import INTERNAL, PUBLIC
from tests.shared.conftest import SharedPg, append_to_doc, fresh_schema, write_tiny_mesh

pytestmark = [pytest.mark.pg, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MESHRAG = [sys.executable, "-m", "api.cli.main"]
PUBLISH_BOUND_S = 5.0  # the bound for a publish to reach every replica
REVOKE_BOUND_S = 10.0  # "within a few seconds"
RECOVERY_BOUND_S = 60.0  # after PostgreSQL is back: generous, it is not what is measured
START_BOUND_S = 240.0

QUESTIONS = (
    "What do I do when the carrier misses the pickup?",
    "Who answers reader questions about a published product?",
    "What is a release?",
)
CHANGED_DOC = (PUBLIC, "glossary.md")


# ---------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class Replica:
    """One `meshrag serve` process in its own process group, on its own empty scratch data dir."""

    name: str
    scratch: Path
    env: dict[str, str]
    dsn: str
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        argv = [*MESHRAG, "serve", "--store", "pgvector", "--dsn", self.dsn, "--data-dir", str(self.scratch),
                "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout_s: float = START_BOUND_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"replica {self.name} exited with {self.proc.returncode} while starting:\n"
                            f"{_read_tail(self.log)}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=5)
                if r.status_code == 200:
                    return
                last = r.text[:500]
            except httpx.TransportError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        pytest.fail(f"replica {self.name} not ready after {timeout_s:.0f} s (last /readyz: {last}):\n"
                    f"{_read_tail(self.log)}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (the server and any workers it started)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@dataclass
class Deployment:
    """The embedded PostgreSQL, the indexer's mesh and data dir, the two replicas and an analyst key."""

    pgdata: Path
    dsn: str
    mesh: Path
    work: Path
    cli_env: dict[str, str]
    replicas: list[Replica]
    key: str = ""
    releases_made: list[str] = field(default_factory=list)

    def cli(self, *args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
        """A `meshrag` command as a third process (its own data dir, unless given: nothing local is shared)."""
        argv = [*MESHRAG, *args]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        done = subprocess.run(argv, check=False, cwd=REPO, env=self.cli_env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
        return done

    def index(self, *products: str) -> dict[str, Any]:
        args = ["index", "--store", "pgvector", "--dsn", self.dsn, "--json"]
        for p in products:
            args += ["--product", p]
        report = json.loads(self.cli(*args, data_dir=self.work / "indexer").stdout)
        assert not [p for p, r in report["products"].items() if r["gate"] == "blocked"], report
        self.releases_made.append(report["release_id"])
        return report

    def create_key(self, principal: str, role: str) -> tuple[str, str]:
        """(key, key id) from `meshrag keys create` run in an admin scratch dir of its own."""
        out = json.loads(self.cli("keys", "create", "--principal", principal, "--role", role, "--json",
                                  data_dir=self.work / "admin").stdout)
        return out["key"], out["entry"]["id"]

    def change_document(self, sentence: str) -> None:
        append_to_doc(self.mesh, *CHANGED_DOC, sentence)

    def ensure_running(self) -> None:
        """Restart (on a fresh empty scratch dir) any replica a test killed."""
        dead = [r for r in self.replicas if not r.alive]
        for r in dead:
            r.scratch = Path(tempfile.mkdtemp(prefix=f"scratch-{r.name}-", dir=self.work))
            r.start()
        for r in dead:
            r.wait_ready()


def search_view(body: dict[str, Any]) -> tuple[Any, ...]:
    """What two replicas must agree on in a search: the release and each hit's identity, span and score."""
    hits = tuple((h["chunk_id"], h["product_id"], h["product_version"], h["document"], h["start"], h["end"],
                  round(h["score"], 6)) for h in body["hits"])
    return body["release_id"], hits


def ask_view(body: dict[str, Any]) -> tuple[Any, ...]:
    """What two replicas must agree on in an answer: release, outcome, text and what each marker cites."""
    answer = body["answer"]
    cites = tuple((c["marker"], c["chunk_id"], c["product_id"], c["product_version"], c["document"],
                   c["start"], c["end"]) for c in answer["citations"])
    return body["release_id"], answer["outcome"], answer["text"], cites


def served_release(replica: Replica, key: str) -> str | None:
    """The release a replica serves a search from right now (None while it cannot answer)."""
    try:
        with replica.client(key) as c:
            r = c.post("/v1/search", json={"query": QUESTIONS[0], "k": 3})
    except httpx.TransportError:
        return None
    return r.json()["release_id"] if r.status_code == 200 else None


# ---------------------------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def deployment(shared_pg: SharedPg) -> Iterator[Deployment]:
    """The shared-mode server of tests/shared (a test here restarts it), a schema of this module's own
    (not the default one: every part must honour `pg_schema`), the mesh indexed by a third process, an
    employee key, and two replicas ready on empty scratch dirs."""
    # Not under pytest's basetemp: other pytest sessions reset that root to 0700 (see tests/conftest.py).
    work = Path(tempfile.mkdtemp(prefix="meshrag-replicas-"))
    schema = fresh_schema("replicas")
    replicas: list[Replica] = []
    try:
        mesh = write_tiny_mesh(work / "mesh")
        empty_mesh = work / "no-mesh"  # replicas start from the DSN and settings alone: no sources
        empty_mesh.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith("MESHRAG_")} | {
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "COLUMNS": "200", "MESHRAG_STORE": "pgvector", "MESHRAG_DSN": shared_pg.dsn, "MESHRAG_PG_SCHEMA": schema,
        }
        cli_env = base | {"MESHRAG_MESH_ROOTS": json.dumps([str(mesh)])}
        replica_env = base | {
            "MESHRAG_MESH_ROOTS": json.dumps([str(empty_mesh)]),
            # The ONNX export (once per data dir, ~10 s) is not what this module tests; torch encodes
            # the same vectors.
            "MESHRAG_QUERY_RUNTIME": "torch",
            # Limits stay on (their counters live in PostgreSQL in shared mode) but never trip here.
            "MESHRAG_RATE_LIMIT_KEYED_BURST": "100000", "MESHRAG_RATE_LIMIT_KEYED_PER_MINUTE": "100000",
            "MESHRAG_RATE_LIMIT_ANON_BURST": "100000", "MESHRAG_RATE_LIMIT_ANON_PER_MINUTE": "100000",
        }
        dep = Deployment(pgdata=shared_pg.pgdata, dsn=shared_pg.dsn, mesh=mesh, work=work, cli_env=cli_env,
                         replicas=replicas)
        dep.index()
        dep.key, _ = dep.create_key("ana", "employee")
        for name in ("a", "b"):
            scratch = work / f"scratch-{name}"
            scratch.mkdir()
            replicas.append(Replica(name, scratch, replica_env, shared_pg.dsn, work / f"serve-{name}.log"))
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
        yield dep
    finally:
        for r in replicas:
            r.kill()
        start_postgres(shared_pg.pgdata)  # a failed restart test may have left it stopped
        with psycopg.connect(shared_pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def dep(deployment: Deployment) -> Deployment:
    deployment.ensure_running()
    return deployment


# ---------------------------------------------------------------------------------------------- tests
def test_replicas_start_with_empty_scratch_dirs_and_answer_identically(dep: Deployment):
    a, b = dep.replicas
    for question in QUESTIONS:
        views = []
        for replica in (a, b):
            with replica.client(dep.key) as c:
                search = c.post("/v1/search", json={"query": question, "k": 5})
                ask = c.post("/v1/ask", json={"question": question})
            assert search.status_code == 200, f"{replica.name}: {search.text}"
            assert ask.status_code == 200, f"{replica.name}: {ask.text}"
            views.append((search_view(search.json()), ask_view(ask.json())))
        (search_a, ask_a), (search_b, ask_b) = views
        assert search_a[1], f"no hits for {question!r}"
        assert search_a == search_b, f"search {question!r} differs between replicas"
        assert ask_a == ask_b, f"ask {question!r} differs between replicas"
        assert search_a[0] == ask_a[0] == served_release(a, dep.key)
    # The employee reads the internal product through both (roles come from the shared key), never the
    # restricted one.
    with a.client(dep.key) as c:
        products = {h["product_id"] for h in c.post("/v1/search", json={"query": QUESTIONS[0]}).json()["hits"]}
    assert INTERNAL in products and "people.pay" not in products
    # Nothing shared was written into the replicas' scratch dirs that another replica would need.
    for replica in (a, b):
        assert not (replica.scratch / "releases").exists(), f"{replica.name} keeps releases locally"
        assert not (replica.scratch / "api-keys.json").exists()


def test_an_answer_recorded_by_one_replica_is_readable_through_the_other(dep: Deployment):
    a, b = dep.replicas
    with a.client(dep.key) as c:
        asked = c.post("/v1/ask", json={"question": QUESTIONS[1]})
    assert asked.status_code == 200, asked.text
    with b.client(dep.key) as c:
        record = c.get(f"/v1/provenance/{asked.json()['request_id']}")
    assert record.status_code == 200, record.text
    assert record.json()["principal"]["id"] == "ana"


def test_a_web_session_signed_in_on_one_replica_works_on_the_other(dep: Deployment):
    """No stickiness needed at the load balancer: the session lives in PostgreSQL."""
    a, b = dep.replicas
    with a.client() as c:
        signed_in = c.post("/signin", data={"api_key": dep.key})
    assert signed_in.status_code == 303, signed_in.text
    token = signed_in.cookies[COOKIE]
    with b.client() as c:
        page = c.get("/signin", headers={"Cookie": f"{COOKIE}={token}"})
    assert page.status_code == 200 and "Signed in as <strong>ana</strong>" in page.text


def test_a_publish_from_a_third_process_reaches_both_replicas(dep: Deployment):
    before = served_release(dep.replicas[0], dep.key)
    assert before is not None
    dep.change_document("The ocelot freeze window starts on the first Monday of December.")
    report = dep.index(PUBLIC)  # one product's job, from another data dir
    new = report["release_id"]
    assert report["published"] and new != before, report

    for replica in dep.replicas:
        served = poll_until(lambda r=replica: served_release(r, dep.key) == new, PUBLISH_BOUND_S)
        assert served, f"replica {replica.name} still serves {served_release(replica, dep.key)}, not {new}"
    for replica in dep.replicas:
        with replica.client(dep.key) as c:
            hits = c.post("/v1/search", json={"query": "When does the ocelot freeze window start?"}).json()["hits"]
            carrier = c.post("/v1/search", json={"query": QUESTIONS[0]}).json()["hits"]
        assert "ocelot" in hits[0]["text"], f"{replica.name} does not serve the changed document"
        # The one-product run merged into the release: the other products are still served.
        assert INTERNAL in {h["product_id"] for h in carrier}, f"{replica.name} lost {INTERNAL}"

    dep.cli("releases", "rollback", data_dir=dep.work / "admin")
    for replica in dep.replicas:
        back = poll_until(lambda r=replica: served_release(r, dep.key) == before, PUBLISH_BOUND_S)
        assert back, f"replica {replica.name} serves {served_release(replica, dep.key)} after the rollback"
    dep.cli("releases", "publish", new, data_dir=dep.work / "admin")
    for replica in dep.replicas:
        again = poll_until(lambda r=replica: served_release(r, dep.key) == new, PUBLISH_BOUND_S)
        assert again, f"replica {replica.name} serves {served_release(replica, dep.key)} after publish {new}"


def test_a_key_created_and_revoked_from_the_cli_applies_on_both_replicas(dep: Deployment):
    key, key_id = dep.create_key("rotating-bot", "employee")

    def status_on(replica: Replica, k: str) -> int:
        with replica.client(k) as c:
            return c.post("/v1/search", json={"query": QUESTIONS[0], "k": 3}).status_code

    for replica in dep.replicas:
        assert poll_until(lambda r=replica: status_on(r, key) == 200, PUBLISH_BOUND_S), (
            f"replica {replica.name} does not accept the new key: {status_on(replica, key)}")

    dep.cli("keys", "revoke", key_id, data_dir=dep.work / "admin")
    for replica in dep.replicas:
        assert poll_until(lambda r=replica: status_on(r, key) == 401, REVOKE_BOUND_S), (
            f"replica {replica.name} still answers the revoked key: {status_on(replica, key)}")
        with replica.client(key) as c:
            refused = c.post("/v1/ask", json={"question": QUESTIONS[0]})
        assert refused.status_code == 401 and "www-authenticate" in refused.headers
        assert status_on(replica, dep.key) == 200, "revoking one key must leave the others working"


def test_postgres_restart_is_503_with_retry_after_then_both_recover_without_restart(dep: Deployment):
    release = served_release(dep.replicas[0], dep.key)
    pids = [r.proc.pid for r in dep.replicas if r.proc is not None]
    stop_postgres(dep.pgdata)
    try:
        for replica in dep.replicas:
            with replica.client(dep.key) as c:
                for path, body in (("/v1/search", {"query": QUESTIONS[0]}), ("/v1/ask", {"question": QUESTIONS[1]})):
                    r = c.post(path, json=body)
                    assert r.status_code == 503, f"{replica.name} {path}: {r.status_code} {r.text[:300]}"
                    assert int(r.headers["retry-after"]) >= 1, r.headers
                    assert "error" in r.json() and "Traceback" not in r.text and dep.dsn not in r.text
            assert replica.alive
    finally:
        assert start_postgres(dep.pgdata) == dep.dsn  # same socket, same DSN

    for replica in dep.replicas:
        assert poll_until(lambda r=replica: served_release(r, dep.key) == release, RECOVERY_BOUND_S, 0.5), (
            f"replica {replica.name} did not recover:\n{_read_tail(replica.log)}")
        with replica.client(dep.key) as c:
            assert c.post("/v1/ask", json={"question": QUESTIONS[1]}).status_code == 200
            assert c.get("/readyz").status_code == 200
    assert [r.proc.pid for r in dep.replicas if r.proc is not None] == pids, "a replica was restarted"

    # Release changes still reach both after the outage (their change listeners reconnected).
    target = next((rid for rid in reversed(dep.releases_made) if rid != release), None)
    if target is None:
        dep.change_document("The narwhal review happens after every outage.")
        target = dep.index(PUBLIC)["release_id"]
    else:
        dep.cli("releases", "publish", target, data_dir=dep.work / "admin")
    for replica in dep.replicas:
        assert poll_until(lambda r=replica: served_release(r, dep.key) == target, PUBLISH_BOUND_S), (
            f"replica {replica.name} serves {served_release(replica, dep.key)} after the outage, not {target}")


def test_one_replica_killed_mid_load_leaves_the_other_answering(dep: Deployment):
    victim, survivor = dep.replicas
    statuses: list[int | str] = []
    killed = threading.Event()
    started = threading.Event()

    def load() -> None:
        with survivor.client(dep.key) as c:
            for i in range(40):
                question = QUESTIONS[i % len(QUESTIONS)]
                try:
                    r = (c.post("/v1/search", json={"query": question}) if i % 2 else
                         c.post("/v1/ask", json={"question": question}))
                    statuses.append(r.status_code)
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)
                if i == 4:
                    started.set()
                    killed.wait(timeout=30)

    worker = threading.Thread(target=load)
    worker.start()
    assert started.wait(timeout=120), "the load loop did not get going"
    victim.kill()
    killed.set()
    worker.join(timeout=300)
    assert not victim.alive
    assert len(statuses) == 40 and all(s == 200 for s in statuses), statuses
    with survivor.client(dep.key) as c:
        assert c.get("/readyz").status_code == 200
