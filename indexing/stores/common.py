"""Rules every VectorStore backend shares, so FAISS and pgvector validate, filter and order alike.

The contract: scores are cosine similarities; hits are ordered by score descending, ties broken by
(id, collection) ascending; a filter field restricts on the record metadata key of the same meaning
(`products` → `product_id`, …) and a record without that key never matches a restricted field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from indexing.types import SearchFilter, VectorRecord
from knowledge.errors import CollectionNotFound, ConfigError

# SearchFilter attribute → metadata key (and pgvector column) it restricts.
FILTER_FIELDS: dict[str, str] = {
    "products": "product_id",
    "domains": "domain",
    "classifications": "classification",
    "documents": "document",
}

MAX_COLLECTION_NAME = 200


def collection_name_problem(name: object) -> str | None:
    """Why `name` cannot name a collection in every backend, or None if it can."""
    if not isinstance(name, str) or not name or name != name.strip():
        return "must be a non-empty string without surrounding spaces"
    if name.startswith("."):
        return "must not start with '.' (reserved for temporary files)"
    if len(name) > MAX_COLLECTION_NAME or any(ord(ch) < 32 for ch in name):
        return f"must be at most {MAX_COLLECTION_NAME} printable characters"
    return None


def check_collection_name(name: str) -> str:
    """Return `name` if it can name a collection in every backend, else raise ConfigError."""
    problem = collection_name_problem(name)
    if problem is not None:
        raise ConfigError(f"collection name {name!r} {problem}")
    return name


def check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ConfigError(f"vector dimension must be a positive integer, got {dim!r}")
    return dim


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return k


def dim_mismatch(collection: str, expected: int, got: int, what: str) -> ConfigError:
    return ConfigError(
        f"{what} has dimension {got} but collection {collection!r} expects dimension {expected} "
        f"(expected {expected}, got {got}); embed with the model that built the collection"
    )


def missing_collections(names: Iterable[str]) -> CollectionNotFound:
    listed = ", ".join(repr(n) for n in sorted(names))
    return CollectionNotFound(
        f"unknown collection(s) {listed}; index the product first or check the release's collections"
    )


def query_vector(query: np.ndarray) -> np.ndarray:
    """The query as a finite, non-zero float32 vector of shape (dim,)."""
    vec = np.asarray(query, dtype=np.float32)
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1 or vec.shape[0] == 0:
        raise ConfigError(f"query must be one vector of shape (dim,), got shape {np.shape(query)}")
    _check_finite_nonzero(vec[None, :], lambda _: "query")
    return np.ascontiguousarray(vec)


def prepare_records(
    records: Sequence[VectorRecord], dim: int, collection: str
) -> tuple[np.ndarray, list[str]]:
    """The records' vectors stacked as float32 (n, dim) and their metadata as JSON, after checking
    dimensions, ids and metadata."""
    seen: set[str] = set()
    metadata: list[str] = []
    for rec in records:
        if not isinstance(rec.id, str) or not rec.id:
            raise ConfigError(f"record id {rec.id!r} must be a non-empty string")
        if rec.id in seen:
            raise ConfigError(f"record id {rec.id!r} appears twice in one add to {collection!r}")
        seen.add(rec.id)
        got = np.shape(rec.vector)
        if len(got) != 1 or got[0] != dim:
            what = f"vector of record {rec.id!r}"
            raise dim_mismatch(collection, dim, got[0] if len(got) == 1 else -1, what)
        metadata.append(metadata_json(rec))
    matrix = np.ascontiguousarray(np.stack([np.asarray(r.vector, dtype=np.float32) for r in records]))
    _check_finite_nonzero(matrix, lambda row: f"vector of record {records[row].id!r}")
    return matrix, metadata


def metadata_json(rec: VectorRecord) -> str:
    """The record's metadata as JSON; the filter fields, when present, must be strings."""
    if not isinstance(rec.metadata, Mapping):
        raise ConfigError(f"metadata of record {rec.id!r} must be a mapping")
    for key in FILTER_FIELDS.values():
        value = rec.metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"metadata {key!r} of record {rec.id!r} must be a string, got {value!r}")
    try:
        return json.dumps(dict(rec.metadata), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"metadata of record {rec.id!r} is not JSON-serialisable: {exc}") from exc


def filter_values(flt: SearchFilter) -> dict[str, tuple[str, ...]]:
    """The restricted metadata keys of `flt` with their allowed values (deduplicated, sorted)."""
    return {
        key: tuple(sorted(set(values)))
        for attr, key in FILTER_FIELDS.items()
        if (values := getattr(flt, attr)) is not None
    }


def filter_collections(flt: SearchFilter) -> tuple[str, ...]:
    """The filter's collections, deduplicated and sorted."""
    if isinstance(flt.collections, str):
        raise ConfigError(
            f"SearchFilter.collections must be a tuple of names, got the string {flt.collections!r}"
        )
    return tuple(sorted(set(flt.collections)))


def _check_finite_nonzero(matrix: np.ndarray, name_of: Callable[[int], str]) -> None:
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if bad.size:
        raise ConfigError(
            f"{name_of(int(bad[0]))} must be finite and non-zero (cosine is undefined otherwise)"
        )
