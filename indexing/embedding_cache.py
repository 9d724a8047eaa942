"""A persistent cache of embeddings keyed by (model id, hash of the embedded text).

Unchanged text is never embedded twice: `embed_with_cache` looks every text up first and embeds only
the misses. Vectors are stored as little-endian float32 bytes and returned byte-for-byte as stored.
`open_embedding_cache(settings)` picks where: a SQLite file under the cache dir (FAISS mode), or the
`embedding_cache` table in PostgreSQL in shared mode (indexing/embedding_cache_pg.py), so a replica with
an empty scratch dir reuses what the indexer or another replica embedded (the answer stage's passage
vectors included: same keys).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, Self

import numpy as np

from indexing.sqlite_wal import connect_wal
from indexing.types import Embedder
from knowledge.errors import ConfigError

_DTYPE = np.dtype("<f4")
_LOOKUP_BATCH = 500  # stays under SQLite's bound-parameter limit

# Numbered migrations: entry n moves the schema from user_version n to n + 1. Never edit one; append.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE embeddings (
        model_id  TEXT    NOT NULL,
        text_hash TEXT    NOT NULL,
        dim       INTEGER NOT NULL,
        vector    BLOB    NOT NULL,
        PRIMARY KEY (model_id, text_hash)
    ) WITHOUT ROWID;
    """,
)


class EmbeddingCacheStore(Protocol):
    """What callers of a cache need; implemented by `EmbeddingCache` (SQLite) and `PgEmbeddingCache`."""

    def warm_up(self) -> None: ...

    def close(self) -> None: ...

    def get_many(self, model_id: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, model_id: str, vectors: Mapping[str, np.ndarray]) -> int: ...

    def count(self, model_id: str | None = None) -> int: ...


class _CacheSettings(Protocol):
    store: str
    dsn: str | None
    pg_schema: str

    def resolved_data_dir(self) -> Path: ...

    def resolved_cache_dir(self) -> Path: ...


def open_embedding_cache(settings: _CacheSettings) -> EmbeddingCacheStore:
    """The cache of these settings (not warmed up): PostgreSQL in shared mode, else
    `<cache dir>/embeddings.sqlite`."""
    from indexing.stores.pg_shared import is_shared, shared_dsn

    if is_shared(settings):
        from indexing.embedding_cache_pg import PgEmbeddingCache

        return PgEmbeddingCache(lambda: shared_dsn(settings) or "", settings.pg_schema)
    return EmbeddingCache(settings.resolved_cache_dir() / "embeddings.sqlite")


def text_hash(text: str) -> str:
    """The cache key of a text: sha256 of its UTF-8 bytes (the same as `Chunk.text_hash`)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """SQLite (WAL) file of float32 vectors. Cheap to construct; `warm_up()` opens and migrates it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = connect_wal(self.path, busy_timeout_s=30.0, synchronous="NORMAL")
                self._migrate(conn)
            except sqlite3.DatabaseError as exc:
                raise ConfigError(
                    f"embedding cache {self.path} cannot be opened ({exc}); "
                    "delete the file to start a new cache"
                ) from exc
            self._conn = conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > len(_MIGRATIONS):
            raise ConfigError(
                f"embedding cache schema version {version} is newer than this meshrag knows "
                f"({len(_MIGRATIONS)}); upgrade meshrag or use another cache file"
            )
        for index in range(version, len(_MIGRATIONS)):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_MIGRATIONS[index])
                conn.execute(f"PRAGMA user_version = {index + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        self.warm_up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("EmbeddingCache is not warmed up: call warm_up() first")
        return self._conn

    def get_many(self, model_id: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the hashes that are present (absent ones are simply missing)."""
        conn = self._require()
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for first in range(0, len(wanted), _LOOKUP_BATCH):
                batch = wanted[first : first + _LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = conn.execute(
                    "SELECT text_hash, dim, vector FROM embeddings "
                    f"WHERE model_id = ? AND text_hash IN ({marks})",
                    [model_id, *batch],
                )
                for key, dim, blob in rows:
                    vector = np.frombuffer(blob, dtype=_DTYPE)
                    if vector.shape[0] != dim:
                        raise ConfigError(
                            f"embedding cache {self.path} holds a corrupt vector; delete the file"
                        )
                    found[key] = vector.astype(np.float32)  # a writable copy in native order
        return found

    def put_many(self, model_id: str, vectors: Mapping[str, np.ndarray]) -> int:
        """Store vectors by text hash; an existing entry is kept (first write wins). Returns rows added."""
        conn = self._require()
        rows = []
        for key, vector in vectors.items():
            array = np.ascontiguousarray(vector, dtype=_DTYPE)
            if array.ndim != 1:
                raise ValueError(f"vector for {key} must be one-dimensional, got shape {array.shape}")
            rows.append((model_id, key, int(array.shape[0]), array.tobytes()))
        if not rows:
            return 0
        with self._lock:
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO embeddings (model_id, text_hash, dim, vector) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return conn.total_changes - before

    def count(self, model_id: str | None = None) -> int:
        conn = self._require()
        with self._lock:
            if model_id is None:
                return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
            row = conn.execute("SELECT COUNT(*) FROM embeddings WHERE model_id = ?", (model_id,)).fetchone()
            return int(row[0])


def embed_with_cache(
    embedder: Embedder, cache: EmbeddingCacheStore, texts: Sequence[str]
) -> tuple[np.ndarray, int, int]:
    """Vectors for `texts` (float32, input order), embedding only texts the cache does not hold.

    Identical texts within the call are embedded once. Returns (vectors, embedded, reused) where
    `embedded` counts distinct texts sent to the model and `reused` = len(texts) - embedded.
    """
    keys = [text_hash(t) for t in texts]
    unique = dict(zip(keys, texts))  # first occurrence of each text
    cached = cache.get_many(embedder.model_id, unique)
    missing = [key for key in unique if key not in cached]
    fresh: dict[str, np.ndarray] = {}
    if missing:
        vectors = np.asarray(embedder.embed_documents([unique[key] for key in missing]), dtype=np.float32)
        if vectors.shape != (len(missing), embedder.dim):
            raise ValueError(
                f"embedder {embedder.name} returned shape {vectors.shape}, "
                f"expected {(len(missing), embedder.dim)}"
            )
        fresh = {key: vectors[row] for row, key in enumerate(missing)}
        cache.put_many(embedder.model_id, fresh)
    lookup = {**cached, **fresh}
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for row, key in enumerate(keys):
        out[row] = lookup[key]
    return out, len(missing), len(texts) - len(missing)
