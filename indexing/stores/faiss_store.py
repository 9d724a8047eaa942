"""FAISS vector store, the embedded default: one folder per collection under a root directory.

A collection folder (the collection name, percent-quoted) holds:

    manifest.json           written last; a folder without it is not (yet) a collection
    index-<token>.faiss     the FAISS index: inner product over unit vectors, i.e. cosine
    records-<token>.jsonl   one {"id", "metadata"} line per FAISS row, in row order

Each file is written to a temporary path, fsynced and renamed into place, and the manifest names the
data files of the current generation, so a crash at any point leaves the last complete state visible.
Every mutation writes a new generation, so add a collection's vectors in few large calls.

Index type by size: exact `IndexFlatIP` up to `flat_max` vectors (default 200_000), beyond that
`IndexHNSWFlat` (M=32, efConstruction=200, efSearch from `ef_search`). One process may write a
collection at a time; a reader process loads a collection once and does not see later changes to it
(embedding versions are immutable once written).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import faiss
import numpy as np

from indexing.atomic import fsync_dir
from indexing.stores.common import (
    FILTER_FIELDS,
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
from indexing.types import Hit, SearchFilter, VectorRecord
from knowledge.errors import ConfigError

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
DEFAULT_FLAT_MAX = 200_000
DEFAULT_EF_SEARCH = 128
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
MANIFEST = "manifest.json"
_FOLDER_SAFE = "@+=,"  # besides letters, digits and "_.-~", kept readable in folder names


@dataclass(frozen=True)
class _Collection:
    """One loaded collection. Immutable: a mutation builds a new one and swaps it into the cache."""

    name: str
    dim: int
    index: faiss.Index
    ids: tuple[str, ...]  # FAISS row → record id
    metadata: tuple[str, ...]  # FAISS row → metadata JSON
    rows: dict[str, int]  # record id → FAISS row
    postings: dict[str, dict[str, np.ndarray]]  # metadata key → value → sorted FAISS rows

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def index_type(self) -> str:
        return type(self.index).__name__

    def select(self, values: dict[str, tuple[str, ...]]) -> np.ndarray | None:
        """Sorted rows matching every restricted key; None when nothing is restricted."""
        if not values:
            return None
        selected: np.ndarray | None = None
        for key, allowed in values.items():
            lists = [self.postings[key][v] for v in allowed if v in self.postings[key]]
            rows = np.sort(np.concatenate(lists)) if lists else np.empty(0, dtype=np.int64)
            selected = rows if selected is None else np.intersect1d(selected, rows, assume_unique=True)
            if selected.size == 0:
                break
        return selected

    def vectors(self) -> np.ndarray:
        if self.size == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self.index.reconstruct_n(0, self.size)


def _make_collection(
    name: str, dim: int, index: faiss.Index, ids: Sequence[str], metadata: Sequence[str]
) -> _Collection:
    groups: dict[str, dict[str, list[int]]] = {key: {} for key in FILTER_FIELDS.values()}
    for row, md_json in enumerate(metadata):
        md = json.loads(md_json)
        for key, group in groups.items():
            value = md.get(key)
            if value is not None:
                group.setdefault(value, []).append(row)
    postings = {key: {v: np.asarray(r, dtype=np.int64) for v, r in g.items()} for key, g in groups.items()}
    return _Collection(
        name=name,
        dim=dim,
        index=index,
        ids=tuple(ids),
        metadata=tuple(metadata),
        rows={id_: row for row, id_ in enumerate(ids)},
        postings=postings,
    )


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
        self._cache: dict[str, _Collection] = {}
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
            self._commit(_make_collection(collection, dim, self._new_index(dim, 0), (), ()))

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
            self._commit(_make_collection(collection, col.dim, index, ids, base.metadata + tuple(metas)))

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
        found: list[tuple[float, str, str, _Collection, int]] = []
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
            unquote(p.name)
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
        self, col: _Collection, unit: np.ndarray, k: int, rows: np.ndarray | None
    ) -> list[tuple[float, str, str, _Collection, int]]:
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

    def _without(self, col: _Collection, rows: Iterable[int]) -> _Collection:
        keep = np.setdiff1d(np.arange(col.size), np.fromiter(rows, dtype=np.int64))
        index = self._build_index(col.dim, col.vectors()[keep])
        return _make_collection(
            col.name, col.dim, index, [col.ids[r] for r in keep], [col.metadata[r] for r in keep]
        )

    # -- files and cache --------------------------------------------------------------------------

    def _folder(self, collection: str) -> Path:
        return self.root / quote(collection, safe=_FOLDER_SAFE)

    def _get(self, collection: str) -> _Collection | None:
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

    def _require(self, collection: str) -> _Collection:
        col = self._get(collection)
        if col is None:
            raise missing_collections([collection])
        return col

    def _require_all(self, names: Sequence[str]) -> list[_Collection]:
        found = {name: self._get(name) for name in names}
        missing = [name for name, col in found.items() if col is None]
        if missing:
            raise missing_collections(missing)
        return [col for col in found.values() if col is not None]

    def _load(self, collection: str) -> _Collection | None:
        folder = self._folder(collection)
        for attempt in (1, 2):
            try:
                manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            except FileNotFoundError:
                return None
            try:
                index = faiss.read_index(str(folder / manifest["index_file"]))  # already downcast
                lines = (folder / manifest["records_file"]).read_text(encoding="utf-8").splitlines()
            except (FileNotFoundError, RuntimeError):
                if attempt == 2:
                    raise
                continue  # another process replaced the generation between our reads
            break
        records = [json.loads(line) for line in lines]
        if manifest.get("format") != STORE_FORMAT or not index.ntotal == len(records) == manifest["count"]:
            raise ConfigError(
                f"collection {collection!r} in {folder} is inconsistent or of an unknown format; "
                "drop it and index the product again"
            )
        if index.d != manifest["dim"]:
            raise ConfigError(
                f"collection {collection!r} index has dimension {index.d}, manifest says {manifest['dim']}"
            )
        _warn_on_version_change(collection, manifest.get("versions", {}))
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = self.ef_search
        return _make_collection(
            collection,
            manifest["dim"],
            index,
            [r["id"] for r in records],
            [json.dumps(r["metadata"], ensure_ascii=False) for r in records],
        )

    def _commit(self, col: _Collection) -> None:
        """Write `col` as a new generation (manifest last), then make it the cached state."""
        folder = self._folder(col.name)
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        index_file, records_file = f"index-{token}.faiss", f"records-{token}.jsonl"
        _write_atomic(folder / index_file, lambda p: faiss.write_index(col.index, str(p)))
        lines = (
            json.dumps({"id": i, "metadata": json.loads(m)}, ensure_ascii=False) + "\n"
            for i, m in zip(col.ids, col.metadata)
        )
        _write_atomic(folder / records_file, lambda p: _write_text(p, lines))
        manifest = {
            "format": STORE_FORMAT,
            "name": col.name,
            "dim": col.dim,
            "count": col.size,
            "metric": "cosine",
            "index_type": col.index_type,
            "index_file": index_file,
            "records_file": records_file,
            "versions": {"faiss": faiss.__version__, "numpy": np.__version__},
        }
        _write_atomic(folder / MANIFEST, lambda p: _write_text(p, [json.dumps(manifest, indent=2)]))
        fsync_dir(folder)
        self._cache[col.name] = col
        for stale in folder.iterdir():
            if stale.name not in {MANIFEST, index_file, records_file}:
                stale.unlink()


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary sibling, fsync it, then rename it over `path`."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text(path: Path, chunks: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(chunks)


def _warn_on_version_change(collection: str, saved: dict[str, str]) -> None:
    was = saved.get("faiss", "")
    if was.split(".")[:2] != faiss.__version__.split(".")[:2]:
        logger.warning(
            "collection %r was written by faiss %s and is read by faiss %s; re-index it if results look off",
            collection,
            was or "unknown",
            faiss.__version__,
        )
