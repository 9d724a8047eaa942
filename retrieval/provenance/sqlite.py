"""The provenance log in one SQLite file: the embedded default. Only what SQLite does its own way: the
file and its pragmas, BEGIN IMMEDIATE, the SQL, and reading a damaged file as damage."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from indexing.sqlite_wal import connect_wal
from knowledge.errors import ConfigError, ProvenanceCorrupt, StoreUnavailable
from retrieval.provenance.chain import GENESIS_HASH, Head, canonical_json
from retrieval.provenance.storage import APPEND_ONLY, SqlProvenanceLog
from retrieval.provenance.verify import StoredRow, UnreadableLog

_HEAD = "SELECT seq, request_id, hash FROM provenance_head WHERE id = 1"
_DDL = (
    ("CREATE TABLE IF NOT EXISTS provenance (seq INTEGER PRIMARY KEY CHECK (seq > 0),"
     " request_id TEXT NOT NULL UNIQUE, principal_id TEXT NOT NULL, created_at TEXT NOT NULL,"
     " record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"),
    "CREATE INDEX IF NOT EXISTS provenance_principal ON provenance (principal_id, seq)",
    ("CREATE TABLE IF NOT EXISTS provenance_head (id INTEGER PRIMARY KEY CHECK (id = 1),"
     " seq INTEGER NOT NULL, request_id TEXT, hash TEXT NOT NULL)"),
    # Seed the anchor only for a new log: a deleted anchor must not quietly restart the chain.
    (f"INSERT INTO provenance_head (id, seq, request_id, hash) SELECT 1, 0, NULL, '{GENESIS_HASH}'"
     " WHERE NOT EXISTS (SELECT 1 FROM provenance) AND NOT EXISTS (SELECT 1 FROM provenance_head)"),
    (f"CREATE TRIGGER IF NOT EXISTS provenance_no_update BEFORE UPDATE ON provenance"
     f" BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"),
    (f"CREATE TRIGGER IF NOT EXISTS provenance_no_delete BEFORE DELETE ON provenance"
     f" BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"),
    (f"CREATE TRIGGER IF NOT EXISTS provenance_head_no_delete BEFORE DELETE ON provenance_head"
     f" BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"),
    # The anchor moves forward only, and only onto the last record (seq and hash): a batch of appends
    # moves it once. Replaced on every open, so logs made by older versions (one step per record) get it.
    "DROP TRIGGER IF EXISTS provenance_head_forward",
    ("CREATE TRIGGER provenance_head_forward BEFORE UPDATE ON provenance_head"
     " WHEN NEW.seq <= OLD.seq OR NEW.seq IS NOT (SELECT max(seq) FROM provenance)"
     " OR NEW.hash IS NOT (SELECT hash FROM provenance WHERE seq = NEW.seq)"
     f" BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: the anchor only moves forward, onto the last record');"
     " END"),
)


class SqliteProvenanceLog(SqlProvenanceLog):
    """ProvenanceLog in one SQLite file (WAL, synchronous=FULL): the embedded default. Appends from
    threads share one connection under a lock; appends from other processes wait on BEGIN IMMEDIATE."""

    name = "sqlite"

    def __init__(self, path: Path, *, create: bool = True, busy_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path).expanduser().absolute()
        self._label = str(self.path)
        self._create = create
        self._busy_timeout_s = busy_timeout_s

    def close(self) -> None:
        with self._lock:
            super().close()
            self._ready = False  # the open connection is the set-up: the next call opens the file again

    def _set_up(self) -> None:
        if not self._create and not self.path.exists():
            raise self._missing()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors():
            self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        conn = connect_wal(self.path, busy_timeout_s=self._busy_timeout_s)  # retries a lock at open: see there
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _DDL:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            yield self._connection()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """Durable (fsynced) at commit; BEGIN IMMEDIATE makes other processes' appends wait their turn."""
        with self._lock, self._errors():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _locked_head(self, conn: sqlite3.Connection) -> Head | None:
        return conn.execute(_HEAD).fetchone()  # BEGIN IMMEDIATE holds the write lock already

    def _stored(self, conn: sqlite3.Connection, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = conn.execute("SELECT request_id, record FROM provenance WHERE request_id IN"
                            f" ({','.join('?' * len(request_ids))})", request_ids)
        return {request_id: self._parsed(text) for request_id, text in rows}

    def _insert(self, conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        conn.execute("INSERT INTO provenance (seq, request_id, principal_id, created_at, record, prev_hash,"
                     " hash) VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows)),
                     [value for row in rows for value in row])
        last = rows[-1]
        conn.execute("UPDATE provenance_head SET seq = ?, request_id = ?, hash = ? WHERE id = 1",
                     (last[0], last[1], last[6]))

    def _newest(self, conn: sqlite3.Connection, limit: int, principal_id: str | None
                ) -> list[dict[str, Any]]:
        where, params = ("WHERE principal_id = ?", (principal_id, limit)) if principal_id else ("", (limit,))
        rows = conn.execute(f"SELECT record FROM provenance {where} ORDER BY seq DESC LIMIT ?", params)
        return [self._parsed(text) for (text,) in rows]

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[Head | None, Iterator[StoredRow]]]:
        """A read-only connection of its own. Does not need warm_up(): a file too damaged to open is
        reported as unreadable rather than raised."""
        if not self.path.exists():
            raise self._missing()
        try:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=self._busy_timeout_s,
                                   isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot open {self.path} ({exc}); check the path and its "
                                   "permissions") from exc
        try:
            conn.text_factory = lambda b: b.decode("utf-8", "replace")
            conn.execute("BEGIN")  # one snapshot for the rows and the anchor
            head = conn.execute(_HEAD).fetchone()
            rows = conn.execute("SELECT seq, request_id, prev_hash, hash, CAST(record AS BLOB)"
                                " FROM provenance ORDER BY seq")
            yield head, (_stored_row(*row) for row in rows)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreUnavailable(f"{self.path} is locked ({exc}); retry in a moment") from exc
            raise UnreadableLog(f"{self.path} cannot be read ({exc}); restore it from a backup") from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise UnreadableLog(f"{self.path} is damaged ({exc}); restore it from a backup") from exc
        finally:
            conn.close()

    def _missing(self) -> ConfigError:
        return ConfigError(f"no provenance log at {self.path}; it is created when the first answer is "
                           "logged — check --data-dir")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"the provenance log {self.path} was closed while in use; retry")
        return self._conn

    def _parsed(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProvenanceCorrupt(f"a record in {self.path} is not valid JSON ({exc}); run "
                                    "`meshrag provenance verify`") from exc
        if not isinstance(data, dict):
            raise ProvenanceCorrupt(f"a record in {self.path} is not a JSON object; run "
                                    "`meshrag provenance verify`")
        return data

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, I/O error
            raise StoreUnavailable(f"the provenance log {self.path} is unavailable ({exc}); "
                                   "retry later") from exc
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # IntegrityError etc.: a bug, not damage
                raise
            raise ProvenanceCorrupt(f"the provenance log {self.path} is damaged ({exc}); run "
                                    "`meshrag provenance verify` and restore it from a backup") from exc


def _stored_row(seq: int, request_id: str, prev_hash: str, hash_: str, raw: bytes | None) -> StoredRow:
    try:
        text = (raw or b"").decode("utf-8")
        data = json.loads(text)
    except ValueError as exc:  # bad UTF-8 or bad JSON
        return StoredRow(seq, request_id, prev_hash, hash_, None, str(exc))
    if not isinstance(data, dict):
        return StoredRow(seq, request_id, prev_hash, hash_, None, "not a JSON object")
    try:
        canonical = canonical_json(data) == raw
    except (TypeError, ValueError):
        canonical = False
    # Records are written in canonical form; any other byte sequence was written by something else.
    return StoredRow(seq, request_id, prev_hash, hash_, data,
                     None if canonical else "its stored text is not canonical")
