"""Several processes opening one new SQLite file at once in WAL mode (as `serve --workers N` does)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from indexing.sqlite_wal import connect_wal

PROCESSES = 6


def _open_and_write(path: str, worker: int, start) -> None:
    start.wait()
    conn = connect_wal(Path(path), busy_timeout_s=30.0)
    conn.execute("CREATE TABLE IF NOT EXISTS t (worker INTEGER)")
    conn.execute("INSERT INTO t VALUES (?)", (worker,))
    conn.close()


def test_processes_opening_one_new_file_together_all_get_in(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_open_and_write, args=(str(path), w, start)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    conn = connect_wal(path, busy_timeout_s=5.0)
    assert sorted(w for (w,) in conn.execute("SELECT worker FROM t")) == list(range(PROCESSES))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_database_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        connect_wal(path, busy_timeout_s=30.0)
