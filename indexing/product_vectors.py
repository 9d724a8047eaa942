"""One product's vectors: embedded in the pipeline (or from the embedding cache), then stored as a
collection of the vector store with an embedding manifest beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from indexing.types import Chunk, Embedder, VectorRecord
from indexing.versions import library_versions
from knowledge.model import KnowledgeProduct


@dataclass(frozen=True)
class EmbeddedVectors:
    """Vectors for a list of chunks (same order) and how many were embedded or came from the cache."""

    vectors: np.ndarray
    embedded: int
    reused: int
    seconds: float = 0.0

    @staticmethod
    def concat(parts: Sequence[EmbeddedVectors], dim: int) -> EmbeddedVectors:
        if not parts:
            return EmbeddedVectors(np.zeros((0, dim), dtype=np.float32), 0, 0)
        return EmbeddedVectors(np.concatenate([p.vectors for p in parts]), sum(p.embedded for p in parts),
                               sum(p.reused for p in parts), sum(p.seconds for p in parts))


def vector_records(product: KnowledgeProduct, chunks: Sequence[Chunk], vectors: np.ndarray) -> list[VectorRecord]:
    """One record per chunk, with the metadata that search filters on."""
    return [VectorRecord(id=c.chunk_id, vector=v, metadata={
        "product_id": c.product_id, "domain": product.domain, "classification": product.classification,
        "document": c.document}) for c, v in zip(chunks, vectors, strict=True)]


def embedding_manifest(product: KnowledgeProduct, cv: str, embedder: Embedder, store: str,
                       done: EmbeddedVectors, store_s: float) -> dict[str, Any]:
    """What the embedding version of chunk version `cv` is: model, store, counts, libraries, timings."""
    return {
        "kind": "embedding-product-version",
        "product_id": product.id,
        "chunk_version": cv,
        "model_id": embedder.model_id,
        "model_name": embedder.name,
        "dim": embedder.dim,
        "normalize": embedder.normalize,
        "store": store,
        "n_vectors": len(done.vectors),
        "embedded": done.embedded,
        "reused": done.reused,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": library_versions(),
        "timings": {"embed_s": round(store_s + done.seconds, 3)},
    }
