"""Per-caller state of `meshrag serve --workers N` in FAISS mode: web sessions and rate-limit buckets in
one SQLite file under the data dir (`api-state.sqlite`, WAL, busy timeout), which every worker process
on the host opens. Each bucket is read and written inside one `BEGIN IMMEDIATE` transaction, so two
workers never take the same token twice."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from api.ratelimit import DAY_S, Bucket, Decision, RatePolicy
from api.web.session import WebSession
from indexing.sqlite_wal import connect_wal
from knowledge.errors import ConfigError, StoreUnavailable

BUSY_TIMEOUT_MS = 5_000
SWEEP_S = 3600.0  # how often a process forgets buckets untouched for two days (a new bucket is the same)

# Numbered migrations: entry n moves the schema from user_version n to n + 1. Never edit one; append.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        ("CREATE TABLE web_sessions (token_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL,"
         " key_hash TEXT NOT NULL, principal TEXT NOT NULL, csrf TEXT NOT NULL, last_seen REAL NOT NULL)"
         " WITHOUT ROWID"),
        "CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen)",
        ("CREATE TABLE rate_limits (caller TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL,"
         " day INTEGER NOT NULL, used INTEGER NOT NULL, full_at REAL NOT NULL) WITHOUT ROWID"),
    ),
)


class SqliteState:
    """The state file; cheap to construct, opened (and migrated) by `warm_up()` or the first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            self._connection()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: taken before reading, so read-modify-write is atomic
        across processes). A file that stays locked past the busy timeout is StoreUnavailable."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"the API state file {self.path} is unavailable ({exc}); "
                                       "retry in a few seconds") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _open(self.path)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise _damaged(self.path, exc) from exc
            raise StoreUnavailable(f"the API state file {self.path} is unavailable ({exc}); "
                                   "retry in a few seconds") from exc
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from exc
        self._conn = conn
        return conn


def _open(path: Path) -> sqlite3.Connection:
    # Limits and sessions need not survive a power cut: synchronous=NORMAL.
    conn = connect_wal(path, busy_timeout_s=BUSY_TIMEOUT_MS / 1000, synchronous="NORMAL")
    try:
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> ConfigError:
    return ConfigError(f"the API state file {path} cannot be opened ({exc}); stop the server, delete the file "
                       "(it holds only web sessions and rate-limit counters) and start again")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")  # workers starting together: one migrates, the others then see it done
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > len(_MIGRATIONS):
            raise ConfigError(f"the API state file {path} has schema version {version}, newer than this "
                              f"meshrag knows ({len(_MIGRATIONS)}); upgrade meshrag or delete the file")
        for index in range(version, len(_MIGRATIONS)):
            for statement in _MIGRATIONS[index]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteSessionBackend:
    """`SessionBackend` over the state file."""

    def __init__(self, state: SqliteState) -> None:
        self.state = state

    def save(self, key: str, session: WebSession, now: float, idle_s: float) -> None:
        with self.state.transaction() as conn:
            conn.execute("DELETE FROM web_sessions WHERE last_seen < ?", (now - idle_s,))
            conn.execute("INSERT OR REPLACE INTO web_sessions VALUES (?, ?, ?, ?, ?, ?)",
                         (key, session.key_id, session.key_hash, session.principal, session.csrf,
                          session.last_seen))

    def touch(self, key: str, now: float, idle_s: float) -> WebSession | None:
        with self.state.transaction() as conn:
            row = conn.execute(
                "UPDATE web_sessions SET last_seen = max(last_seen, ?)"
                " WHERE token_hash = ? AND last_seen >= ?"
                " RETURNING key_id, key_hash, principal, csrf, last_seen", (now, key, now - idle_s)
            ).fetchone()
            if row is None:
                conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (key,))
                return None
        return WebSession(*row)

    def delete(self, key: str) -> None:
        with self.state.transaction() as conn:
            conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (key,))


class SqliteRateLimitBackend:
    """`RateLimitBackend` over the state file: the bucket arithmetic of `Bucket.take`, one transaction per
    request, run off the event loop (a worker may wait for another's transaction)."""

    def __init__(self, state: SqliteState) -> None:
        self.state = state
        self._swept = time.monotonic()

    async def take(self, caller: str, policy: RatePolicy, now: float) -> Decision:
        return await run_in_threadpool(self.take_now, caller, policy, now)

    def take_now(self, caller: str, policy: RatePolicy, now: float) -> Decision:
        with self.state.transaction() as conn:
            row = conn.execute("SELECT tokens, updated, day, used, full_at FROM rate_limits WHERE caller = ?",
                               (caller,)).fetchone()
            bucket = Bucket(*row) if row is not None else Bucket.new(policy, now)
            decision = bucket.take(policy, now)
            conn.execute("INSERT OR REPLACE INTO rate_limits VALUES (?, ?, ?, ?, ?, ?)",
                         (caller, bucket.tokens, bucket.updated, bucket.day, bucket.used, bucket.full_at))
            self._sweep(conn, now)
        return decision

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        if time.monotonic() - self._swept >= SWEEP_S:
            self._swept = time.monotonic()
            conn.execute("DELETE FROM rate_limits WHERE updated < ? AND full_at <= ?", (now - 2 * DAY_S, now))
