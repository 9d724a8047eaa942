"""Shared mode's own tables in PostgreSQL: releases and the alias, artefacts, catalog snapshots.

Tables in `settings.pg_schema` (created on first use, under an advisory lock, by whichever process
comes first):

    releases(id, seq, created_at, record jsonb)             immutable release records (`seq`: insert order)
    alias(name, release_id, moved_at, previous)              `current` (one row, created with the table)
    alias_log(seq, name, at, from_id, to_id, reason)         every move of an alias
    artefacts(path, sha256, size, content bytea, updated_at) data-dir files by relative path
    catalog_snapshots(id, created_at, manifest jsonb)        contract files of the mesh, per index run
    catalog_current(name, snapshot_id, moved_at)             the snapshot replicas load

A lost connection raises StoreUnavailable; the next call reconnects by itself (broken pooled
connections are dropped). The DSN is resolved on first use (`shared_dsn`), so constructing is cheap.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from indexing.settings import IndexSettings
from indexing.stores.pg_shared import shared_dsn
from knowledge.errors import ConfigError, StoreUnavailable

ALIAS_CHANNEL = "meshrag_alias"  # NOTIFY payload: {"schema", "alias", "release_id", "reason"}
CATALOG_CHANNEL = "meshrag_catalog"  # NOTIFY payload: {"schema", "snapshot_id"}
_DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('meshrag.shared.ddl'))"
_DDL = (
    ("CREATE TABLE IF NOT EXISTS {s}.releases (id text PRIMARY KEY, seq bigserial UNIQUE,"
     " created_at text NOT NULL, record jsonb NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS {s}.alias (name text PRIMARY KEY, release_id text REFERENCES {s}.releases(id),"
     " moved_at timestamptz, previous text)"),
    "INSERT INTO {s}.alias (name) VALUES ('current') ON CONFLICT DO NOTHING",
    ("CREATE TABLE IF NOT EXISTS {s}.alias_log (seq bigserial PRIMARY KEY, name text NOT NULL,"
     " at timestamptz NOT NULL DEFAULT now(), from_id text, to_id text NOT NULL, reason text NOT NULL)"),
    ('CREATE TABLE IF NOT EXISTS {s}.artefacts (path text COLLATE "C" PRIMARY KEY, sha256 text NOT NULL,'
     " size bigint NOT NULL, content bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"),
    ("CREATE TABLE IF NOT EXISTS {s}.catalog_snapshots (id text PRIMARY KEY,"
     " created_at timestamptz NOT NULL DEFAULT now(), manifest jsonb NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS {s}.catalog_current (name text PRIMARY KEY,"
     " snapshot_id text REFERENCES {s}.catalog_snapshots(id), moved_at timestamptz)"),
    "INSERT INTO {s}.catalog_current (name) VALUES ('current') ON CONFLICT DO NOTHING",
)


def process_label(role: str) -> str:
    """`<role> <host>:<pid>`: how this process names itself to PostgreSQL (application_name, ≤ 63 bytes)."""
    return f"{role} {socket.gethostname()}:{os.getpid()}"[:63]


class SharedDb:
    """Connections to shared mode's database and schema: a small pool of autocommit connections,
    one transaction per `transaction()` block, psycopg's connection failures as StoreUnavailable."""

    def __init__(self, settings: IndexSettings, *, application_name: str = "meshrag",
                 connect_timeout: int = 5, max_idle: int = 4) -> None:
        if not settings.pg_schema or len(settings.pg_schema) > 63:
            raise ConfigError(f"schema name {settings.pg_schema!r} must have 1 to 63 characters")
        self.settings = settings
        self.schema = settings.pg_schema
        self.application_name = application_name
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._dsn: str | None = None
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._ready = False

    # ------------------------------------------------------------------------------- connections
    @property
    def dsn(self) -> str:
        if self._dsn is None:
            dsn = shared_dsn(self.settings)
            if dsn is None:
                raise ConfigError("shared mode needs store = pgvector (MESHRAG_STORE=pgvector, --store pgvector)")
            self._dsn = dsn
        return self._dsn

    @property
    def where(self) -> str:
        """Host and database, never the password: for messages."""
        params = conninfo_to_dict(self.dsn)
        return f"{params.get('host', 'localhost')}/{params.get('dbname', '')}"

    def table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection of its own (the caller closes it): for session-level locks."""
        with self.errors():
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=self._connect_timeout,
                                   application_name=self.application_name)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn psycopg's operational failures (connection lost, server gone) into StoreUnavailable."""
        try:
            yield
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"PostgreSQL at {self.where} is unavailable ({reason}); retry in a few "
                                   "seconds, meshrag reconnects by itself") from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection (tables created first if this process has not yet)."""
        self.ensure_tables()
        conn = self._checkout()
        try:
            with self.errors(), conn.transaction():
                yield conn
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
            except psycopg.Error:
                conn.close()
                self.close()  # the others most likely died with it (a server restart)

    def _checkin(self, conn: psycopg.Connection) -> None:
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if healthy and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    # ----------------------------------------------------------------------------------- schema
    def ensure_tables(self) -> None:
        """Create the schema and shared mode's tables if missing (once per process)."""
        if self._ready:
            return
        s = sql.Identifier(self.schema)
        for attempt in (1, 2):
            conn = self.connect()
            try:
                with self.errors(), conn.transaction():
                    conn.execute(_DDL_LOCK)
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
                    for ddl in _DDL:
                        conn.execute(sql.SQL(ddl).format(s=s))
                break
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                # Another component created the schema at the same moment under its own lock.
                if attempt == 2:
                    raise
            finally:
                conn.close()
        self._ready = True

    def notify(self, conn: psycopg.Connection, channel: str, payload: dict[str, Any]) -> None:
        """Queue a NOTIFY in `conn`'s transaction: listeners get it when (and only if) it commits."""
        conn.execute("SELECT pg_notify(%s, %s)", (channel, json.dumps(payload | {"schema": self.schema})))
