"""Per-caller state shared between workers and replicas (api/state, api/auth.py, the embedding cache):
API keys, web sessions and rate limits seen alike by two app instances on one PostgreSQL schema (as two
replicas), or by two backend instances on one state file (as two `--workers` processes on one host).

Each rate-limit backend is checked against the same expected decisions (the token bucket worked by
hand), and for atomicity under concurrent takes; no test waits for a bucket to refill or asserts a time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from typer.testing import CliRunner

from api.app import create_app
from api.auth import hash_key
from api.cli.main import app as cli
from api.ratelimit import DAY_S, Decision, MemoryRateLimitBackend, RatePolicy
from api.settings import ApiSettings
from api.state import open_api_state
from api.state.keys import PgKeyTable
from api.state.postgres import PgRateLimitBackend, PgSessionBackend, state_tables
from api.state.sqlite import SqliteRateLimitBackend, SqliteSessionBackend, SqliteState
from api.web.session import COOKIE, SessionStore, WebSession
from indexing.embedder import create_embedder
from indexing.embedding_cache import EmbeddingCache, embed_with_cache, open_embedding_cache, text_hash
from indexing.embedding_cache_pg import PgEmbeddingCache
from indexing.pipeline import IndexPipeline
from indexing.settings import IndexSettings
from knowledge.model import Principal
from tests.conftest import PgSchema
from tests.retrieval.conftest import SMALL_MESH, write_product

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
SEARCH = {"query": "When is the release alias moved?", "k": 3}
BOUND_S = 5.0  # a key created or revoked anywhere applies everywhere within this (the refresh is 1 s)

# ---------------------------------------------------------------------------------------- rate limits

POLICY = RatePolicy("keyed", per_minute=60, burst=3, per_day=6, env="MESHRAG_RATE_LIMIT_KEYED")
T0 = 20_000 * DAY_S + 100.0  # 100 s into a UTC day
# (seconds after T0, expected decision) for one caller under POLICY, worked by hand: 3 at once, then one
# token a second, 6 a day.
SCRIPT: list[tuple[float, Decision]] = [
    (0.0, Decision(True)),
    (0.0, Decision(True)),
    (0.0, Decision(True)),
    (0.0, Decision(False, "burst", 1)),  # the bucket is empty: one token in 1 s
    (0.25, Decision(False, "burst", 1)),  # 0.25 tokens: 0.75 s to go, rounded up
    (1.0, Decision(True)),  # refilled one token
    (-30.0, Decision(False, "burst", 1)),  # a clock set back refills nothing and drains nothing
    (10.0, Decision(True)),  # 5th today
    (20.0, Decision(True)),  # 6th today
    (30.0, Decision(False, "daily", DAY_S - 130)),  # until 00:00 UTC
    (DAY_S - 100.0, Decision(True)),  # the next UTC day: a new quota, a full bucket
]


def _sqlite_backends(tmp_path: Path) -> tuple[Any, Any]:
    return (SqliteRateLimitBackend(SqliteState(tmp_path / "state.sqlite")),
            SqliteRateLimitBackend(SqliteState(tmp_path / "state.sqlite")))


def _pg_backends(pg: PgSchema) -> tuple[Any, Any]:
    return tuple(PgRateLimitBackend(state_tables(pg.dsn, pg.schema)) for _ in range(2))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.pg)])
def two_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two rate-limit backend instances over one store (as two workers or replicas); memory: the same one."""
    if request.param == "memory":
        one = MemoryRateLimitBackend()
        yield one, one
    elif request.param == "sqlite":
        yield _sqlite_backends(tmp_path)
    else:
        pair = _pg_backends(request.getfixturevalue("pg_dsn_schema"))
        yield pair
        for backend in pair:
            backend.tables.close()


def _take(backend: Any, caller: str, policy: RatePolicy, now: float) -> Decision:
    take_now = getattr(backend, "take_now", None)
    if take_now is not None:
        return take_now(caller, policy, now)
    import asyncio

    return asyncio.run(backend.take(caller, policy, now))


def test_every_backend_makes_the_decisions_worked_by_hand_across_instances(two_backends):
    first, second = two_backends
    for step, (offset, expected) in enumerate(SCRIPT):
        backend = (first, second)[step % 2]  # alternate: the bucket is one, whichever instance takes
        assert _take(backend, "key:alpha", POLICY, T0 + offset) == expected, f"step {step} at +{offset}"
    # Another caller has a bucket of its own, and a policy without a rate limit only counts the day.
    assert _take(first, "key:beta", POLICY, T0) == Decision(True)
    unlimited = RatePolicy("anonymous", per_minute=0, burst=1, per_day=2, env="MESHRAG_RATE_LIMIT_ANON")
    got = [_take(second, "addr:10.0.0.1", unlimited, T0).allowed for _ in range(3)]
    assert got == [True, True, False]


def test_concurrent_takes_from_two_instances_never_exceed_the_burst(two_backends):
    first, second = two_backends
    policy = RatePolicy("keyed", per_minute=0.001, burst=20, per_day=0, env="MESHRAG_RATE_LIMIT_KEYED")
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer(backend: Any) -> None:
        for _ in range(15):
            decision = _take(backend, "key:busy", policy, T0)
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=hammer, args=(b,)) for b in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 60 and allowed.count(True) == 20


# ------------------------------------------------------------------------------------------- sessions

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.pg)])
def two_session_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    if request.param == "sqlite":
        yield (SqliteSessionBackend(SqliteState(tmp_path / "state.sqlite")),
               SqliteSessionBackend(SqliteState(tmp_path / "state.sqlite")))
    else:
        pg = request.getfixturevalue("pg_dsn_schema")
        pair = tuple(PgSessionBackend(state_tables(pg.dsn, pg.schema)) for _ in range(2))
        yield pair
        for backend in pair:
            backend.tables.close()


def test_a_session_made_through_one_instance_is_valid_on_the_other(two_session_stores):
    one, other = (SessionStore(b) for b in two_session_stores)
    key = "mr_abcdef123456_" + "s" * 43
    token, made = one.create(key, Principal("ana", frozenset({"analyst"})))
    seen = other.get(token)
    assert seen is not None and (seen.key_id, seen.principal, seen.csrf) == ("abcdef123456", "ana", made.csrf)
    assert seen.key_hash == hash_key(key)
    assert other.get(token + "x") is None and other.get(None) is None
    other.end(token)
    assert one.get(token) is None


def test_an_idle_session_expires_and_stays_expired(two_session_stores):
    one, other = two_session_stores
    session = WebSession(key_id="abcdef123456", key_hash="sha256:" + "0" * 64, principal="ana", csrf="c",
                         last_seen=1000.0)
    one.save("h1", session, 1000.0, 60.0)
    assert other.touch("h1", 1059.0, 60.0) is not None  # seen: idle again from 1059
    assert one.touch("h1", 1100.0, 60.0) is not None
    assert other.touch("h1", 1161.0, 60.0) is None  # 61 s idle
    assert one.touch("h1", 1162.0, 0.0 + 1e9) is None  # gone, whatever the idle bound now


def test_the_keys_of_sessions_are_stored_as_hashes_only(tmp_path: Path):
    state = SqliteState(tmp_path / "state.sqlite")
    store = SessionStore(SqliteSessionBackend(state))
    key = "mr_abcdef123456_" + "q" * 43
    token, _ = store.create(key, Principal("ana", frozenset()))
    state.close()
    dump = (tmp_path / "state.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("state.sqlite-*"))
    assert key.encode() not in dump and token.encode() not in dump


def test_workers_settings_choose_the_state_file_and_share_it(tmp_path: Path):
    """Two app states built from the settings of `--workers 2` (as each worker builds its own)."""
    settings = ApiSettings(data_dir=tmp_path, workers=2)
    first, second = open_api_state(settings), open_api_state(settings)
    assert first.kind == second.kind == "sqlite"
    assert open_api_state(ApiSettings(data_dir=tmp_path)).kind == "memory"
    for state in (first, second):
        state.warm_up()
    token, _ = first.sessions.create("mr_abcdef123456_" + "w" * 43, Principal("ana", frozenset()))
    assert second.sessions.get(token) is not None
    policy = RatePolicy("anonymous", per_minute=1, burst=2, per_day=0, env="MESHRAG_RATE_LIMIT_ANON")
    now = time.time()
    got = [_take(s.rate_limits, "addr:1.2.3.4", policy, now).allowed for s in (first, second, first)]
    assert got == [True, True, False]
    assert (tmp_path / "api-state.sqlite").exists()
    for state in (first, second):
        state.close()


# ---------------------------------------------------------------------------- two apps on one schema

@pytest.fixture(scope="module")
def shared_index(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A small mesh indexed with the hash embedder into a schema of its own: the settings two apps share."""
    schema = f"test_state_{uuid.uuid4().hex[:12]}"
    root = tmp_path_factory.mktemp("shared-state")
    for pid, spec in SMALL_MESH.items():
        write_product(root / "mesh", pid, spec["classification"], spec["roles"], spec["docs"])
    common: dict[str, Any] = {"data_dir": root / "data", "mesh_roots": [root / "mesh"], "embedder": "hash",
                              "store": "pgvector", "dsn": pg_server, "pg_schema": schema}
    report = IndexPipeline(IndexSettings(**common)).run()
    assert report.published and not report.blocked
    yield common | {"root": root}
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _apps(shared: dict[str, Any], **overrides: Any) -> tuple[TestClient, TestClient]:
    settings = {k: v for k, v in shared.items() if k != "root"}
    settings |= {"api_keys_file": shared["root"] / "no-keys.json"} | overrides
    return (TestClient(create_app(ApiSettings(**settings)), follow_redirects=False),
            TestClient(create_app(ApiSettings(**settings)), follow_redirects=False))


def _poll(check: Callable[[], bool], bound_s: float = BOUND_S) -> bool:
    deadline = time.monotonic() + bound_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _cli(shared: dict[str, Any], *args: str) -> Any:
    env = {"MESHRAG_STORE": "pgvector", "MESHRAG_DSN": shared["dsn"],
           "MESHRAG_PG_SCHEMA": shared["pg_schema"]}
    done = runner.invoke(cli, ["keys", *args, "--data-dir", str(shared["root"] / "admin")], env=env)
    assert done.exit_code == 0, done.output
    return done


@pytest.mark.pg
def test_a_key_created_and_revoked_through_the_cli_applies_on_both_apps(shared_index):
    first, second = _apps(shared_index)
    with first, second:
        created = json.loads(_cli(shared_index, "create", "--principal", "ops-bot", "--role", "employee",
                                  "--json").stdout)
        key, kid = created["key"], created["entry"]["id"]
        assert shared_index["pg_schema"] in created["table"]
        for client in (first, second):
            assert _poll(lambda c=client: c.post("/v1/search", json=SEARCH, headers={"X-API-Key": key})
                         .status_code == 200)
        listed = json.loads(_cli(shared_index, "list", "--json").stdout)
        assert [(r["id"], r["source"], r["revoked_at"]) for r in listed] == [(kid, "postgres", None)]
        with psycopg.connect(shared_index["dsn"]) as conn:
            stored = conn.execute(sql.SQL("SELECT hash FROM {}.api_keys").format(
                sql.Identifier(shared_index["pg_schema"]))).fetchall()
        assert stored == [(hash_key(key),)]  # the hash only, never the key

        _cli(shared_index, "revoke", f"mr_{kid}_")
        for client in (first, second):
            assert _poll(lambda c=client: c.post("/v1/search", json=SEARCH, headers={"X-API-Key": key})
                         .status_code == 401)
        refused = second.post("/v1/search", json=SEARCH, headers={"X-API-Key": key})
        assert "www-authenticate" in refused.headers
        listed = json.loads(_cli(shared_index, "list", "--json").stdout)
        assert listed[0]["revoked_at"] is not None
        admin = str(shared_index["root"] / "admin")
        again = runner.invoke(cli, ["keys", "revoke", kid, "--store", "pgvector",
                                    "--dsn", shared_index["dsn"], "--data-dir", admin],
                              env={"MESHRAG_PG_SCHEMA": shared_index["pg_schema"]})
        assert again.exit_code == 2 and "already revoked" in again.output


@pytest.mark.pg
def test_a_web_session_made_on_one_app_is_valid_on_the_other_until_its_key_is_revoked(shared_index):
    table = PgKeyTable(shared_index["dsn"], shared_index["pg_schema"])
    new = table.create("web-user", ["employee"])
    first, second = _apps(shared_index)

    def sign_in(client: TestClient) -> str:
        signed_in = client.post("/signin", data={"api_key": new.key})
        assert signed_in.status_code == 303, signed_in.text
        client.cookies.clear()  # each request below names its session itself
        return signed_in.cookies[COOKIE]

    def who(client: TestClient, token: str) -> str:
        return client.get("/signin", headers={"Cookie": f"{COOKIE}={token}"}).text

    with first, second:
        token = sign_in(first)
        page = who(second, token)
        assert "Signed in as <strong>web-user</strong>" in page
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed_out = second.post("/signout", data={"csrf": csrf}, headers={"Cookie": f"{COOKIE}={token}"})
        assert signed_out.status_code == 303
        assert "Not signed in" in who(first, token)  # ended for both

        token = sign_in(second)
        assert "Signed in as <strong>web-user</strong>" in who(first, token)
        table.revoke(new.entry.id)
        assert _poll(lambda: "Not signed in" in who(first, token))
        assert "Not signed in" in who(second, token)
    table.close()


@pytest.mark.pg
def test_two_apps_share_one_callers_burst(shared_index):
    table = PgKeyTable(shared_index["dsn"], shared_index["pg_schema"])
    key = table.create("limited-bot", []).key
    table.close()
    limits = {"rate_limit_keyed_burst": 3, "rate_limit_keyed_per_minute": 1,
              "rate_limit_anon_burst": 2, "rate_limit_anon_per_minute": 1}
    first, second = _apps(shared_index, **limits)
    with first, second:
        keyed = {"X-API-Key": key}
        statuses = [c.get("/v1/catalog", headers=keyed).status_code for c in (first, second, first, second)]
        assert statuses == [200, 200, 200, 429]
        refused = first.get("/v1/catalog", headers=keyed)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "MESHRAG_RATE_LIMIT_KEYED_BURST" in refused.json()["error"]["message"]
        # Anonymous callers (the test client's address) have a bucket of their own, shared as well.
        assert [c.get("/v1/catalog").status_code for c in (second, first, second)] == [200, 200, 429]


# ------------------------------------------------------------------------------------ embedding cache

@pytest.mark.pg
def test_the_embedding_cache_round_trips_through_postgresql_for_every_process(pg_dsn_schema: PgSchema,
                                                                             tmp_path: Path):
    embedder = create_embedder("hash")
    embedder.warm_up()
    texts = ["alpha beta", "gamma delta", "alpha beta", "epsilon"]
    indexer = PgEmbeddingCache(pg_dsn_schema.dsn, pg_dsn_schema.schema)
    with indexer:
        first, embedded, reused = embed_with_cache(embedder, indexer, texts)
        assert (embedded, reused) == (3, 1)
        assert indexer.put_many("m", {"k": np.ones(3, dtype=np.float32)}) == 1
        assert indexer.put_many("m", {"k": np.zeros(3, dtype=np.float32)}) == 0  # first write wins

    # A replica with an empty scratch dir: its settings pick the same table, and it embeds nothing.
    settings = IndexSettings(data_dir=tmp_path / "scratch", store="pgvector", dsn=pg_dsn_schema.dsn,
                             pg_schema=pg_dsn_schema.schema)
    replica = open_embedding_cache(settings)
    assert isinstance(replica, PgEmbeddingCache)
    with replica:
        again, embedded, reused = embed_with_cache(embedder, replica, texts)
        assert (embedded, reused) == (0, 4) and again.tobytes() == first.tobytes()
        assert replica.get_many("m", ["k", "missing"])["k"].tolist() == [1.0, 1.0, 1.0]
        assert replica.count(embedder.model_id) == 3 and replica.count() == 4
        assert replica.get_many(embedder.model_id, []) == {}
    assert not (tmp_path / "scratch").exists()  # nothing written locally
    # FAISS mode keeps the SQLite file under the cache dir, byte-identical vectors.
    local = open_embedding_cache(IndexSettings(data_dir=tmp_path / "faiss"))
    assert isinstance(local, EmbeddingCache)
    with local:
        vectors, _, _ = embed_with_cache(embedder, local, texts)
        assert vectors.tobytes() == first.tobytes()
        assert local.get_many(embedder.model_id, [text_hash("epsilon")])

