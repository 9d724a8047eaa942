"""What serving one data directory holds in memory, shared by every request and every door.

Everything heavy is loaded once per process in `warm_up()`: the embedder, the store, the catalog, the
reranker (when configured), and per chunk version its chunks and keyword index (immutable, cached by
version id). The `current` alias and the catalog contracts are re-checked per request by file stat
(microseconds), so a publish, a rollback or a changed contract takes effect without a restart.

Shared mode (store = pgvector): the data directory is a cache. Releases, the alias, chunk versions and the
catalog come from PostgreSQL (a chunk version or catalog file missing here is fetched on first use). The
alias and the catalog snapshot are re-read with one one-row query at most once per ALIAS_RECHECK_S, by
the request that finds them older: a replica serves a publish within a second of it, needs no listener
thread or extra connection, and cannot miss a move while disconnected (a LISTEN would need this same
re-check after every reconnect). PostgreSQL down: StoreUnavailable, and the next request retries.

Nothing here checks access: routes and the searcher decide what a principal may read from `catalog`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from indexing.embedder import create_embedder
from indexing.keyword import KeywordIndex
from indexing.releases import CURRENT, Release, release_registry
from indexing.shared_catalog import CatalogMirror
from indexing.shared_db import SharedDb, process_label
from indexing.shared_evals import release_eval_store
from indexing.shared_releases import PgReleaseRegistry, SharedHead
from indexing.stores.factory import create_store
from indexing.stores.pg_shared import is_shared
from indexing.types import Chunk, Embedder, VectorStore
from indexing.versions import version_store
from knowledge.catalog import Catalog, MeshStamp, log_problem_changes, mesh_unchanged
from knowledge.errors import ConfigError
from retrieval.rerank import CrossEncoderReranker
from retrieval.settings import RetrievalSettings
from retrieval.versions import ProductVersion, version_index

MAX_CACHED_VERSIONS = 512  # chunk versions kept in memory (a release holds one per product)
ALIAS_RECHECK_S = 1.0  # shared mode: the oldest a request may find the alias and the catalog snapshot
# The oldest a request may find the catalog (an access change in a contract included): descriptors and
# contracts are stat'ed at most this often (one stat per file and folder; a request reads the catalog several
# times, so checking on every read was a measurable part of an ask).
MESH_RECHECK_S = 0.1

@dataclass(frozen=True)
class LoadedChunkVersion:
    """One chunk product version in memory: its chunks by id and its own BM25 index."""

    id: str
    chunks: dict[str, Chunk]
    keyword: KeywordIndex


class ServingContext:
    """The loaded state of one data directory. Construct cheaply, `warm_up()` once, then share it."""

    def __init__(self, settings: RetrievalSettings, *, store: VectorStore | None = None,
                 embedder: Embedder | None = None, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.resolved_data_dir()
        db = SharedDb(settings, application_name=process_label("meshrag serve")) if is_shared(settings) else None
        self.releases = release_registry(settings, db)
        self.versions = version_store(settings, db)
        self.evals = release_eval_store(settings, db)
        # Shared mode: the catalog is loaded from the current snapshot, laid out under the data directory.
        self._shared = self.releases if isinstance(self.releases, PgReleaseRegistry) else None
        self._mirror = CatalogMirror(db, self.data_dir) if db is not None else None
        self._head: SharedHead | None = None
        self._head_at = 0.0
        self._head_lock = threading.Lock()
        self._store = store
        self._embedder = embedder
        self._catalog = catalog
        self._catalog_pinned = catalog is not None  # a catalog passed in is the caller's to refresh
        self._catalog_stamp: MeshStamp | None = None
        self._mesh_checked_at = -MESH_RECHECK_S  # time.monotonic() of the last stat check
        self._catalog_reported: Catalog | None = None  # the catalog whose problems were last logged
        self._catalog_seen: set[str] = set()  # releases whose products were looked up in the catalog
        self._reranker: CrossEncoderReranker | None = None
        self._alias_stamp: tuple[int, int, int] | None = None
        self._alias_id: str | None = None
        self._releases: dict[str, Release] = {}
        self._versions: dict[tuple[str, int], dict[str, tuple[ProductVersion, ...]]] = {}
        self._loaded: OrderedDict[str, LoadedChunkVersion] = OrderedDict()
        self._lock = threading.RLock()
        self._model_id = ""
        self._warm = False

    # ----------------------------------------------------------------------------------- lifecycle
    def warm_up(self) -> None:
        """Load the embedder, the store, the catalog (and the reranker when configured), then the
        chunks and keyword indexes of the current release, if there is one."""
        with self._lock:
            if self._warm:
                return
            if self._embedder is None:
                minilm = self.settings.embedder == "minilm"
                options = {"batch_size": self.settings.embed_batch_size, "query_runtime": self.settings.query_runtime,
                           "cache_dir": self.settings.resolved_cache_dir(),
                           "onnx_threads": self.settings.query_threads} if minilm else {}
                self._embedder = create_embedder(self.settings.embedder, **options)
            self._embedder.warm_up()
            self._model_id = self._embedder.model_id  # MiniLM hashes its weights file the first time
            if self.settings.torch_threads is not None and "torch" in sys.modules:
                # Process-wide; see RetrievalSettings.torch_threads for why one thread serves faster.
                sys.modules["torch"].set_num_threads(self.settings.torch_threads)
            if self.settings.torch_threads is not None and "faiss" in sys.modules:
                # FAISS's OpenMP pool the same way: a single query waiting for two busy cores took 48 ms
                # instead of 2.2 ms for a 20k exact search (benchmarks/scale.py).
                sys.modules["faiss"].omp_set_num_threads(self.settings.torch_threads)
            if self._store is None:
                self._store = create_store(self.settings.store, self.data_dir, self.settings.dsn,
                                           self.settings.pg_schema)
            self._store.warm_up()
            if self._shared is not None:
                self._shared_head(fresh=True)  # lays out the catalog snapshot before it is loaded
            if self._catalog is None:
                self._catalog = Catalog.load(self._mesh_roots())
            self._catalog_stamp = self._stamp_of(self._catalog)
            if self.settings.reranker_model:
                self._reranker = CrossEncoderReranker(self.settings.reranker_model)
                self._reranker.warm_up()
            current = self._resolve_release(CURRENT) if self._current_id() else None
            if current is not None:
                for entry in current.products.values():
                    self.chunk_version(entry.chunk_version)
            self._warm = True

    def require_warm(self) -> None:
        if not self._warm:
            raise RuntimeError("ServingContext is not warmed up: call warm_up() first")

    # -------------------------------------------------------------------------------- models, store
    @property
    def embedder(self) -> Embedder:
        self.require_warm()
        assert self._embedder is not None
        return self._embedder

    @property
    def model_id(self) -> str:
        """The embedder's model id, as recorded in releases (read once, at warm-up)."""
        return self._model_id

    @property
    def store(self) -> VectorStore:
        self.require_warm()
        assert self._store is not None
        return self._store

    @property
    def reranker(self) -> CrossEncoderReranker | None:
        """The loaded CrossEncoder, or None when MESHRAG_RERANKER_MODEL is unset."""
        return self._reranker

    def check_compatible(self, release: Release) -> None:
        """Raise ConfigError unless `release` was embedded with this embedder into this store."""
        if release.model_id != self._model_id:
            raise ConfigError(f"release {release.id} was embedded with {release.model_id} but this searcher "
                              f"embeds queries with {self._model_id}; set MESHRAG_EMBEDDER to match")
        if release.store != self.store.name:
            raise ConfigError(f"release {release.id} lives in the {release.store} store but this searcher "
                              f"reads {self.store.name}; set MESHRAG_STORE={release.store}")

    # -------------------------------------------------------------------------------------- catalog
    @property
    def catalog(self) -> Catalog:
        """The catalog as of now (at most MESH_RECHECK_S old): reloaded when any descriptor or contract
        under the mesh roots was added, removed or changed (valid or not). A product whose files stop
        validating keeps its last valid version serving, marked invalid; its problem is logged once, when
        first seen."""
        self.require_warm()
        catalog = self._catalog
        assert catalog is not None
        if not self._catalog_pinned and self._shared is not None:
            self._shared_head()  # a new snapshot is laid out here, and the stat check below sees it
        if not self._catalog_pinned and self._mesh_check_due() and not mesh_unchanged(self._catalog_stamp or ()):
            catalog = self._reload_catalog(catalog)
        if catalog is not self._catalog_reported:
            with self._lock:
                if catalog is not self._catalog_reported:
                    log_problem_changes(self._catalog_reported, catalog)
                    self._catalog_reported = catalog
        return catalog

    def _mesh_check_due(self) -> bool:
        """True at most once per MESH_RECHECK_S (two threads racing may both check: harmless)."""
        now = time.monotonic()
        if now - self._mesh_checked_at < MESH_RECHECK_S:
            return False
        self._mesh_checked_at = now
        return True

    def catalog_for(self, release: Release) -> Catalog:
        """The current catalog, reloaded once per release that serves a product it does not know yet
        (a product added to the mesh since this process loaded the catalog)."""
        catalog = self.catalog
        if (not self._catalog_pinned and release.id not in self._catalog_seen
                and any(pid not in catalog.products for pid in release.products)):
            self._reload_catalog(catalog)
            catalog = self.catalog
        self._catalog_seen.add(release.id)
        return catalog

    def _reload_catalog(self, stale: Catalog) -> Catalog:
        """A fresh load replacing `stale` (unless another thread did); products now invalid keep `stale`'s."""
        with self._lock:
            if self._catalog is stale:
                self._catalog = Catalog.load(self._mesh_roots(), previous=stale)
                self._catalog_stamp = self._stamp_of(self._catalog)
            assert self._catalog is not None
            return self._catalog

    def _mesh_roots(self) -> list[Path]:
        """Where the catalog is loaded from: the mesh roots, or in shared mode the snapshot's folder."""
        return [self._mirror.root] if self._mirror is not None else list(self.settings.mesh_roots)

    @staticmethod
    def _stamp_of(catalog: Catalog | None) -> MeshStamp:
        """Stamps of every folder, descriptor and contract under the catalog's roots, taken at its load."""
        return catalog.stamp if catalog is not None else ()

    # ------------------------------------------------------------------------------ releases, chunks
    def release(self, ref: str = CURRENT) -> Release:
        """A release by id or alias (no access check)."""
        self.require_warm()
        return self._resolve_release(ref)

    def product_versions(self, release: Release) -> dict[str, tuple[ProductVersion, ...]]:
        """Every addressable version of each product `release` serves (retrieval/versions.py), oldest first;
        recomputed when the release registry changes (a new release may have served another version)."""
        if self._shared is not None:
            stamp = self._shared_head().releases_seq
        else:
            try:
                stamp = self.releases.dir.stat().st_mtime_ns  # type: ignore[union-attr]
            except FileNotFoundError:
                stamp = 0
        key = (release.id, stamp)
        found = self._versions.get(key)
        if found is None:
            found = version_index(release, self.releases.list())
            with self._lock:
                self._versions = {k: v for k, v in self._versions.items() if k[1] == stamp} | {key: found}
        return found

    def chunks_of(self, chunk_version: str) -> list[Chunk]:
        """All chunks of one chunk product version (loaded once, shared with search; no access check)."""
        self.require_warm()
        return list(self.chunk_version(chunk_version).chunks.values())

    def chunk_version(self, version_id: str) -> LoadedChunkVersion:
        """One chunk version's chunks and keyword index, loaded on first use and then kept (LRU)."""
        loaded = self._loaded.get(version_id)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(version_id)
            if loaded is None:
                chunks = {c.chunk_id: c for c in self.versions.read_chunks(version_id)}
                keyword = KeywordIndex.load(self.versions.chunk_dir(version_id) / "keyword")
                loaded = LoadedChunkVersion(version_id, chunks, keyword)
                self._loaded[version_id] = loaded
                while len(self._loaded) > MAX_CACHED_VERSIONS:
                    self._loaded.popitem(last=False)
            return loaded

    def _resolve_release(self, ref: str) -> Release:
        """A release by id (cached: releases are immutable) or the `current` alias (re-checked by stat)."""
        rid = self._current_id() if ref == CURRENT else ref
        if rid is None:
            return self.releases.get(CURRENT)  # raises ReleaseNotFound with the "run meshrag index" hint
        release = self._releases.get(rid)
        if release is None:
            release = self.releases.get(rid)
            with self._lock:
                self._releases[rid] = release
        return release

    def _current_id(self) -> str | None:
        if self._shared is not None:
            return self._shared_head().release_id
        path = self.releases.dir / f"{CURRENT}.json"  # type: ignore[union-attr]
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        # The alias is replaced by rename, so a publish always changes the inode.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._alias_stamp:
            with self._lock:
                self._alias_id = self.releases.current_id()
                self._alias_stamp = stamp
        return self._alias_id

    def _shared_head(self, *, fresh: bool = False) -> SharedHead:
        """Shared mode: the alias, the newest release and the catalog snapshot, re-read when older than
        ALIAS_RECHECK_S (or `fresh`); a new catalog snapshot is laid out locally before this returns."""
        head = self._head
        if not fresh and head is not None and time.monotonic() - self._head_at < ALIAS_RECHECK_S:
            return head
        with self._head_lock:
            if not fresh and self._head is not None and time.monotonic() - self._head_at < ALIAS_RECHECK_S:
                return self._head
            assert self._shared is not None and self._mirror is not None
            head = self._shared.head()  # StoreUnavailable while PostgreSQL is down: the next request retries
            if not self._catalog_pinned:
                self._mirror.sync(head.catalog_id)
            self._head, self._head_at = head, time.monotonic()
            return head
