"""pgvector store: collections in PostgreSQL, one vectors table per dimension, HNSW cosine index.

Tables in `schema` (created by warm_up / create_collection):

    collections(name, dim, size, created)
    vectors_<dim>(collection, id, product_id, domain, classification, document, metadata jsonb,
                  embedding vector(<dim>), primary key (collection, id))
    + vectors_<dim>_embedding_hnsw: USING hnsw (embedding vector_cosine_ops) WITH (m=24, ef_construction=128)

Adds are one transaction: replaced ids are deleted, then rows are loaded with binary COPY. A
dimension's HNSW index is built right after the first bulk load into its table (faster than
growing it row by row) and maintained by later adds; a large load is followed by ANALYZE so the
planner sees the new rows.

Exactness: when the filter's collections hold at most `exact_max` vectors together (default
10_000) the search runs with index scans disabled, i.e. an exact sequential scan ordered by
(score desc, id, collection); this keeps small collections (and the contract tests) deterministic.
Above that, HNSW with `hnsw.ef_search` (default 400) and `hnsw.iterative_scan = relaxed_order`
fills k under selective filters; its candidates are re-sorted exactly, but which vectors are found
is approximate. Filters are in the WHERE clause, so rows outside them are never returned or counted.
Ties compare ids with the "C" collation (code point order), like Python and the FAISS store.

A lost connection raises StoreUnavailable; the next call reconnects by itself (pg_connections.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg import sql

from indexing.stores.common import (
    FILTER_FIELDS,
    check_collection_name,
    check_dim,
    check_k,
    dim_mismatch,
    filter_collections,
    filter_values,
    missing_collections,
    prepare_records,
    query_vector,
)
from indexing.stores.pg_connections import PgConnections, mapped_errors
from indexing.types import Hit, SearchFilter, VectorRecord
from knowledge.errors import ConfigError

T = TypeVar("T")

# At 1M SciFact-like vectors (benchmarks/scale.py) m=16, ef_construction=64 reached recall@10 0.84 at
# ef_search 100 and 0.946 at 400; m=24, ef_construction=128 builds 1.8x slower, same index size, and
# reaches 0.974 at 400 (p50 5.4 ms through this store).
DEFAULT_EF_SEARCH = 400
DEFAULT_EXACT_MAX = 10_000
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 128
MAX_HNSW_DIM = 2000  # pgvector cannot HNSW-index `vector` columns with more dimensions
_DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('meshrag.pgvector.ddl'))"
_COLUMNS = ("collection", "id", *FILTER_FIELDS.values(), "metadata", "embedding")


class PgVectorStore:
    """VectorStore over PostgreSQL + pgvector in `schema` of the database `dsn` names."""

    name = "pgvector"

    def __init__(
        self,
        dsn: str,
        schema: str = "meshrag",
        *,
        ef_search: int = DEFAULT_EF_SEARCH,
        exact_max: int = DEFAULT_EXACT_MAX,
        connect_timeout: int = 5,
        max_idle: int = 4,
    ) -> None:
        if not schema or len(schema) > 63:
            raise ConfigError(f"schema name {schema!r} must have 1 to 63 characters")
        self.schema = schema
        self.ef_search = ef_search
        self.exact_max = exact_max
        self._pool = PgConnections(dsn, connect_timeout=connect_timeout, max_idle=max_idle)
        self._ready = False
        self._ready_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Create the vector extension, the schema and the collections table if missing."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with (
                self._pool.connect(vector_types=False) as conn,
                mapped_errors(self._pool.where),
                conn.transaction(),
            ):
                conn.execute(_DDL_LOCK)
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} ("
                        " name text PRIMARY KEY,"
                        " dim integer NOT NULL CHECK (dim > 0),"
                        " size bigint NOT NULL DEFAULT 0,"
                        " created timestamptz NOT NULL DEFAULT now())"
                    ).format(self._collections_table)
                )
            self._ready = True

    def close(self) -> None:
        """Close idle connections; the store stays usable and reconnects on the next call."""
        self._pool.close()

    # -- VectorStore ------------------------------------------------------------------------------

    def create_collection(self, collection: str, dim: int) -> None:
        """Create an empty collection; a no-op if it exists with the same dimension."""
        check_collection_name(collection)
        check_dim(dim)
        if dim > MAX_HNSW_DIM:
            raise ConfigError(f"pgvector indexes at most {MAX_HNSW_DIM} dimensions, got {dim}")

        def work(conn: psycopg.Connection) -> None:
            conn.execute(_DDL_LOCK)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " collection text NOT NULL, id text NOT NULL,"
                    " product_id text, domain text, classification text, document text,"
                    " metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({}) NOT NULL,"
                    " PRIMARY KEY (collection, id))"
                ).format(self._vectors_table(dim), sql.Literal(dim))
            )
            inserted = conn.execute(
                sql.SQL(
                    "INSERT INTO {} (name, dim) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING RETURNING dim"
                ).format(self._collections_table),
                (collection, dim),
            ).fetchone()
            if inserted is None:
                existing = self._lock_collection(conn, collection)
                if existing != dim:
                    raise ConfigError(
                        f"collection {collection!r} exists with dimension {existing}, not {dim}; "
                        "drop it first or use another collection name"
                    )

        self._run(work)

    def add(self, collection: str, records: Sequence[VectorRecord]) -> None:
        """Add records (an existing id is replaced) in one transaction, loaded with binary COPY."""

        def work(conn: psycopg.Connection) -> None:
            dim = self._lock_collection(conn, collection)
            if not records:
                return
            matrix, metadata = prepare_records(records, dim, collection)
            table = self._vectors_table(dim)
            replaced = conn.execute(
                sql.SQL("DELETE FROM {} WHERE collection = %s AND id = ANY(%s)").format(table),
                (collection, [r.id for r in records]),
            ).rowcount
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                table, sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
            )
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.set_types(["text"] * (len(_COLUMNS) - 2) + ["jsonb", "vector"])
                for rec, vec, meta_json in zip(records, matrix, metadata):
                    meta = json.loads(meta_json)
                    copy.write_row(
                        [collection, rec.id, *(meta.get(k) for k in FILTER_FIELDS.values()), meta, vec]
                    )
            conn.execute(
                sql.SQL("UPDATE {} SET size = size + %s WHERE name = %s").format(self._collections_table),
                (len(records) - replaced, collection),
            )
            first_load = not self._has_hnsw(conn, dim)
            if first_load:
                conn.execute(_DDL_LOCK)
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops)"
                        " WITH (m = {}, ef_construction = {})"
                    ).format(
                        sql.Identifier(_hnsw_name(dim)),
                        table,
                        sql.Literal(HNSW_M),
                        sql.Literal(HNSW_EF_CONSTRUCTION),
                    )
                )
            row = conn.execute(
                sql.SQL("SELECT sum(size) FROM {} WHERE dim = %s").format(self._collections_table), (dim,)
            ).fetchone()
            if first_load or 10 * len(records) >= int(row[0] if row and row[0] else 0):
                # Fresh statistics let the planner pick HNSW for large collections (stale ones,
                # right after a bulk load, make it sort the whole collection instead).
                conn.execute(sql.SQL("ANALYZE {}").format(table))

        self._run(work)

    def search(self, query: np.ndarray, k: int, flt: SearchFilter) -> list[Hit]:
        """Top-k hits over the filter's collections by cosine; ties broken by (id, collection)."""
        check_k(k)
        vec = query_vector(query)
        names = filter_collections(flt)
        if not names:
            return []

        def work(conn: psycopg.Connection) -> list[Hit]:
            found = self._collection_info(conn, names)
            for name, (dim, _) in found.items():
                if dim != vec.shape[0]:
                    raise dim_mismatch(name, dim, vec.shape[0], "query")
            where, params = self._where(names, filter_values(flt))
            params.update(q=vec, k=k)
            table = self._vectors_table(vec.shape[0])
            if sum(size for _, size in found.values()) <= self.exact_max:
                conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
                query_sql = sql.SQL(
                    "SELECT id, collection, 1 - (embedding <=> %(q)s) AS score, metadata FROM {} WHERE {}"
                    ' ORDER BY score DESC, id COLLATE "C", collection COLLATE "C" LIMIT %(k)s'
                ).format(table, where)
            else:
                # SET LOCAL, as functions: SET cannot take bind parameters.
                conn.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true),"
                    " set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                    (str(min(max(self.ef_search, k), 1000)),),
                )
                query_sql = sql.SQL(
                    "WITH candidates AS MATERIALIZED ("
                    " SELECT id, collection, 1 - (embedding <=> %(q)s) AS score, metadata FROM {} WHERE {}"
                    " ORDER BY embedding <=> %(q)s LIMIT %(k)s)"
                    ' SELECT * FROM candidates ORDER BY score DESC, id COLLATE "C", collection COLLATE "C"'
                ).format(table, where)
            rows = conn.execute(query_sql, params).fetchall()
            return [Hit(id=r[0], collection=r[1], score=float(r[2]), metadata=r[3]) for r in rows]

        return self._run(work)

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete the given ids (unknown ids are ignored); return how many were deleted."""

        def work(conn: psycopg.Connection) -> int:
            dim = self._lock_collection(conn, collection)
            deleted = conn.execute(
                sql.SQL("DELETE FROM {} WHERE collection = %s AND id = ANY(%s)").format(
                    self._vectors_table(dim)
                ),
                (collection, list(ids)),
            ).rowcount
            conn.execute(
                sql.SQL("UPDATE {} SET size = size - %s WHERE name = %s").format(self._collections_table),
                (deleted, collection),
            )
            return deleted

        return self._run(work)

    def drop_collection(self, collection: str) -> None:
        """Remove a collection and its vectors."""

        def work(conn: psycopg.Connection) -> None:
            dim = self._lock_collection(conn, collection)
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE collection = %s").format(self._vectors_table(dim)),
                (collection,),
            )
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE name = %s").format(self._collections_table), (collection,)
            )

        self._run(work)

    def count(self, flt: SearchFilter) -> int:
        """How many vectors of the filter's collections match it."""
        names = filter_collections(flt)
        values = filter_values(flt)

        def work(conn: psycopg.Connection) -> int:
            found = self._collection_info(conn, names)
            if not values:
                return sum(size for _, size in found.values())
            total = 0
            for dim in sorted({dim for dim, _ in found.values()}):
                same_dim = [name for name, (d, _) in found.items() if d == dim]
                where, params = self._where(same_dim, values)
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._vectors_table(dim), where),
                    params,
                ).fetchone()
                total += int(row[0]) if row else 0
            return total

        return self._run(work) if names else 0

    def collections(self) -> list[str]:
        """Names of the collections in the schema, sorted."""
        rows = self._run(
            lambda conn: conn.execute(
                sql.SQL("SELECT name FROM {}").format(self._collections_table)
            ).fetchall()
        )
        return sorted(r[0] for r in rows)

    def describe(self) -> dict[str, Any]:
        def work(conn: psycopg.Connection) -> dict[str, Any]:
            rows = conn.execute(
                sql.SQL("SELECT name, dim, size FROM {} ORDER BY name").format(self._collections_table)
            ).fetchall()
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            return {
                "name": self.name,
                "schema": self.schema,
                "database": conn.info.dbname,
                "host": conn.info.host,
                "server_version": conn.info.server_version,
                "pgvector": version[0] if version else None,
                "metric": "cosine",
                "ef_search": self.ef_search,
                "exact_max": self.exact_max,
                "hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
                "collections": {
                    name: {
                        "dim": dim,
                        "count": size,
                        "index_type": "hnsw" if self._has_hnsw(conn, dim) else "none",
                    }
                    for name, dim, size in rows
                },
            }

        return self._run(work)

    # -- helpers ----------------------------------------------------------------------------------

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        self.warm_up()
        return self._pool.run(work)

    @property
    def _collections_table(self) -> sql.Identifier:
        return sql.Identifier(self.schema, "collections")

    def _vectors_table(self, dim: int) -> sql.Identifier:
        return sql.Identifier(self.schema, f"vectors_{dim}")

    def _has_hnsw(self, conn: psycopg.Connection, dim: int) -> bool:
        name = sql.Identifier(self.schema, _hnsw_name(dim)).as_string(conn)
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    def _lock_collection(self, conn: psycopg.Connection, collection: str) -> int:
        """The collection's dimension, its row locked until the transaction ends."""
        row = conn.execute(
            sql.SQL("SELECT dim FROM {} WHERE name = %s FOR UPDATE").format(self._collections_table),
            (collection,),
        ).fetchone()
        if row is None:
            raise missing_collections([collection])
        return int(row[0])

    def _collection_info(self, conn: psycopg.Connection, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """name → (dim, size) for every name; CollectionNotFound names the missing ones."""
        rows = conn.execute(
            sql.SQL("SELECT name, dim, size FROM {} WHERE name = ANY(%s)").format(self._collections_table),
            (list(names),),
        ).fetchall()
        found = {r[0]: (int(r[1]), int(r[2])) for r in rows}
        missing = set(names) - found.keys()
        if missing:
            raise missing_collections(missing)
        return found

    @staticmethod
    def _where(
        names: Sequence[str], values: dict[str, tuple[str, ...]]
    ) -> tuple[sql.Composable, dict[str, Any]]:
        clauses = [sql.SQL("collection = ANY(%(collections)s)")]
        params: dict[str, Any] = {"collections": list(names)}
        for key, allowed in values.items():
            clauses.append(sql.SQL("{} = ANY({})").format(sql.Identifier(key), sql.Placeholder(key)))
            params[key] = list(allowed)
        return sql.SQL(" AND ").join(clauses), params


def _hnsw_name(dim: int) -> str:
    return f"vectors_{dim}_embedding_hnsw"
