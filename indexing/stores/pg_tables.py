"""Small tables of shared mode in PostgreSQL (API keys, web sessions, rate limits, the embedding cache):
a few autocommit connections to one schema that create their tables on first use, turn a lost server into
StoreUnavailable, and reconnect by themselves on the next call.

Why not ping before each use (as the vector store's pool does): a rate-limit check is one statement per
request, and a ping would double its round trips. Instead a statement that fails on a reused connection
(the server restarted since) is retried once on a new one; a failure there is StoreUnavailable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from knowledge.errors import ConfigError, StoreUnavailable

T = TypeVar("T")
_RACED = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema, psycopg.errors.DuplicateTable,
          psycopg.errors.DuplicateObject)


class PgTables:
    """Connections to `schema` at `dsn` (a string, or a callable resolved on first connect: starting the
    embedded server is not cheap) for the tables `ddl` creates. `ddl` statements use `{s}` for the schema
    and run once per process, in one transaction under an advisory lock named `lock`, so processes
    starting together do not race."""

    def __init__(self, dsn: str | Callable[[], str], schema: str, ddl: Sequence[str], *, what: str,
                 application_name: str = "meshrag", connect_timeout: int = 5, max_idle: int = 4) -> None:
        if not schema or len(schema) > 63:
            raise ConfigError(f"schema name {schema!r} must have 1 to 63 characters")
        self.schema = schema
        self.what = what
        self._dsn = dsn
        self._ddl = tuple(ddl)
        self.application_name = application_name
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._ready = False
        self._ready_lock = threading.Lock()
        self.where = "PostgreSQL"

    def sql(self, template: str) -> sql.Composed:
        """`template` with `{s}` replaced by this schema (quoted as an identifier)."""
        return sql.SQL(template).format(s=sql.Identifier(self.schema))

    def warm_up(self) -> None:
        """Create the schema and tables if missing (also done by the first `run`)."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            lock = f"SELECT pg_advisory_xact_lock(hashtext('meshrag.{self.what}.ddl'))"

            def create(conn: psycopg.Connection) -> None:
                conn.execute(lock)
                conn.execute(self.sql("CREATE SCHEMA IF NOT EXISTS {s}"))
                for statement in self._ddl:
                    conn.execute(self.sql(statement))

            for attempt in (1, 2, 3):
                try:
                    self._run(create, transaction=True)
                    break
                except _RACED:
                    # Another process created the schema (or a type) at the same moment under another
                    # lock: IF NOT EXISTS does not cover that race; the next attempt finds it there.
                    if attempt == 3:
                        raise
            self._ready = True

    def run(self, work: Callable[[psycopg.Connection], T], *, transaction: bool = False) -> T:
        """`work` on a pooled autocommit connection (one transaction around it when `transaction`: each
        statement otherwise commits alone, with no BEGIN/COMMIT round trips). A lost connection raises
        StoreUnavailable; the next call connects again."""
        self.warm_up()
        return self._run(work, transaction=transaction)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection, for work that cannot simply be run again (it yields once):
        an idle connection is checked with an empty statement before it is handed out."""
        self.warm_up()
        while True:
            conn, reused = self._checkout()
            if not reused:
                break
            try:
                conn.execute("")
                break
            except psycopg.Error:
                conn.close()
                self.close()  # the others most likely died with it (a server restart)
        try:
            with self.errors(), conn.transaction():
                yield conn
        finally:
            self._checkin(conn)

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection of the caller's own (it closes it): e.g. for session-level locks."""
        with self.errors():
            dsn = self._dsn() if callable(self._dsn) else self._dsn
            params = conninfo_to_dict(dsn)
            self.where = f"{params.get('host', 'localhost')}/{params.get('dbname', '')}"  # never the password
            return psycopg.connect(dsn, autocommit=True, connect_timeout=self._connect_timeout,
                                   application_name=self.application_name)

    def close(self) -> None:
        """Close idle connections; the tables stay usable and reconnect on the next call."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _run(self, work: Callable[[psycopg.Connection], T], *, transaction: bool) -> T:
        for attempt in (1, 2):
            conn, reused = self._checkout()
            try:
                with self.errors():
                    if not transaction:
                        result = work(conn)
                    else:
                        with conn.transaction():
                            result = work(conn)
            except StoreUnavailable:
                conn.close()
                if reused and attempt == 1:
                    self.close()  # the other idle connections most likely died with this one
                    continue
                raise
            except BaseException:
                self._checkin(conn)
                raise
            self._checkin(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _checkout(self) -> tuple[psycopg.Connection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self.connect(), False

    def _checkin(self, conn: psycopg.Connection) -> None:
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """psycopg's operational failures (connection lost, server gone) as StoreUnavailable."""
        try:
            yield
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"PostgreSQL at {self.where} is unavailable for the {self.what} ({reason}); retry in a few "
                "seconds, it reconnects by itself"
            ) from exc
