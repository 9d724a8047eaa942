"""The provenance log on SQLite and on a real PostgreSQL: chaining, tampering, durability, access, CLI."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from api.cli.main import app
from indexing.stores.embedded_pg import start_postgres, stop_postgres
from indexing.types import Chunk
from knowledge.errors import ConfigError, ProvenanceCorrupt, ProvenanceNotFound, StoreUnavailable
from knowledge.model import Principal
from retrieval.provenance import (
    GENESIS_HASH,
    PgProvenanceLog,
    ProvenanceLog,
    ProvenanceRecord,
    SqliteProvenanceLog,
    create_provenance_log,
    record_from,
    record_hash,
)
from retrieval.requests import RequestIdConflict
from retrieval.types import Answer, Citation, RetrievedChunk, SearchResult

ALICE = Principal("alice", frozenset({"finance-analyst", "staff"}))
BOB = Principal("bob", frozenset({"staff"}))
CHUNK_TEXT = "Uncited chunk text that provenance must never keep"
CITED_TEXT = "MRR counts active subscriptions; contact [EMAIL_1] for exceptions."
runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", "MESHRAG_STORE": "faiss"})


def make_record(i: int, principal: Principal = ALICE) -> ProvenanceRecord:
    """A realistic unchained record: three hits (handed over out of rank order), one citation."""
    chunks = [
        Chunk(chunk_id=f"ch-{i:03d}-{j}", product_id="finance.revenue-reporting", document="metrics/mrr.md",
              doc_revision=f"{j:x}" * 64, text=f"{CHUNK_TEXT} {i}-{j}", start=100 * j, end=100 * j + 90,
              heading_path=("Metrics", "MRR"), n_tokens=20, n_model_tokens=24)
        for j in range(3)
    ]
    hits = tuple(
        RetrievedChunk(chunk=c, release_id="rel-abc", product_version="1.2.0", chunk_version="cv-1",
                       embedding_version="ev-1", domain="finance", classification="internal",
                       score=0.9 - j / 10, rank=j + 1, dense_score=0.81 - j / 10, dense_rank=j + 1,
                       keyword_score=7.25 - j, keyword_rank=j + 1)
        for j, c in enumerate(chunks)
    )
    search = SearchResult(
        release_id="rel-abc", hits=hits[::-1],
        # Numbers a jsonb round trip would print differently (exponent, -0.0) must still verify.
        params={"k": 8, "rrf_k": 60, "products": ("finance.revenue-reporting",),
                "edge_numbers": [1e16, -0.0, 1e-7, 0.1]},
        timings_ms={"dense": 3.5, "keyword": 1.25},
    )
    citation = Citation(marker=1, chunk_id=chunks[0].chunk_id, product_id="finance.revenue-reporting",
                        product_version="1.2.0", release_id="rel-abc", chunk_version="cv-1",
                        document="metrics/mrr.md", doc_revision="0" * 64, start=0, end=90,
                        heading_path=("Metrics", "MRR"), text=CITED_TEXT,
                        scores={"score": 0.9, "support": 0.71})
    question = f"What is MRR? #{i:03d}"
    answer = Answer(question=question, text="MRR counts active subscriptions [1].", citations=(citation,),
                    abstained=False, support=0.8, answerer="extractive@1", dropped_citations=1)
    return record_from(f"req-{i:03d}", principal, question, search, answer, {"total": 12.0},
                       created_at=datetime(2025, 3, 1, 12, 0, i % 60, tzinfo=UTC))


class Target:
    """One backend's storage: opens logs on it and tampers with it the way an attacker with write access
    would (triggers dropped or disabled first)."""

    kind: str

    def __init__(self) -> None:
        self._opened: list[ProvenanceLog] = []

    def open(self) -> ProvenanceLog:
        log = self._new()
        log.warm_up()
        self._opened.append(log)
        return log

    def close_all(self) -> None:
        for log in self._opened:
            log.close()

    def _new(self) -> ProvenanceLog:
        raise NotImplementedError

    def tamper(self, statement: str, params: tuple = ()) -> None:
        raise NotImplementedError

    def stored(self, seq: int) -> dict[str, Any]:
        raise NotImplementedError

    def rewrite(self, seq: int, data: dict[str, Any]) -> None:
        """Replace the record and its hash column (an attacker who re-hashes what they edited)."""
        raise NotImplementedError


class SqliteTarget(Target):
    kind = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.path = data_dir / "provenance.sqlite"

    def _new(self) -> ProvenanceLog:
        return create_provenance_log("sqlite", self.data_dir)

    def tamper(self, statement: str, params: tuple = ()) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for trigger in ("provenance_no_update", "provenance_no_delete", "provenance_head_no_delete",
                            "provenance_head_forward"):
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            conn.execute(statement, params)
        finally:
            conn.close()

    def stored(self, seq: int) -> dict[str, Any]:
        conn = sqlite3.connect(self.path)
        try:
            row = conn.execute("SELECT record FROM provenance WHERE seq = ?", (seq,)).fetchone()
            return json.loads(row[0])
        finally:
            conn.close()

    def rewrite(self, seq: int, data: dict[str, Any]) -> None:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.tamper("UPDATE provenance SET record = ?, hash = ? WHERE seq = ?", (text, data["hash"], seq))


class PgTarget(Target):
    kind = "postgres"

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__()
        self.dsn, self.schema = dsn, schema

    def _new(self) -> ProvenanceLog:
        return PgProvenanceLog(self.dsn, self.schema)

    def tamper(self, statement: str, params: tuple = ()) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            for table in ("provenance", "provenance_head"):
                conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
            if params:
                conn.execute(statement.replace("?", "%s"), params)
            else:
                conn.execute(statement)
            for table in ("provenance", "provenance_head"):
                conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table)))

    def stored(self, seq: int) -> dict[str, Any]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql.SQL("SELECT record FROM {}.provenance WHERE seq = %s")
                                .format(sql.Identifier(self.schema)), (seq,)).fetchone()[0]

    def rewrite(self, seq: int, data: dict[str, Any]) -> None:
        self.tamper("UPDATE provenance SET record = ?::jsonb, hash = ? WHERE seq = ?",
                    (json.dumps(data), data["hash"], seq))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.pg)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        t: Target = SqliteTarget(tmp_path)
    else:
        pg = request.getfixturevalue("pg_dsn_schema")
        t = PgTarget(pg.dsn, pg.schema)
    yield t
    t.close_all()


def fill(log: ProvenanceLog, n: int) -> list[ProvenanceRecord]:
    return [log.append(make_record(i)) for i in range(1, n + 1)]


def problems(log: ProvenanceLog) -> list[tuple[str, int | None, str | None]]:
    return [(p.kind, p.seq, p.request_id) for p in log.verify().problems]


# -- records --------------------------------------------------------------------------------------


def test_record_holds_what_replay_needs_and_no_uncited_chunk_text() -> None:
    rec = make_record(1)
    assert rec.seq == 0 and rec.hash == "" and rec.prev_hash == ""
    assert rec.release_id == "rel-abc"
    assert rec.chunk_ids == ("ch-001-0", "ch-001-1", "ch-001-2")  # rank order, though handed over reversed
    assert [r.scores["rank"] for r in rec.retrieved] == [1, 2, 3]
    assert rec.retrieval_params["k"] == 8
    assert rec.retrieval_params["products"] == ["finance.revenue-reporting"]
    assert rec.principal == ALICE and rec.created_at == "2025-03-01T12:00:01.000000+00:00"
    assert rec.timings == {"dense": 3.5, "keyword": 1.25, "total": 12.0}
    assert rec.retrieved[0].doc_revision == "0" * 64 and rec.retrieved[1].start == 100
    stored = json.dumps(rec.as_dict())
    assert CHUNK_TEXT not in stored
    assert CITED_TEXT in stored  # cited text is kept (already redacted by the answerer)
    assert ProvenanceRecord.from_dict(rec.as_dict()) == rec


def test_record_from_refuses_bad_request_ids_and_nan() -> None:
    with pytest.raises(ValueError, match="request id"):
        record_from("", ALICE, "q", SearchResult("rel", ()), Answer("q", "", (), True, 0.0, "x@1"))
    with pytest.raises(ValueError, match="NaN or infinity"):
        record_from("r1", ALICE, "q", SearchResult("rel", (), timings_ms={"dense": float("nan")}),
                    Answer("q", "", (), True, 0.0, "x@1"))


# -- the log, on both backends --------------------------------------------------------------------


def test_append_get_round_trip(target: Target) -> None:
    log = target.open()
    first = log.append(make_record(1))
    second = log.append(make_record(2))
    assert (first.seq, first.prev_hash, first.prev_request_id) == (1, GENESIS_HASH, None)
    assert (second.seq, second.prev_hash, second.prev_request_id) == (2, first.hash, "req-001")
    assert first.hash == record_hash(first.as_dict())
    got = log.get("req-002", ALICE)
    assert got == second
    # The hash is sha256 over sorted-key, whitespace-free JSON of every field but `hash`, as documented.
    stored = target.stored(2)
    body = json.dumps({k: v for k, v in stored.items() if k != "hash"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    assert hashlib.sha256(body.encode()).hexdigest() == stored["hash"] == second.hash
    with pytest.raises(ProvenanceNotFound, match="req-404"):
        log.get("req-404", ALICE)


def test_chain_of_50_verifies(target: Target) -> None:
    log = target.open()
    records = fill(log, 50)
    report = log.verify()
    assert report.ok, report.problems
    assert (report.records, report.head_seq, report.head_hash) == (50, 50, records[-1].hash)


def test_editing_one_byte_names_the_record(target: Target) -> None:
    log = target.open()
    fill(log, 10)
    if target.kind == "sqlite":
        target.tamper("UPDATE provenance SET record = replace(record, 'What is MRR? #007',"
                      " 'What is MRR? #00X') WHERE seq = 7")
    else:
        target.tamper("UPDATE provenance SET record = jsonb_set(record, '{question}',"
                      " to_jsonb('What is MRR? #00X'::text)) WHERE seq = 7")
    assert log.get("req-007", ALICE).question == "What is MRR? #00X"
    assert problems(log) == [("edited", 7, "req-007")]


def test_edited_and_rehashed_record_breaks_the_chain_at_the_next(target: Target) -> None:
    log = target.open()
    fill(log, 10)
    data = target.stored(4)
    data["answer"] = "Something else entirely."
    data["hash"] = record_hash(data)
    target.rewrite(4, data)
    assert problems(log) == [("chain_broken", 5, "req-005")]


def test_deleting_a_middle_record_names_it(target: Target) -> None:
    log = target.open()
    fill(log, 50)
    target.tamper("DELETE FROM provenance WHERE seq = 25")
    report = log.verify()
    assert [(p.kind, p.seq, p.request_id) for p in report.problems] == [("seq_gap", 25, "req-025")]
    assert "seq 25 missing before seq 26 (request req-026)" in str(report.problems[0])


def test_deleting_the_last_record_is_caught_by_the_anchor(target: Target) -> None:
    log = target.open()
    fill(log, 5)
    target.tamper("DELETE FROM provenance WHERE seq = 5")
    assert problems(log) == [("tail_truncated", 5, "req-005")]
    # The next append chains from the anchor, so the hole stays visible rather than being papered over.
    log.append(make_record(6))
    assert problems(log) == [("seq_gap", 5, "req-005")]


def test_deleting_the_anchor_is_reported_and_stops_appends(target: Target) -> None:
    log = target.open()
    fill(log, 3)
    target.tamper("DELETE FROM provenance_head")
    assert problems(log) == [("anchor", 3, "req-003")]
    with pytest.raises(ProvenanceCorrupt, match="head anchor .* is missing"):
        log.append(make_record(4))


def test_rewriting_the_tail_and_anchor_needs_an_exported_head_hash(target: Target) -> None:
    """The documented limit: full write access can cut the tail and move the anchor back consistently.
    Only a head hash kept elsewhere shows it."""
    log = target.open()
    records = fill(log, 5)
    exported = log.verify().head_hash
    target.tamper("DELETE FROM provenance WHERE seq = 5")
    target.tamper("UPDATE provenance_head SET seq = 4, request_id = 'req-004', hash = ?", (records[3].hash,))
    report = log.verify()
    assert report.ok and report.head_seq == 4 and report.head_hash != exported


# The anchor only ever points at the last record: not past it, not at its seq with another hash.
ANCHOR_MOVES = ("UPDATE provenance_head SET seq = seq + 1",
                "UPDATE provenance_head SET hash = 'f' || substr(hash, 2)")


def test_triggers_refuse_plain_updates_and_deletes(target: Target) -> None:
    log = target.open()
    fill(log, 2)
    if target.kind == "sqlite":
        conn = sqlite3.connect(target.path)  # type: ignore[attr-defined]
        try:
            for statement in ("UPDATE provenance SET record = 'x'",
                              "DELETE FROM provenance", "DELETE FROM provenance_head",
                              "UPDATE provenance_head SET seq = 1", *ANCHOR_MOVES):
                with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                    conn.execute(statement)
        finally:
            conn.close()
    else:
        pg: PgTarget = target  # type: ignore[assignment]
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg.schema)))
            for statement in ("UPDATE provenance SET record = '{}'", "DELETE FROM provenance",
                              "TRUNCATE provenance", "DELETE FROM provenance_head",
                              "UPDATE provenance_head SET seq = 1", *ANCHOR_MOVES):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(statement)
    assert log.verify().ok


@pytest.mark.parametrize("shared", [True, False], ids=["one-log", "log-per-thread"])
def test_concurrent_appends_from_8_threads_keep_one_chain(target: Target, shared: bool) -> None:
    """One log shared by threads (an API worker), or one log per thread (like separate worker processes:
    then only the database's own lock keeps the chain straight)."""
    logs = [target.open()] * 8 if shared else [target.open() for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(10):
                logs[t].append(make_record(100 * (t + 1) + i))
        except BaseException as exc:  # noqa: BLE001 - re-raised by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    report = logs[0].verify()
    assert report.ok, report.problems
    assert report.records == report.head_seq == 80


def test_a_record_survives_closing_and_reopening(target: Target) -> None:
    log = target.open()
    appended = log.append(make_record(1))
    log.close()
    reopened = target.open()
    assert reopened.get("req-001", ALICE) == appended
    assert reopened.append(make_record(2)).prev_hash == appended.hash
    assert reopened.verify().ok


def test_another_principals_record_looks_missing(target: Target) -> None:
    log = target.open()
    log.append(make_record(1, ALICE))
    with pytest.raises(ProvenanceNotFound) as other:
        log.get("req-001", BOB)
    with pytest.raises(ProvenanceNotFound) as missing:
        log.get("req-002", BOB)
    assert str(other.value) == str(missing.value).replace("req-002", "req-001")
    assert log.get("req-001", BOB, admin=True).principal == ALICE
    assert log.get("req-001", admin=True).request_id == "req-001"
    with pytest.raises(ValueError, match="principal"):
        log.get("req-001")


def test_list_is_newest_first_and_filters_by_principal(target: Target) -> None:
    log = target.open()
    for i in range(1, 7):
        log.append(make_record(i, ALICE if i % 2 else BOB))
    assert [r.seq for r in log.list(3)] == [6, 5, 4]
    assert [r.request_id for r in log.list(10, principal_id="bob")] == ["req-006", "req-004", "req-002"]
    with pytest.raises(ConfigError, match="limit"):
        log.list(0)


def test_reappending_the_same_request_is_idempotent_but_a_different_one_is_refused(target: Target) -> None:
    log = target.open()
    first = log.append(make_record(1))
    assert log.append(make_record(1)) == first  # e.g. a retry after a lost commit acknowledgement
    other = make_record(2)
    with pytest.raises(RequestIdConflict, match="already names one of your earlier answers"):
        log.append(replace(other, request_id="req-001"))
    with pytest.raises(ValueError, match="already chained"):
        log.append(first)
    assert log.verify().records == 1


# -- SQLite file damage ---------------------------------------------------------------------------


def test_flipping_one_byte_of_a_record_in_the_sqlite_file_names_it(tmp_path: Path) -> None:
    """SQLite keeps no page checksums, so a flipped byte inside a record's JSON reads back as an edit
    (hash mismatch), named by seq and request id."""
    log = SqliteProvenanceLog(tmp_path / "provenance.sqlite")
    fill(log, 10)
    log.close()  # checkpoints the WAL into the main file
    blob = bytearray((tmp_path / "provenance.sqlite").read_bytes())
    offset = blob.index(b"What is MRR? #007")
    blob[offset + len("What is MRR? #00")] ^= 0x01  # '7' -> '6'
    (tmp_path / "provenance.sqlite").write_bytes(bytes(blob))
    reopened = SqliteProvenanceLog(tmp_path / "provenance.sqlite")
    assert problems(reopened) == [("edited", 7, "req-007")]
    assert reopened.get("req-007", ALICE).question == "What is MRR? #006"
    reopened.close()


def test_flipping_a_byte_of_the_sqlite_header_fails_clearly(tmp_path: Path) -> None:
    """Damage outside the records (here the file header) makes the file unreadable: verify reports that,
    naming the file; opening the log for appends raises ProvenanceCorrupt."""
    path = tmp_path / "provenance.sqlite"
    log = SqliteProvenanceLog(path)
    fill(log, 3)
    log.close()
    blob = bytearray(path.read_bytes())
    blob[0] ^= 0x01  # "SQLite format 3" magic
    path.write_bytes(bytes(blob))
    report = SqliteProvenanceLog(path).verify()
    assert not report.ok
    assert [(p.kind, p.seq) for p in report.problems] == [("unreadable", None)]
    assert str(path) in report.problems[0].detail and "not a database" in report.problems[0].detail
    with pytest.raises(ProvenanceCorrupt, match="damaged"):
        SqliteProvenanceLog(path).warm_up()


# -- PostgreSQL outages ---------------------------------------------------------------------------


@pytest.mark.pg
def test_pg_lost_server_raises_store_unavailable_then_reconnects(pg_dsn_schema: Any,
                                                                 pg_data_dir: Path) -> None:
    log = PgProvenanceLog(pg_dsn_schema.dsn, pg_dsn_schema.schema)
    try:
        log.append(make_record(1))
        stop_postgres(pg_data_dir)
        try:
            with pytest.raises(StoreUnavailable, match="unavailable"):
                log.append(make_record(2))
        finally:
            assert start_postgres(pg_data_dir) == pg_dsn_schema.dsn
        log.append(make_record(2))
        assert [r.seq for r in log.list(5)] == [2, 1] and log.verify().ok
    finally:
        log.close()


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli_log(tmp_path: Path) -> Callable[[int], ProvenanceLog]:
    def make(n: int) -> ProvenanceLog:
        log = create_provenance_log("sqlite", tmp_path)
        fill(log, n)
        log.close()
        return log

    return make


def test_cli_show_prints_the_record_and_json(tmp_path: Path, cli_log: Callable[[int], ProvenanceLog]) -> None:
    cli_log(3)
    result = runner.invoke(app, ["provenance", "show", "req-002", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("req-002", "seq 2", "alice", "rel-abc", "What is MRR? #002", "ch-002-0", "[1]",
                 "extractive@1", CITED_TEXT):
        assert text in result.output
    result = runner.invoke(app, ["provenance", "show", "req-002", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["seq"] == 2
    assert [r["chunk_id"] for r in data["retrieved"]] == ["ch-002-0", "ch-002-1", "ch-002-2"]
    result = runner.invoke(app, ["provenance", "show", "req-404", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no provenance record with request id 'req-404'" in result.output


def test_cli_list(tmp_path: Path, cli_log: Callable[[int], ProvenanceLog]) -> None:
    cli_log(4)
    result = runner.invoke(app, ["provenance", "list", "--limit", "2", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [r["request_id"] for r in json.loads(result.stdout)] == ["req-004", "req-003"]
    result = runner.invoke(app, ["provenance", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "req-001" in result.output


def test_cli_verify_exit_codes_and_named_records(tmp_path: Path,
                                                 cli_log: Callable[[int], ProvenanceLog]) -> None:
    cli_log(6)
    result = runner.invoke(app, ["provenance", "verify", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "intact: 6 records; head seq 6" in result.output
    target = SqliteTarget(tmp_path)
    target.tamper("UPDATE provenance SET record = replace(record, '#003', '#033') WHERE seq = 3")
    target.tamper("DELETE FROM provenance WHERE seq = 6")
    result = runner.invoke(app, ["provenance", "verify", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "edited: seq 3 (request req-003)" in result.output
    assert "tail_truncated: seq 6 (request req-006)" in result.output
    result = runner.invoke(app, ["provenance", "show", "req-003", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "no longer matches its hash" in result.output
    result = runner.invoke(app, ["provenance", "verify", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    kinds = [(p["kind"], p["seq"]) for p in json.loads(result.stdout)["problems"]]
    assert kinds == [("edited", 3), ("tail_truncated", 6)]


def test_cli_on_a_data_dir_without_a_log(tmp_path: Path) -> None:
    result = runner.invoke(app, ["provenance", "verify", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no provenance log at" in result.output
    assert not (tmp_path / "empty").exists()


# -- group commit ---------------------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _append_in_thread(log: ProvenanceLog, record: ProvenanceRecord,
                      out: dict[str, Any], key: str) -> threading.Thread:
    def work() -> None:
        try:
            out[key] = log.append(record)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            out[key] = exc
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _first_append_blocked(log: SqliteProvenanceLog
                          ) -> tuple[sqlite3.Connection, dict[str, Any], list[threading.Thread]]:
    """Another writer takes the database lock, then a first append (key "first") starts its commit and
    waits for it. Returns that writer (to release it), the results dict and the append's thread."""
    log.warm_up()
    other_writer = sqlite3.connect(log.path, isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")
    out: dict[str, Any] = {}
    threads = [_append_in_thread(log, make_record(1), out, "first")]
    _wait_for(lambda: log.commit_stats["commits"] == 1, "the first commit to start")
    return other_writer, out, threads


def test_appends_queued_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    """Another writer holds the database lock, so the first append's commit waits; seven appends arrive
    meanwhile (a retry of one of them and a conflicting record among them) and go in as one transaction."""
    log = SqliteProvenanceLog(tmp_path / "provenance.sqlite")
    other_writer, out, threads = _first_append_blocked(log)
    queued = {f"r{i}": make_record(i) for i in range(2, 7)}
    queued["retry-of-r2"] = make_record(2)
    queued["conflict-with-r3"] = replace(make_record(7), request_id="req-003")
    for key, record in queued.items():
        threads.append(_append_in_thread(log, record, out, key))
    _wait_for(lambda: log.commit_stats["queued"] == 7, "seven queued appends")
    other_writer.execute("COMMIT")
    for thread in threads:
        thread.join()

    assert log.commit_stats | {"queued": 0} == {"appends": 8, "commits": 2, "largest_batch": 7,
                                                "failed_commits": 0, "mean_batch": 4.0, "queued": 0}
    assert out["first"].seq == 1
    assert sorted(out[f"r{i}"].seq for i in range(2, 7)) == [2, 3, 4, 5, 6]
    assert out["retry-of-r2"] == out["r2"]
    assert isinstance(out["conflict-with-r3"], RequestIdConflict)
    assert "already names one of your earlier answers" in str(out["conflict-with-r3"])
    report = log.verify()
    assert report.ok and report.records == report.head_seq == 6
    for key in ("first", *(f"r{i}" for i in range(2, 7))):
        assert log.get(out[key].request_id, ALICE) == out[key]  # every acknowledged record is stored


def test_a_failed_group_commit_acknowledges_none_of_its_records(tmp_path: Path) -> None:
    """The lock is never released within the busy timeout: every append in the batch fails with its own
    clear error, nothing is stored, and the log works once the lock is gone."""
    log = SqliteProvenanceLog(tmp_path / "provenance.sqlite", busy_timeout_s=0.5)
    other_writer, out, threads = _first_append_blocked(log)
    threads += [_append_in_thread(log, make_record(i), out, f"r{i}") for i in range(2, 6)]
    for thread in threads:
        thread.join()
    other_writer.execute("ROLLBACK")

    errors = list(out.values())
    assert all(isinstance(e, StoreUnavailable) and "locked" in str(e) for e in errors), errors
    assert len({id(e) for e in errors}) == 5  # each caller raised its own exception object
    assert log.commit_stats["failed_commits"] == log.commit_stats["commits"] >= 2
    assert log.verify().records == 0
    assert log.append(make_record(9)).seq == 1
