"""The searcher as a LangChain retriever."""

from __future__ import annotations

from langchain_core.documents import Document

from knowledge.model import Principal
from retrieval.langchain import MeshRetriever
from tests.retrieval.conftest import INTERNAL, RESTRICTED, SmallMesh


def test_retriever_returns_documents_with_provenance_metadata(small_mesh: SmallMesh):
    retriever = MeshRetriever(searcher=small_mesh.searcher(), principal=Principal("ana", frozenset({"analyst"})), k=3)
    docs = retriever.invoke("the carrier misses the pickup at the Reno warehouse")
    assert 1 <= len(docs) <= 3 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert "carrier" in top.page_content
    md = top.metadata
    assert md["product_id"] == INTERNAL and md["document"] == "carrier-pickup.md"
    assert md["release_id"].startswith("rel-") and md["product_version"] and md["chunk_version"].startswith("cv-")
    assert md["doc_revision"] and 0 <= md["start"] < md["end"] and md["heading_path"][0] == "Missed carrier pickup"
    assert md["scores"]["rank"] == 1 and md["scores"]["dense"] is not None and md["scores"]["keyword"] is not None
    assert top.id == md["chunk_id"]


def test_retriever_keeps_the_principal_and_filters(small_mesh: SmallMesh):
    anon = MeshRetriever(searcher=small_mesh.searcher(), k=50)
    assert {d.metadata["classification"] for d in anon.invoke("quokka midpoint carrier pickup owner")} == {"public"}
    scoped = MeshRetriever(searcher=small_mesh.searcher(), principal=Principal("p", frozenset({"people-partner"})),
                           products=(RESTRICTED,), k=50)
    assert {d.metadata["product_id"] for d in scoped.invoke("quokka midpoint")} == {RESTRICTED}
