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
connections are dropped): indexing/stores/pg_tables.py, shared with the other tables of shared mode. The DSN is resolved on first use (`shared_dsn`), so constructing is cheap.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import psycopg
from psycopg import sql

from indexing.settings import IndexSettings
from indexing.stores.pg_shared import shared_dsn
from indexing.stores.pg_tables import PgTables
from knowledge.errors import ConfigError

ALIAS_CHANNEL = "meshrag_alias"  # NOTIFY payload: {"schema", "alias", "release_id", "reason"}
CATALOG_CHANNEL = "meshrag_catalog"  # NOTIFY payload: {"schema", "snapshot_id"}
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


class SharedDb(PgTables):
    """Connections to shared mode's database and schema (the pool, transactions and failure mapping of
    `PgTables`), for the tables above; the DSN comes from the settings on first use."""

    def __init__(self, settings: IndexSettings, *, application_name: str = "meshrag",
                 connect_timeout: int = 5, max_idle: int = 4) -> None:
        self.settings = settings
        self._resolved: str | None = None
        super().__init__(lambda: self.dsn, settings.pg_schema, _DDL, what="releases, artefacts and catalog",
                         application_name=application_name, connect_timeout=connect_timeout, max_idle=max_idle)

    @property
    def dsn(self) -> str:
        if self._resolved is None:
            dsn = shared_dsn(self.settings)
            if dsn is None:
                raise ConfigError("shared mode needs store = pgvector (MESHRAG_STORE=pgvector, --store pgvector)")
            self._resolved = dsn
        return self._resolved

    def table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    def ensure_tables(self) -> None:
        """Create the schema and shared mode's tables if missing (once per process)."""
        self.warm_up()

    def notify(self, conn: psycopg.Connection, channel: str, payload: dict[str, Any]) -> None:
        """Queue a NOTIFY in `conn`'s transaction: listeners get it when (and only if) it commits."""
        conn.execute("SELECT pg_notify(%s, %s)", (channel, json.dumps(payload | {"schema": self.schema})))
