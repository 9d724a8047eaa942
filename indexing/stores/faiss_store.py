"""FAISS vector store, the embedded default: one folder per collection under a root directory.

A collection's files, their layout and how each write stays crash-safe: `faiss_files`; the in-memory
form of a loaded collection: `faiss_collection`. Every mutation writes a new generation, so add a
collection's vectors in few large calls.

Index type by size: exact `IndexFlatIP` up to `flat_max` vectors (default 200_000), beyond that
`IndexHNSWFlat` (M=32, efConstruction=200, efSearch from `ef_search`). One process may write a
collection at a time; a reader process loads a collection once and does not see later changes to it
(embedding versions are immutable once written).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexing.atomic import fsync_dir
from indexing.stores.common import (
    check_collection_name,
    check_dim,
    check_k,
    collection_name_problem,
    dim_mismatch,
    filter_collections,
    filter_values,
    missing_collections,
    prepare_records,
    query_vector,
)
from indexing.stores.faiss_collection import FaissCollection, make_collection
from indexing.stores.faiss_files import (
    MANIFEST,
    STORE_FORMAT,
    collection_folder,
    folder_collection,
    read_collection,
    remove_stale_files,
    write_generation,
)
from indexing.types import Hit, SearchFilter, VectorRecord
from knowledge.errors import ConfigError

__all__ = ["DEFAULT_EF_SEARCH", "DEFAULT_FLAT_MAX", "HNSW_EF_CONSTRUCTION", "HNSW_M", "MANIFEST", "STORE_FORMAT",
           "FaissStore"]

DEFAULT_FLAT_MAX = 200_000
DEFAULT_EF_SEARCH = 128
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200


class FaissStore:
    """VectorStore over FAISS files under `root`; filters are applied inside FAISS via ID selectors."""

    name = "faiss"

    def __init__(
        self,
        root: Path,
        *,
        flat_max: int = DEFAULT_FLAT_MAX,
        ef_search: int = DEFAULT_EF_SEARCH,
        add_batch: int = 16_384,
    ) -> None:
        self.root = Path(root)
        self.flat_max = flat_max
        self.ef_search = ef_search
        self.add_batch = add_batch
        self._cache: dict[str, FaissCollection] = {}
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Create the root if needed, clear leftovers of interrupted drops, load every collection."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            for leftover in self.root.glob(".trash-*"):
                shutil.rmtree(leftover)
            for name in self.collections():
                self._get(name)

    # -- VectorStore ----------------------------------------------------------------------------

    def create_collection(self, collection: str, dim: int) -> None:
        """Create an empty collection; a no-op if it exists with the same dimension."""
        check_collection_name(collection)
        check_dim(dim)
        with self._lock:
            existing = self._get(collection)
            if existing is not None:
                if existing.dim != dim:
                    raise ConfigError(
                        f"collection {collection!r} exists with dimension {existing.dim}, not {dim}; "
                        "drop it first or use another collection name"
                    )
                return
            self._commit(make_collection(collection, dim, self._new_index(dim, 0), (), ()))

    def add(self, collection: str, records: Sequence[VectorRecord]) -> None:
        """Add records (an existing id is replaced); the new state is on disk when this returns."""
        with self._lock:
            col = self._require(collection)
            if not records:
                return
            matrix, metas = prepare_records(records, col.dim, collection)
            faiss.normalize_L2(matrix)
            replaced = sorted(col.rows[r.id] for r in records if r.id in col.rows)
            base = self._without(col, replaced) if replaced else col
            if isinstance(base.index, faiss.IndexFlat) and base.size + len(records) > self.flat_max:
                index = self._build_index(col.dim, np.concatenate([base.vectors(), matrix]))
            else:
                index = faiss.clone_index(base.index)  # searches may be running on the cached one
                self._add_in_batches(index, matrix)
            ids = base.ids + tuple(r.id for r in records)
            self._commit(make_collection(collection, col.dim, index, ids, base.metadata + tuple(metas)))

    def search(self, query: np.ndarray, k: int, flt: SearchFilter) -> list[Hit]:
        """Top-k hits over the filter's collections by cosine; ties broken by (id, collection)."""
        check_k(k)
        vec = query_vector(query)
        cols = self._require_all(filter_collections(flt))
        for col in cols:
            if col.dim != vec.shape[0]:
                raise dim_mismatch(col.name, col.dim, vec.shape[0], "query")
        unit = vec[None, :].copy()
        faiss.normalize_L2(unit)
        values = filter_values(flt)
        found: list[tuple[float, str, str, FaissCollection, int]] = []
        for col in cols:
            found.extend(self._search_collection(col, unit, k, col.select(values)))
        # Score descending, ties by (id, collection); metadata JSON is parsed only for the k hits returned.
        found.sort(key=lambda f: (-f[0], f[1], f[2]))
        return [Hit(id=id_, collection=name, score=score, metadata=json.loads(col.metadata[row]))
                for score, id_, name, col, row in found[:k]]

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete the given ids (unknown ids are ignored); return how many were deleted."""
        with self._lock:
            col = self._require(collection)
            rows = sorted({col.rows[i] for i in ids if i in col.rows})
            if rows:
                self._commit(self._without(col, rows))
            return len(rows)

    def drop_collection(self, collection: str) -> None:
        """Remove a collection and its files."""
        with self._lock:
            if (
                collection_name_problem(collection) is not None
                or not (self._folder(collection) / MANIFEST).is_file()
            ):
                raise missing_collections([collection])
            trash = self.root / f".trash-{uuid.uuid4().hex}"
            os.replace(self._folder(collection), trash)  # atomic: gone from listings at once
            fsync_dir(self.root)
            self._cache.pop(collection, None)
            shutil.rmtree(trash)

    def count(self, flt: SearchFilter) -> int:
        """How many vectors of the filter's collections match it."""
        values = filter_values(flt)
        total = 0
        for col in self._require_all(filter_collections(flt)):
            rows = col.select(values)
            total += col.size if rows is None else len(rows)
        return total

    def collections(self) -> list[str]:
        """Names of the complete collections on disk, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            folder_collection(p)
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / MANIFEST).is_file()
        )

    def describe(self) -> dict[str, Any]:
        cols = {name: self._get(name) for name in self.collections()}
        return {
            "name": self.name,
            "root": str(self.root),
            "metric": "cosine",
            "flat_max": self.flat_max,
            "ef_search": self.ef_search,
            "hnsw": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
            "collections": {
                name: {"dim": c.dim, "count": c.size, "index_type": c.index_type}
                for name, c in cols.items()
                if c is not None
            },
        }

    # -- search -----------------------------------------------------------------------------------

    def _search_collection(
        self, col: FaissCollection, unit: np.ndarray, k: int, rows: np.ndarray | None
    ) -> list[tuple[float, str, str, FaissCollection, int]]:
        """The k best (score, id, collection name, collection, row), best first, ties by id."""
        available = col.size if rows is None else len(rows)
        if available == 0:
            return []
        selector = faiss.IDSelectorBatch(rows) if rows is not None and available < col.size else None
        index = col.index
        # A small selection of a large HNSW collection is scored exactly on its flat storage.
        exact = isinstance(index, faiss.IndexFlat) or available <= self.flat_max
        if not isinstance(index, faiss.IndexFlat) and exact:
            index = faiss.downcast_index(index.storage)
        # One more than k, so the first search usually shows that no hit ties with the k-th best.
        want = min(k + 1, available)
        while True:
            params = self._params(exact, selector, want)
            scores, found = index.search(unit, want, params=params)
            keep = found[0] >= 0
            scores, found = scores[0][keep], found[0][keep]
            # Widen until every hit tied with the k-th best is in, so ties can be broken by id.
            if len(found) < k or scores[-1] < scores[k - 1] or want >= available:
                break
            want = min(available, want * 2)
        best = [(float(s), col.ids[r], col.name, col, int(r)) for s, r in zip(scores, found)]
        best.sort(key=lambda f: (-f[0], f[1]))
        return best[:k]

    def _params(
        self, exact: bool, selector: faiss.IDSelector | None, want: int
    ) -> faiss.SearchParameters | None:
        if not exact:
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, want))
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    # -- building ---------------------------------------------------------------------------------

    def _new_index(self, dim: int, n: int) -> faiss.Index:
        if n <= self.flat_max:
            return faiss.IndexFlatIP(dim)
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index

    def _build_index(self, dim: int, vectors: np.ndarray) -> faiss.Index:
        index = self._new_index(dim, len(vectors))
        self._add_in_batches(index, vectors)
        return index

    def _add_in_batches(self, index: faiss.Index, vectors: np.ndarray) -> None:
        for start in range(0, len(vectors), self.add_batch):
            index.add(np.ascontiguousarray(vectors[start : start + self.add_batch]))

    def _without(self, col: FaissCollection, rows: Iterable[int]) -> FaissCollection:
        keep = np.setdiff1d(np.arange(col.size), np.fromiter(rows, dtype=np.int64))
        index = self._build_index(col.dim, col.vectors()[keep])
        return make_collection(
            col.name, col.dim, index, [col.ids[r] for r in keep], [col.metadata[r] for r in keep]
        )

    # -- files and cache --------------------------------------------------------------------------

    def _folder(self, collection: str) -> Path:
        return collection_folder(self.root, collection)

    def _get(self, collection: str) -> FaissCollection | None:
        col = self._cache.get(collection)
        if col is not None or collection_name_problem(collection) is not None:
            return col
        with self._lock:
            col = self._cache.get(collection)
            if col is None:
                col = self._load(collection)
                if col is not None:
                    self._cache[collection] = col
            return col

    def _require(self, collection: str) -> FaissCollection:
        col = self._get(collection)
        if col is None:
            raise missing_collections([collection])
        return col

    def _require_all(self, names: Sequence[str]) -> list[FaissCollection]:
        found = {name: self._get(name) for name in names}
        missing = [name for name, col in found.items() if col is None]
        if missing:
            raise missing_collections(missing)
        return [col for col in found.values() if col is not None]

    def _load(self, collection: str) -> FaissCollection | None:
        return read_collection(self._folder(collection), collection, self.ef_search)

    def _commit(self, col: FaissCollection) -> None:
        """Write `col` as a new generation (manifest last), then make it the cached state."""
        folder = self._folder(col.name)
        current = write_generation(folder, col)
        self._cache[col.name] = col
        remove_stale_files(folder, current)
