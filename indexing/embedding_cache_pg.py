"""The embedding cache in PostgreSQL (shared mode): the table `embedding_cache` in the deployment's schema,
keyed like the SQLite file (model id, text hash) and holding the same little-endian float32 bytes, so the
indexer and every replica share what any of them embedded. A lost connection raises StoreUnavailable;
the next call reconnects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Self

import numpy as np
import psycopg

from indexing.embedding_cache import _DTYPE
from indexing.stores.pg_tables import PgTables
from knowledge.errors import ConfigError

_BATCH = 1000
_DDL = (
    ("CREATE TABLE IF NOT EXISTS {s}.embedding_cache ("
    " model_id text NOT NULL, text_hash text NOT NULL,"
    " dim integer NOT NULL CHECK (dim > 0), vector bytea NOT NULL,"
    " PRIMARY KEY (model_id, text_hash))"),
)


class PgEmbeddingCache:
    """`EmbeddingCacheStore` over PostgreSQL. Cheap to construct; `warm_up()` creates the table if missing."""

    def __init__(self, dsn: str | Callable[[], str], schema: str = "meshrag") -> None:
        self.schema = schema
        self._tables = PgTables(dsn, schema, _DDL, what="embedding cache")

    def warm_up(self) -> None:
        self._tables.warm_up()

    def close(self) -> None:
        self._tables.close()

    def __enter__(self) -> Self:
        self.warm_up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, model_id: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the hashes that are present (absent ones are simply missing)."""
        wanted = list(dict.fromkeys(text_hashes))
        query = self._tables.sql(
            "SELECT text_hash, dim, vector FROM {s}.embedding_cache"
            " WHERE model_id = %s AND text_hash = ANY(%s)"
        )

        def read(conn: psycopg.Connection) -> list[tuple[str, int, bytes]]:
            rows: list[tuple[str, int, bytes]] = []
            for first in range(0, len(wanted), _BATCH):
                rows += conn.execute(query, (model_id, wanted[first:first + _BATCH])).fetchall()
            return rows

        found: dict[str, np.ndarray] = {}
        for key, dim, blob in self._tables.run(read) if wanted else ():
            vector = np.frombuffer(blob, dtype=_DTYPE)
            if vector.shape[0] != dim:
                raise ConfigError(f"the embedding cache in schema {self.schema!r} holds a corrupt vector for "
                                  f"{key}; delete that row (or the table) to embed it again")
            found[key] = vector.astype(np.float32)  # a writable copy in native order
        return found

    def put_many(self, model_id: str, vectors: Mapping[str, np.ndarray]) -> int:
        """Store vectors by text hash; an existing entry is kept (first write wins). Returns rows added."""
        keys, dims, blobs = [], [], []
        for key, vector in vectors.items():
            array = np.ascontiguousarray(vector, dtype=_DTYPE)
            if array.ndim != 1:
                raise ValueError(f"vector for {key} must be one-dimensional, got shape {array.shape}")
            keys.append(key)
            dims.append(int(array.shape[0]))
            blobs.append(array.tobytes())
        if not keys:
            return 0
        insert = self._tables.sql(
            "INSERT INTO {s}.embedding_cache (model_id, text_hash, dim, vector)"
            " SELECT %s, k, d, v FROM unnest(%s::text[], %s::integer[], %s::bytea[]) AS t(k, d, v)"
            " ON CONFLICT (model_id, text_hash) DO NOTHING"
        )

        def write(conn: psycopg.Connection) -> int:
            added = 0
            for first in range(0, len(keys), _BATCH):
                part = slice(first, first + _BATCH)
                added += conn.execute(insert, (model_id, keys[part], dims[part], blobs[part])).rowcount
            return added

        return self._tables.run(write, transaction=True)

    def count(self, model_id: str | None = None) -> int:
        if model_id is None:
            query, params = self._tables.sql("SELECT count(*) FROM {s}.embedding_cache"), ()
        else:
            query = self._tables.sql("SELECT count(*) FROM {s}.embedding_cache WHERE model_id = %s")
            params = (model_id,)
        return int(self._tables.run(lambda conn: conn.execute(query, params).fetchone()[0]))
