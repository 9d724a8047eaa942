"""Builds the configured provenance log: one SQLite file or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from knowledge.errors import ConfigError
from retrieval.provenance.postgres import PgProvenanceLog
from retrieval.provenance.sqlite import SqliteProvenanceLog
from retrieval.provenance.storage import ProvenanceLog

ProvenanceKind = Literal["sqlite", "postgres"]


def create_provenance_log(kind: ProvenanceKind, data_dir: Path, dsn: str | None = None,
                          schema: str = "meshrag", *, create: bool = True) -> ProvenanceLog:
    """A log of `kind` (not yet warmed up): SQLite at `data_dir/provenance.sqlite`, or PostgreSQL at `dsn`
    (default: the embedded server under `data_dir/postgres`). `create=False` refuses a missing SQLite file."""
    data_dir = Path(data_dir)
    if kind == "sqlite":
        return SqliteProvenanceLog(data_dir / "provenance.sqlite", create=create)
    if kind == "postgres":
        if dsn is None:
            from indexing.stores.embedded_pg import start_postgres

            dsn = start_postgres(data_dir / "postgres")
        return PgProvenanceLog(dsn, schema)
    raise ConfigError(f"unknown provenance log kind {kind!r}; use 'sqlite' or 'postgres'")
