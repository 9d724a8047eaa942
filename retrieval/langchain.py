"""The mesh searcher as a LangChain retriever: same access rules, Documents with full provenance."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from knowledge.model import Principal
from retrieval.searcher import MeshSearcher
from retrieval.types import CURRENT, RetrievedChunk, SearchRequest


def chunk_document(hit: RetrievedChunk) -> Document:
    """One retrieved chunk as a LangChain Document: its text, and where it came from in metadata."""
    c = hit.chunk
    return Document(
        page_content=c.text,
        id=c.chunk_id,
        metadata={
            "chunk_id": c.chunk_id,
            "product_id": c.product_id,
            "product_version": hit.product_version,
            "release_id": hit.release_id,
            "chunk_version": hit.chunk_version,
            "embedding_version": hit.embedding_version,
            "domain": hit.domain,
            "classification": hit.classification,
            "document": c.document,
            "doc_revision": c.doc_revision,
            "start": c.start,
            "end": c.end,
            "heading_path": list(c.heading_path),
            "context": c.context,
            "flags": list(c.flags),
            "scores": hit.scores(),
        },
    )


class MeshRetriever(BaseRetriever):
    """Retrieves readable mesh chunks for `principal` through a warmed-up MeshSearcher."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: MeshSearcher
    principal: Principal = Field(default_factory=Principal.anonymous)
    k: int = Field(8, ge=1)
    release: str = CURRENT
    products: tuple[str, ...] | None = None
    domains: tuple[str, ...] | None = None
    classifications: tuple[str, ...] | None = None
    documents: tuple[str, ...] | None = None

    def request(self, query: str) -> SearchRequest:
        return SearchRequest(query=query, principal=self.principal, k=self.k, release=self.release,
                             products=self.products, domains=self.domains,
                             classifications=self.classifications, documents=self.documents)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        result = self.searcher.search(self.request(query))
        return [chunk_document(hit) for hit in result.hits]
