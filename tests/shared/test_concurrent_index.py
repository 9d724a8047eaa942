"""Concurrent `meshrag index --product` runs in shared mode, as separate processes on one PostgreSQL:
different products both land in the release; the same product twice waits (or refuses with --no-wait),
and the end state is consistent either way (real MiniLM, embedded PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from indexing.pipeline import IndexPipeline
from indexing.releases import Release, release_registry
from indexing.settings import IndexSettings
from indexing.shared_index import index_lock_key
from indexing.stores.pgvector_store import PgVectorStore
from indexing.types import Embedder
from tests.conftest import PgSchema
from tests.polling import poll_until
from tests.retrieval.conftest import INTERNAL, PUBLIC, RESTRICTED
from tests.shared.conftest import append_to_doc, write_tiny_mesh

pytestmark = [pytest.mark.pg, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RUN_BOUND_S = 600.0  # a subprocess run (imports, MiniLM, indexing) on a busy machine: generous, not measured


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def err(self) -> str:
        return self.stderr.read_text("utf-8", errors="replace")

    def finish(self) -> dict[str, Any]:
        self.proc.wait(timeout=RUN_BOUND_S)
        assert self.proc.returncode == 0, f"index exited {self.proc.returncode}:\n{self.err()[-4000:]}"
        return json.loads(self.stdout.read_text("utf-8"))


@dataclass
class Mesh:
    tmp: Path
    pg: PgSchema
    mesh: Path
    names: Iterator[int]

    def settings(self, data_dir: str = "indexer") -> IndexSettings:
        return IndexSettings(data_dir=self.tmp / data_dir, mesh_roots=[self.mesh], store="pgvector",
                             dsn=self.pg.dsn, pg_schema=self.pg.schema)

    def current(self) -> Release:
        current = release_registry(self.settings()).current()
        assert current is not None
        return current

    def start(self, *args: str, data_dir: str = "indexer") -> Run:
        """`meshrag index ARGS --json` as a process of its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHRAG_")} | {
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "COLUMNS": "1000", "MESHRAG_STORE": "pgvector", "MESHRAG_DSN": self.pg.dsn,
            "MESHRAG_PG_SCHEMA": self.pg.schema, "MESHRAG_MESH_ROOTS": json.dumps([str(self.mesh)])}
        n = next(self.names)
        out, err = self.tmp / f"run-{n}.out", self.tmp / f"run-{n}.err"
        argv = [sys.executable, "-m", "api.cli.main", "index", *args, "--json", "--no-answer-vectors",
                "--data-dir", str(self.tmp / data_dir)]
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=o, stderr=e)
        return Run(proc, out, err)

    def backends_waiting_for_a_lock(self) -> int:
        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'meshrag index%%' "
                               "AND wait_event_type = 'Lock'").fetchone()
        return int(row[0]) if row else 0

    def alias_log_is_one_chain(self) -> bool:
        log = release_registry(self.settings()).alias_log()
        return all(b["from"] == a["to"] for a, b in itertools.pairwise(log)) and log[-1]["to"] == self.current().id


@pytest.fixture
def mesh(tmp_path: Path, shared_schema: PgSchema, minilm: Embedder) -> Mesh:
    made = Mesh(tmp_path, shared_schema, write_tiny_mesh(tmp_path / "mesh"), itertools.count())
    report = IndexPipeline(made.settings(), embedder=minilm).run()
    assert report.published and not report.blocked, report.as_dict()
    return made


@contextmanager
def alias_held(pg: PgSchema) -> Iterator[None]:
    """Hold the `current` row locked (as a publish does) so that runs reaching their publish queue up."""
    with psycopg.connect(pg.dsn) as conn, conn.transaction():
        conn.execute(sql.SQL("SELECT release_id FROM {}.alias WHERE name = 'current' FOR UPDATE")
                     .format(sql.Identifier(pg.schema)))
        yield


def test_runs_of_different_products_at_once_both_land_in_the_release(mesh: Mesh):
    before = mesh.current()
    append_to_doc(mesh.mesh, PUBLIC, "glossary.md", "The ocelot freeze window starts on the first Monday of May.")
    append_to_doc(mesh.mesh, INTERNAL, "label-printer.md", "Spare printer heads are in the blue cabinet.")
    # Both runs read `current` when they start and build their release while the alias is locked: each
    # must then merge with whatever is current when it gets the lock, not with what it started from.
    with alias_held(mesh.pg):
        runs = [mesh.start("--product", PUBLIC), mesh.start("--product", INTERNAL)]  # one data dir, as on one host
        assert poll_until(lambda: mesh.backends_waiting_for_a_lock() == 2 or any(r.proc.poll() is not None
                                                                                   for r in runs), RUN_BOUND_S, 0.2)
        assert all(r.proc.poll() is None for r in runs), [r.err()[-2000:] for r in runs]
        assert mesh.current() == before
    public, internal = (r.finish() for r in runs)
    assert public["published"] and internal["published"]

    current = mesh.current()
    new_public = public["products"][PUBLIC]["chunk_version"]
    new_internal = internal["products"][INTERNAL]["chunk_version"]
    assert new_public != before.products[PUBLIC].chunk_version
    assert new_internal != before.products[INTERNAL].chunk_version
    assert current.products[PUBLIC].chunk_version == new_public
    assert current.products[INTERNAL].chunk_version == new_internal
    assert current.products[RESTRICTED] == before.products[RESTRICTED]
    assert current.id in {public["release_id"], internal["release_id"]}
    log = release_registry(mesh.settings()).alias_log()[-2:]
    assert [e["from"] for e in log] == [before.id, log[0]["to"]] and mesh.alias_log_is_one_chain()


def test_the_same_product_twice_waits_or_refuses_and_ends_consistent(mesh: Mesh):
    before = mesh.current()
    append_to_doc(mesh.mesh, PUBLIC, "glossary.md", "The ocelot freeze window starts on the first Monday of May.")
    key = index_lock_key(mesh.pg.schema, PUBLIC)
    with psycopg.connect(mesh.pg.dsn, autocommit=True, application_name="the test's run") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        refused = mesh.start("--product", PUBLIC, "--no-wait", data_dir="host-b")
        refused.proc.wait(timeout=RUN_BOUND_S)
        lines = [line for line in refused.err().splitlines() if line.strip()]
        assert refused.proc.returncode == 2 and len(lines) == 1, refused.err()
        assert f"another index run of {PUBLIC} is in progress (the test's run" in lines[0]

        waiting = mesh.start("--product", PUBLIC, data_dir="host-b")
        assert poll_until(lambda: "waiting for another index run" in waiting.err() or waiting.proc.poll() is not None,
                          RUN_BOUND_S, 0.2)
        assert waiting.proc.poll() is None, waiting.err()
        assert f"waiting for another index run of {PUBLIC} (the test's run" in waiting.err()
        assert mesh.current() == before  # nothing moved while it waited
    report = waiting.finish()
    assert report["published"] and mesh.current().id == report["release_id"]

    # Two real runs of one product at once, from two hosts: one builds and publishes, the other waits, then
    # finds the same versions already built and uploaded and publishes nothing new.
    append_to_doc(mesh.mesh, PUBLIC, "publishing.md", "Owners hand over to a deputy during leave.")
    first, second = mesh.start("--product", PUBLIC, data_dir="host-c"), mesh.start("--product", PUBLIC, data_dir="host-d")
    reports = [first.finish(), second.finish()]
    assert reports[0]["release_id"] == reports[1]["release_id"] == mesh.current().id
    assert sorted(r["published"] for r in reports) == [False, True]
    entry = mesh.current().products[PUBLIC]
    assert entry.chunk_version == reports[0]["products"][PUBLIC]["chunk_version"] != report["products"][PUBLIC]["chunk_version"]
    store = PgVectorStore(mesh.pg.dsn, mesh.pg.schema)
    assert set(mesh.current().collections) <= set(store.collections())
    assert mesh.alias_log_is_one_chain()
