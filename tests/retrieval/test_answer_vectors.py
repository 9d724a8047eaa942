"""Answer passages embedded ahead (MeshService.prepare_answer_vectors): once per release, persisted, and
afterwards answering from any chunk of the release finds every passage it compares already embedded."""

from __future__ import annotations

import sqlite3

import pytest

from knowledge.model import Principal
from retrieval.service import MeshService
from retrieval.types import SearchRequest
from tests.retrieval.conftest import SmallMesh

ANALYST = Principal(id="ana", roles=frozenset({"analyst", "employee"}))


def test_prepare_embeds_every_passage_once_and_persists_them(small_mesh: SmallMesh):
    service = MeshService(small_mesh.settings())
    service.warm_up()
    first = service.prepare_answer_vectors()
    assert first["passages"] > 0 and first["embedded"] == first["passages"]
    assert service.prepare_answer_vectors()["embedded"] == 0

    # A new process (fresh in-memory caches) finds them in the persistent store.
    again = MeshService(small_mesh.settings())
    again.warm_up()
    assert again.prepare_answer_vectors()["embedded"] == 0
    scorer = again.answerer.scorer
    result = again.search(SearchRequest(query="What happens when the carrier misses the pickup?",
                                        principal=ANALYST, k=4))
    assert result.hits
    needed = [t for hit in result.hits for t in again.answerer.passages(hit.chunk)]
    assert scorer.missing(needed) == []
    answer = again.ask(SearchRequest(query="What happens when the carrier misses the pickup?",
                                     principal=ANALYST, k=4)).answer
    assert not answer.abstained and "rebook" in answer.text


def test_precomputed_vectors_equal_vectors_computed_on_demand(small_mesh: SmallMesh):
    service = MeshService(small_mesh.settings())
    service.warm_up()
    service.prepare_answer_vectors()
    fresh = MeshService(small_mesh.settings())
    fresh.warm_up()
    chunk = next(iter(fresh.context.chunks_of(next(iter(fresh.context.release().products.values())).chunk_version)))
    texts = fresh.answerer.passages(chunk)
    stored = fresh.answerer.scorer.embed(texts)
    direct = fresh.context.embedder.embed_documents(texts)
    assert stored == pytest.approx(direct, abs=1e-6)


def test_prepared_passages_are_held_in_memory_so_answers_read_no_store(small_mesh: SmallMesh):
    first = MeshService(small_mesh.settings())
    first.warm_up()
    first.prepare_answer_vectors()
    service = MeshService(small_mesh.settings())  # a later start: everything is in the persistent cache
    service.warm_up()
    report = service.prepare_answer_vectors()
    assert report["embedded"] == 0 and report["in_memory"] is True
    # Wipe the persistent cache underneath the running service: every passage is still at hand.
    with sqlite3.connect(small_mesh.settings().resolved_cache_dir() / "embeddings.sqlite") as conn:
        assert conn.execute("DELETE FROM embeddings").rowcount >= report["passages"]
    passages = [t for entry in service.context.release().products.values()
                for chunk in service.context.chunks_of(entry.chunk_version)
                for t in service.answerer.passages(chunk)]
    assert service.answerer.scorer.missing(passages) == []
