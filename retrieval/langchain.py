"""The mesh searcher as a LangChain retriever: same access rules, Documents with full provenance."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from knowledge.model import Principal
from retrieval.searcher import MeshSearcher
from retrieval.types import CURRENT, RetrievedChunk, SearchRequest


def chunk_document(hit: RetrievedChunk) -> Document:
    """One retrieved chunk as a LangChain Document: its text, and in metadata the same record every other
    caller gets (retrieval.types.Hit, text aside) plus the breadcrumb the chunk was embedded with."""
    record = asdict(hit.hit())
    text = record.pop("text")
    metadata = record | {"heading_path": list(record["heading_path"]), "flags": list(record["flags"]),
                         "context": hit.chunk.context}
    return Document(page_content=text, id=hit.chunk_id, metadata=metadata)


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
