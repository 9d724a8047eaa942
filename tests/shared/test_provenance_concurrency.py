"""Several processes (not threads: each has its own connection, its own group committer, and only the
database's lock between them) append to one provenance log at once: API workers on one SQLite file, or
replicas on one PostgreSQL schema. The result must be one unbroken chain: every record exactly once,
seq 1..n without gaps or duplicates, and `verify` passes."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from knowledge.model import Principal
from retrieval.provenance import ProvenanceLog, create_provenance_log, record_from
from retrieval.types import Answer, SearchResult
from tests.conftest import PgSchema

PROCESSES = 3
THREADS = 2  # per process: appends inside one process also batch through its group committer
RECORDS = 15  # per thread


def _open(target: dict[str, Any]) -> ProvenanceLog:
    if target["kind"] == "sqlite":
        return create_provenance_log("sqlite", Path(target["data_dir"]))
    return create_provenance_log("postgres", Path(target["data_dir"]), target["dsn"], target["schema"])


def _append_many(target: dict[str, Any], worker: int, start: Any) -> None:
    """One process: its own log object (warmed up concurrently with the others, so the first start's
    table creation races too), THREADS threads appending RECORDS records each."""
    log = _open(target)
    principal = Principal(f"worker-{worker}", frozenset({"staff"}))
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(RECORDS):
                rid = f"w{worker}-t{thread}-{i:03d}"
                search = SearchResult(release_id="rel-1", hits=(), params={"k": 8}, timings_ms={"dense": 1.5})
                answer = Answer(question=f"question {rid}", text=f"answer {rid}", citations=(), abstained=True,
                                support=0.1, answerer="extractive@1", outcome="abstained")
                log.append(record_from(rid, principal, f"question {rid}", search, answer,
                                       created_at=datetime(2025, 1, 1, tzinfo=UTC)))
        except BaseException as exc:  # noqa: BLE001 - reported through the exit code below
            errors.append(exc)

    start.wait()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log.close()
    if errors:
        raise SystemExit(f"worker {worker}: {errors[0]!r}")


def _run_processes(target: dict[str, Any]) -> None:
    ctx = multiprocessing.get_context("spawn")  # as uvicorn starts its workers: nothing inherited
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_append_many, args=(target, w, start)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * PROCESSES


def _assert_one_chain(log: ProvenanceLog) -> None:
    total = PROCESSES * THREADS * RECORDS
    report = log.verify()
    assert report.ok, report.problems
    assert report.records == report.head_seq == total
    records = log.list(limit=total)
    assert sorted(r.seq for r in records) == list(range(1, total + 1))
    expected = {f"w{w}-t{t}-{i:03d}" for w in range(PROCESSES) for t in range(THREADS) for i in range(RECORDS)}
    assert {r.request_id for r in records} == expected
    by_seq = {r.seq: r for r in records}
    for seq in range(2, total + 1):  # each record chains onto the one before it, whoever wrote it
        assert by_seq[seq].prev_request_id == by_seq[seq - 1].request_id
        assert by_seq[seq].prev_hash == by_seq[seq - 1].hash
    assert len({r.principal.id for r in records}) == PROCESSES


def test_processes_appending_to_one_sqlite_file_keep_one_chain(tmp_path: Path) -> None:
    target = {"kind": "sqlite", "data_dir": str(tmp_path)}
    _run_processes(target)
    log = _open(target)
    try:
        _assert_one_chain(log)
    finally:
        log.close()


@pytest.mark.pg
def test_processes_appending_to_one_postgres_schema_keep_one_chain(tmp_path: Path, pg_dsn_schema: PgSchema
                                                                  ) -> None:
    target = {"kind": "postgres", "data_dir": str(tmp_path), "dsn": pg_dsn_schema.dsn,
              "schema": pg_dsn_schema.schema}
    _run_processes(target)
    log = _open(target)
    try:
        _assert_one_chain(log)
    finally:
        log.close()


@pytest.mark.pg
def test_a_schema_created_meanwhile_by_another_part_does_not_fail_the_start(pg_dsn_schema: PgSchema) -> None:
    """Other parts (the vector store, the release tables) create the same schema under locks of their own:
    a CREATE SCHEMA IF NOT EXISTS racing theirs fails with a unique violation, which is no error here."""
    import time

    import psycopg
    from psycopg import sql

    from retrieval.provenance import PgProvenanceLog

    other = psycopg.connect(pg_dsn_schema.dsn)
    try:
        other.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_dsn_schema.schema)))  # not committed
        log = PgProvenanceLog(pg_dsn_schema.dsn, pg_dsn_schema.schema)
        outcome: list[BaseException | None] = []

        def warm() -> None:
            try:
                log.warm_up()
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - asserted below
                outcome.append(exc)

        thread = threading.Thread(target=warm)
        thread.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(pg_dsn_schema.dsn) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the warm-up's CREATE SCHEMA waits for ours
        other.commit()
        thread.join(timeout=60)
    finally:
        other.close()
    assert outcome == [None]
    assert log.verify().ok
    log.close()


def _waiting_on_a_lock(dsn: str) -> bool:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                 " AND query LIKE 'CREATE SCHEMA%%'").fetchone()[0])
