"""One FAISS collection as loaded in memory: its index, row ↔ id maps and per-field postings for filters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from indexing.stores.common import FILTER_FIELDS


@dataclass(frozen=True)
class FaissCollection:
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


def make_collection(
    name: str, dim: int, index: faiss.Index, ids: Sequence[str], metadata: Sequence[str]
) -> FaissCollection:
    groups: dict[str, dict[str, list[int]]] = {key: {} for key in FILTER_FIELDS.values()}
    for row, md_json in enumerate(metadata):
        md = json.loads(md_json)
        for key, group in groups.items():
            value = md.get(key)
            if value is not None:
                group.setdefault(value, []).append(row)
    postings = {key: {v: np.asarray(r, dtype=np.int64) for v, r in g.items()} for key, g in groups.items()}
    return FaissCollection(
        name=name,
        dim=dim,
        index=index,
        ids=tuple(ids),
        metadata=tuple(metadata),
        rows={id_: row for row, id_ in enumerate(ids)},
        postings=postings,
    )
