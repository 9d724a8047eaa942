"""Shared mode: with `store = "pgvector"` every piece of state a replica needs lives in PostgreSQL.

`shared_dsn(settings)` is the one place that decides which server that is: the configured DSN, else the
embedded server under the data directory (one machine). In FAISS mode there is no shared server (None).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from indexing.stores.embedded_pg import start_postgres


class _StoreSettings(Protocol):
    store: str
    dsn: str | None
    pg_schema: str

    def resolved_data_dir(self) -> Path: ...


def is_shared(settings: _StoreSettings) -> bool:
    """True when the deployment keeps its state in PostgreSQL (store = pgvector)."""
    return settings.store == "pgvector"


def shared_dsn(settings: _StoreSettings) -> str | None:
    """The PostgreSQL DSN of shared mode (starting the embedded server when none is configured), or None
    in embedded FAISS mode."""
    if not is_shared(settings):
        return None
    return settings.dsn or start_postgres(settings.resolved_data_dir() / "postgres")
