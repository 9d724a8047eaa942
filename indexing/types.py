"""Typed values that flow through the indexing pipeline and into the stores.

Spans: `start`/`end` index into `SourceDocument.text`. For Markdown and plain text that text *is* the
file's content (line endings normalised to "\\n"), so a span read from the source file returns the
chunk's text. For HTML, PDF, JSONL and CSV it is the text the loader extracts, which the loader
reproduces exactly from the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SourceDocument:
    """One source file of a product, loaded and normalised."""

    product_id: str
    path: str  # document id: posix path relative to the product's source root
    format: str  # md | txt | html | pdf | jsonl | csv
    text: str  # normalised text, Markdown-style headings ("# ", "## ") marking sections
    revision: str  # sha256 hex of the raw file bytes
    title: str = ""


@dataclass(frozen=True)
class PiiFinding:
    entity_type: str  # EMAIL_ADDRESS | PHONE_NUMBER | CREDIT_CARD | ...
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Chunk:
    """A piece of one document, ready to embed. `text` is what is embedded, stored and shown."""

    chunk_id: str  # content hash: product, document, revision, span, text, chunker version
    product_id: str
    document: str
    doc_revision: str
    text: str
    start: int
    end: int
    heading_path: tuple[str, ...]
    n_tokens: int  # cl100k_base tokens
    n_model_tokens: int  # the embedding model's own word pieces, special tokens included
    context: str = ""  # breadcrumb "Document title > Heading > Subheading", prepended when embedding/keyword-indexing
    flags: tuple[str, ...] = ()  # e.g. ("prompt_injection",)
    pii_redacted: int = 0  # findings replaced by placeholders inside this chunk

    @property
    def embedding_text(self) -> str:
        """What the embedder and keyword index see: the breadcrumb, then the text."""
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def text_hash(self) -> str:
        import hashlib

        # The embedding cache key: hash of exactly what is embedded.
        return hashlib.sha256(self.embedding_text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VectorRecord:
    """What a store keeps per vector: the chunk id, the vector and filterable metadata."""

    id: str
    vector: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)  # product_id, domain, classification, document


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search. `collections` is required: the embedding versions to search (the access
    filter is applied by choosing them and `products`); None in any other field means no restriction."""

    collections: tuple[str, ...]
    products: tuple[str, ...] | None = None
    domains: tuple[str, ...] | None = None
    classifications: tuple[str, ...] | None = None
    documents: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    collection: str
    score: float  # cosine similarity, higher is better
    metadata: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """Vectors grouped in collections (one per embedding product version)."""

    name: str

    def warm_up(self) -> None: ...

    def create_collection(self, collection: str, dim: int) -> None: ...

    def add(self, collection: str, records: Sequence[VectorRecord]) -> None: ...

    def search(self, query: np.ndarray, k: int, flt: SearchFilter) -> list[Hit]: ...

    def delete(self, collection: str, ids: Sequence[str]) -> int: ...

    def drop_collection(self, collection: str) -> None: ...

    def count(self, flt: SearchFilter) -> int: ...

    def collections(self) -> list[str]: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit vectors. `model_id` names model and weights so cache keys and version ids
    change when the model does."""

    name: str
    model_id: str
    dim: int
    max_seq_length: int
    normalize: bool

    def warm_up(self) -> None: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...
