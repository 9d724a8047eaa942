"""Connections for the pgvector store: a small pool that survives a server restart, and the mapping of
psycopg's operational failures to StoreUnavailable."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from knowledge.errors import StoreUnavailable

T = TypeVar("T")


@contextmanager
def mapped_errors(where: str) -> Iterator[None]:
    """Turn psycopg's operational failures (connection lost, server gone) into StoreUnavailable."""
    try:
        yield
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(
            f"PostgreSQL at {where} is unavailable ({reason}); retry in a few seconds, "
            "the store reconnects by itself"
        ) from exc


class PgConnections:
    """A small thread-safe pool of autocommit connections that drops broken ones, so a restarted
    server is picked up by the next call. Reused connections are pinged before use."""

    def __init__(self, dsn: str, *, connect_timeout: int, max_idle: int) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        params = conninfo_to_dict(dsn)
        self.where = f"{params.get('host', 'localhost')}/{params.get('dbname', '')}"  # never the password

    def connect(self, *, vector_types: bool = True) -> psycopg.Connection:
        with mapped_errors(self.where):
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout)
            try:
                if vector_types:
                    register_vector(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` in one transaction on a pooled connection."""
        conn = self._checkout()
        try:
            with mapped_errors(self.where), conn.transaction():
                return work(conn)
        finally:
            self._checkin(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _checkout(self) -> psycopg.Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.connect()
            try:
                conn.execute("")
                return conn
            except psycopg.OperationalError:
                conn.close()
                self.close()  # the others most likely died with it (server restart)

    def _checkin(self, conn: psycopg.Connection) -> None:
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()
