"""The ask pipeline's recording policy for callers without a key (MESHRAG_RECORD_ANONYMOUS), on a small
real mesh with the hash embedder: full records, digests only, or none."""

from __future__ import annotations

import pytest

from knowledge.errors import ConfigError
from knowledge.model import Principal
from retrieval.pipeline import QUESTION_DIGEST, Recorded, Retrieved
from retrieval.service import MeshService
from retrieval.types import SearchRequest
from tests.retrieval.conftest import SmallMesh

QUESTION = "What happens when the carrier misses the pickup?"


def ask_anonymously(small_mesh: SmallMesh, policy: str) -> tuple[MeshService, object]:
    service = MeshService(small_mesh.settings(record_anonymous=policy))
    service.warm_up()
    return service, service.ask(SearchRequest(query=QUESTION, principal=Principal.anonymous(), k=4))


def test_full_records_anonymous_answers_like_any_other(small_mesh: SmallMesh):
    service, result = ask_anonymously(small_mesh, "full")
    stored = service.provenance.get(result.request_id, admin=True)
    assert stored.question == QUESTION and stored.answer == result.answer.text
    assert service.replay(result.request_id).same


def test_refs_keeps_which_chunks_answered_but_no_text(small_mesh: SmallMesh):
    service, result = ask_anonymously(small_mesh, "refs")
    stored = service.provenance.get(result.request_id, admin=True)
    assert stored.question.startswith(QUESTION_DIGEST) and stored.answer.startswith(QUESTION_DIGEST)
    assert stored.chunk_ids == tuple(h.chunk_id for h in result.search.hits)
    assert all(c.text == "" for c in stored.citations) and stored.outcome == result.answer.outcome
    assert service.provenance.verify().ok
    with pytest.raises(ConfigError, match="cannot be replayed"):
        service.replay(result.request_id)


def test_off_records_nothing_for_anonymous_callers_only(small_mesh: SmallMesh):
    service, result = ask_anonymously(small_mesh, "off")
    assert result.record is None and result.answer.text
    assert service.provenance.verify().records == 0
    keyed = service.ask(SearchRequest(query=QUESTION, principal=Principal("ana", frozenset({"analyst"})), k=4))
    assert keyed.record is not None and service.provenance.verify().records == 1


def test_stages_yield_the_hits_before_the_recorded_answer(small_mesh: SmallMesh):
    service = MeshService(small_mesh.settings())
    service.warm_up()
    req = service.limits.search_request(Principal.anonymous(), QUESTION, k=3)
    events = list(service.pipeline.stages(req, "stage-test-1"))
    assert [type(e) for e in events] == [Retrieved, Recorded]
    assert events[1].result.record.request_id == "stage-test-1"
    assert events[0].search is events[1].result.search
