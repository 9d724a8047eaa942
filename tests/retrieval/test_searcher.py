"""MeshSearcher on small meshes indexed by the real pipeline (hash embedder, FAISS files)."""

from __future__ import annotations

import time

import pytest
import yaml

from indexing.releases import ReleaseRegistry
from knowledge.errors import ConfigError, ProductNotFound, ReleaseNotFound
from knowledge.model import Principal
from retrieval.searcher import MeshSearcher
from retrieval.serving import MESH_RECHECK_S, ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import SearchRequest
from tests.retrieval.conftest import INTERNAL, PUBLIC, RESTRICTED, SmallMesh

ANALYST = Principal("ana", frozenset({"analyst"}))
PEOPLE = Principal("pat", frozenset({"people-partner"}))
ANON = Principal.anonymous()
EVERYTHING = 200  # a k larger than the mesh: every readable chunk the search can reach


def ask(searcher: MeshSearcher, query: str, principal: Principal = ANALYST, **kw):
    return searcher.search(SearchRequest(query=query, principal=principal, **kw))


def docs_of(result) -> list[str]:
    return [f"{h.product_id}:{h.chunk.document}" for h in result.hits]


def test_hits_carry_provenance_scores_params_and_timings(small_mesh: SmallMesh):
    searcher = small_mesh.searcher()
    result = ask(searcher, "Who answers reader questions for a published product?", k=3)
    assert result.release_id == ReleaseRegistry(small_mesh.data_dir).current_id()
    assert 1 <= len(result.hits) <= 3 and [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    top = result.hits[0]
    assert (top.product_id, top.chunk.document) == (PUBLIC, "publishing.md")
    assert top.product_version and top.chunk_version.startswith("cv-") and top.embedding_version.startswith("ev-")
    assert top.classification == "public" and top.domain == "platform"
    assert top.dense_rank == 1 and top.keyword_rank == 1 and top.rerank_score is None
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    p = result.params
    assert p["k"] == 3 and p["candidates"] == 50 and p["rrf_k"] == 60 and p["reranker"] is None
    assert p["weights"] == {"dense": 1.0, "keyword": 1.0} and p["embedder"] == "hash-384-v1"
    assert p["release"] == result.release_id and p["products_searched"] == [INTERNAL, PUBLIC]
    assert p["filters"] == {"products": None, "domains": None, "classifications": None, "documents": None}
    assert {"resolve", "embed", "dense", "keyword", "fuse", "total"} <= set(result.timings_ms)


def test_hybrid_at_least_as_good_as_each_list_on_an_obvious_case(small_mesh: SmallMesh):
    query = "the carrier misses the pickup at the Reno warehouse"
    ranks = {}
    for mode, weights in {"hybrid": (1.0, 1.0), "dense": (1.0, 0.0), "keyword": (0.0, 1.0)}.items():
        searcher = small_mesh.searcher(dense_weight=weights[0], keyword_weight=weights[1])
        docs = docs_of(ask(searcher, query, k=EVERYTHING))
        ranks[mode] = docs.index(f"{INTERNAL}:carrier-pickup.md") + 1
    assert ranks["hybrid"] == 1
    assert ranks["hybrid"] <= ranks["dense"] and ranks["hybrid"] <= ranks["keyword"]


def test_principal_without_the_role_never_gets_restricted_chunks(small_mesh: SmallMesh):
    searcher = small_mesh.searcher()
    query = "quokka band midpoint zebrafish bonus multiplier"
    for principal in (ANON, ANALYST, Principal("e", frozenset({"employee", "finance-analyst"}))):
        result = ask(searcher, query, principal, k=EVERYTHING)
        assert RESTRICTED not in {h.product_id for h in result.hits}
        assert RESTRICTED not in result.params["products_searched"]
        assert all(h.keyword_score is None for h in result.hits)  # the query's words exist nowhere readable
    result = ask(searcher, query, PEOPLE, k=3)
    assert result.hits[0].product_id == RESTRICTED and result.hits[0].keyword_score is not None
    anon = ask(searcher, "carrier pickup pay bands release", ANON, k=EVERYTHING)
    assert {h.classification for h in anon.hits} == {"public"}


def test_keyword_scores_of_a_product_ignore_other_products_statistics(small_mesh: SmallMesh):
    # BM25 statistics are per product: what anonymous sees must not depend on restricted text.
    searcher = small_mesh.searcher(dense_weight=0.0)
    query = "release midpoint owner"
    as_anon = {h.chunk_id: h.keyword_score for h in ask(searcher, query, ANON, k=EVERYTHING).hits}
    as_people = {h.chunk_id: h.keyword_score for h in ask(searcher, query, PEOPLE, k=EVERYTHING).hits}
    assert as_anon and all(as_people[cid] == score for cid, score in as_anon.items())


def test_filters_products_domains_classifications_documents(small_mesh: SmallMesh):
    searcher = small_mesh.searcher()
    query = "printer pickup owner release"
    assert {h.product_id for h in ask(searcher, query, products=(INTERNAL,), k=EVERYTHING).hits} == {INTERNAL}
    assert {h.product_id for h in ask(searcher, query, domains=("platform",), k=EVERYTHING).hits} == {PUBLIC}
    only_internal = ask(searcher, query, classifications=("internal",), k=EVERYTHING)
    assert {h.classification for h in only_internal.hits} == {"internal"}
    one_doc = ask(searcher, query, documents=("label-printer.md",), k=EVERYTHING)
    assert {h.chunk.document for h in one_doc.hits} == {"label-printer.md"}
    nothing = ask(searcher, query, classifications=("restricted",), k=EVERYTHING)
    assert nothing.hits == () and nothing.params["products_searched"] == []


def test_unknown_product_filter_does_not_reveal_restricted_ids(small_mesh: SmallMesh):
    searcher = small_mesh.searcher()
    with pytest.raises(ProductNotFound) as exc:
        ask(searcher, "bonus", ANALYST, products=(RESTRICTED,))
    message = str(exc.value).replace(repr(RESTRICTED), "")
    assert RESTRICTED not in message and "people" not in message and PUBLIC in message


def test_release_pinning_and_alias_moves_without_restart(small_mesh: SmallMesh):
    searcher = small_mesh.searcher()
    registry = ReleaseRegistry(small_mesh.data_dir)
    old = registry.current_id()
    query = "immutable set of embedding versions"
    assert f"{PUBLIC}:glossary.md" in docs_of(ask(searcher, query, k=EVERYTHING))

    small_mesh.doc(PUBLIC, "glossary.md").unlink()
    report = small_mesh.index()
    assert report.published and report.release_id != old

    current = ask(searcher, query, k=EVERYTHING)  # same searcher: `current` is re-resolved
    assert current.release_id == report.release_id
    assert f"{PUBLIC}:glossary.md" not in docs_of(current)
    pinned = ask(searcher, query, k=EVERYTHING, release=old)
    assert pinned.release_id == old and f"{PUBLIC}:glossary.md" in docs_of(pinned)

    registry.rollback()
    assert ask(searcher, query, k=3).release_id == old
    with pytest.raises(ReleaseNotFound):
        ask(searcher, query, release="rel-0000000000000000")


def test_contract_change_takes_effect_without_restart(small_mesh: SmallMesh):
    searcher = small_mesh.searcher()
    assert INTERNAL in ask(searcher, "carrier pickup", ANALYST).params["products_searched"]
    path = small_mesh.root / "ops" / "runbooks" / "contract.yaml"
    contract = yaml.safe_load(path.read_text())
    contract["roles"] = [{"role": "employee", "access": "read"}]
    path.write_text(yaml.safe_dump(contract, sort_keys=False))
    time.sleep(MESH_RECHECK_S)  # the catalog is re-checked at most this often
    result = ask(searcher, "carrier pickup", ANALYST, k=EVERYTHING)
    assert INTERNAL not in result.params["products_searched"]
    assert INTERNAL not in {h.product_id for h in result.hits}


def test_same_document_decay_spreads_the_top_over_documents(small_mesh: SmallMesh):
    sections = "".join(f"## Step {i}\n\nDescale the kettle with vinegar, step {i} of four.\n\n" for i in range(1, 5))
    small_mesh.doc(PUBLIC, "descaling.md").write_text(f"# Descaling\n\n{sections}")
    small_mesh.doc(PUBLIC, "care.md").write_text("# Care\n\nDescale the kettle now and then.\n")
    small_mesh.index()
    query = "descale the kettle with vinegar"
    flat = docs_of(ask(small_mesh.searcher(same_document_decay=1.0), query, ANON, k=2))
    spread = docs_of(ask(small_mesh.searcher(same_document_decay=0.5), query, ANON, k=2))
    assert flat == [f"{PUBLIC}:descaling.md"] * 2
    assert spread == [f"{PUBLIC}:descaling.md", f"{PUBLIC}:care.md"]


def test_bad_requests_and_lifecycle(small_mesh: SmallMesh):
    cold = MeshSearcher(ServingContext(small_mesh.settings()))
    with pytest.raises(RuntimeError, match="warm_up"):
        ask(cold, "anything")
    searcher = small_mesh.searcher()
    with pytest.raises(ConfigError, match="empty"):
        ask(searcher, "   ")
    with pytest.raises(ConfigError, match="k must be"):
        ask(searcher, "owner", k=0)
    with pytest.raises(ConfigError, match="no reranker"):
        ask(searcher, "owner", rerank=True)


def test_release_of_another_embedder_is_refused(small_mesh: SmallMesh):
    settings = RetrievalSettings(data_dir=small_mesh.data_dir, mesh_roots=[small_mesh.root], embedder="hash")
    searcher = MeshSearcher(ServingContext(settings, embedder=_hash(dim=64)))
    searcher.warm_up()
    with pytest.raises(ConfigError, match="MESHRAG_EMBEDDER"):
        ask(searcher, "owner")


def test_no_release_yet(tmp_path, small_mesh: SmallMesh):
    settings = RetrievalSettings(data_dir=tmp_path / "empty", mesh_roots=[small_mesh.root], embedder="hash")
    searcher = MeshSearcher(ServingContext(settings))
    searcher.warm_up()
    with pytest.raises(ReleaseNotFound, match="meshrag index"):
        ask(searcher, "owner")


def _hash(dim: int):
    from indexing.embedder import create_embedder

    return create_embedder("hash", dim=dim)
