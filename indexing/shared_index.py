"""An index run in shared mode: per-product locks, uploads, and the merged publish.

- Locks: one session-level advisory lock per product (`index_lock_key(schema, product)`), taken in sorted
  order on a connection of the run's own and held until it ends (a killed run's locks go with its
  connection). The same product twice: the second run waits, saying for whom, or with `wait=False`
  stops with a one-line ConfigError. Different products proceed side by side.
- Uploads: the chunk and embedding versions of the products the run indexed go to `artefacts` before
  the alias moves (indexing/artefacts.py), so every replica can fetch what the release serves.
- Publish: `PgReleaseRegistry.commit_run` merges the run's products into the release current at that
  moment and, in the same transaction, the run's catalog snapshot into the current one
  (indexing/shared_catalog.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from indexing.artefacts import ArtefactStore, embedding_path
from indexing.releases import ProductEntry
from indexing.shared_catalog import build_snapshot, publish_snapshot
from indexing.shared_db import SharedDb
from indexing.shared_releases import CommitResult, PgReleaseRegistry, RunChanges
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError, StoreUnavailable

_HOLDER = ("SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
           "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 "
           "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def index_lock_key(schema: str, product_id: str) -> int:
    """The advisory lock key of index runs of `product_id` in `schema` (stable across hosts and versions)."""
    digest = hashlib.sha256(f"meshrag.index:{schema}:{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_holder(conn: psycopg.Connection, key: int) -> str:
    """Who holds advisory lock `key`: its application name (`meshrag index <host>:<pid>`) and backend pid."""
    row = conn.execute(_HOLDER, ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
    if row is None:
        return "a run that has just finished"
    return f"{row[0] or 'a PostgreSQL client'}, backend pid {row[1]}"


class SharedIndexRun:
    """The shared-mode parts of one IndexPipeline: locks, uploads, the merged commit."""

    def __init__(self, db: SharedDb, registry: PgReleaseRegistry, data_dir: Path,
                 notice: Callable[[str], None]) -> None:
        self.db = db
        self.registry = registry
        self.artefacts = ArtefactStore(db)
        self.data_dir = data_dir
        self.notice = notice
        self._lock_conn: psycopg.Connection | None = None

    @contextmanager
    def locked(self, product_ids: Sequence[str], *, wait: bool = True) -> Iterator[None]:
        """Hold the index lock of each product until the block ends."""
        conn = self.db.connect()
        try:
            with self.db.errors():
                for pid in sorted(set(product_ids)):
                    key = index_lock_key(self.db.schema, pid)
                    if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
                        continue
                    holder = lock_holder(conn, key)
                    if not wait:
                        raise ConfigError(f"another index run of {pid} is in progress ({holder}); retry when it "
                                          "ends, or drop --no-wait to wait for it")
                    self.notice(f"waiting for another index run of {pid} ({holder}) …")
                    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            self._lock_conn = conn
            yield
        finally:
            self._lock_conn = None
            conn.close()  # ends the session: its advisory locks go with it

    def commit(self, catalog: Catalog, changes: RunChanges, *, publish: bool) -> CommitResult:
        """Upload what the run indexed, then merge and (with `publish`) move the alias, in one transaction."""
        for entry in self._indexed_entries(changes):
            self.artefacts.upload_chunk_version(self.data_dir, entry.chunk_version)
            self.artefacts.upload_file(self.data_dir, embedding_path(entry.embedding_version))
        snapshot = build_snapshot(catalog)
        self._check_locks()
        return self.registry.commit_run(
            changes, publish=publish,
            also=lambda conn: publish_snapshot(conn, self.db, snapshot, changes.indexed, changes.whole_mesh))

    @staticmethod
    def _indexed_entries(changes: RunChanges) -> list[ProductEntry]:
        pids = set(changes.products) if changes.whole_mesh else set(changes.indexed)
        return [e for pid in sorted(pids) for e in (*([changes.products[pid]] if pid in changes.products else []),
                                                   *changes.kept.get(pid, {}).values())]

    def _check_locks(self) -> None:
        """The locks live as long as their connection: if PostgreSQL restarted meanwhile they are gone."""
        try:
            if self._lock_conn is not None:
                self._lock_conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise StoreUnavailable("lost the connection holding this run's index locks (PostgreSQL restarted?); "
                                   "nothing was published: run `meshrag index` again") from exc
