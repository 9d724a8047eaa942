"""Builds the configured VectorStore: FAISS files or PostgreSQL + pgvector."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from indexing.stores.embedded_pg import start_postgres
from indexing.stores.faiss_store import FaissStore
from indexing.stores.pgvector_store import PgVectorStore
from indexing.types import VectorStore
from knowledge.errors import ConfigError

StoreKind = Literal["faiss", "pgvector"]


def create_store(
    kind: StoreKind, data_dir: Path, dsn: str | None = None, schema: str = "meshrag"
) -> VectorStore:
    """A store of `kind` (not yet warmed up). FAISS lives in `data_dir/faiss`; pgvector without a
    `dsn` starts (or reuses) the embedded PostgreSQL under `data_dir/postgres`. `dsn` and `schema`
    only apply to pgvector."""
    data_dir = Path(data_dir)
    if kind == "faiss":
        return FaissStore(data_dir / "faiss")
    if kind == "pgvector":
        if dsn is None:
            dsn = start_postgres(data_dir / "postgres")
        return PgVectorStore(dsn, schema)
    raise ConfigError(f"unknown vector store kind {kind!r}; use 'faiss' or 'pgvector'")
