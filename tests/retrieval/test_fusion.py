"""Fusion of the dense and keyword lists (retrieval/fusion.py) and the searcher's `fusion` setting."""

from __future__ import annotations

import pytest

from knowledge.model import Principal
from retrieval.fusion import convex_fusion, reciprocal_rank_fusion
from retrieval.types import SearchRequest
from tests.retrieval.conftest import INTERNAL, SmallMesh

ANALYST = Principal(id="ana", roles=frozenset({"analyst"}))


def test_convex_keeps_a_clear_score_gap_that_rrf_flattens():
    # "a" is far ahead in the dense list and absent from the keyword list; the others are close to each
    # other in both. RRF only sees ranks and puts "a" last; the z-scores see that "a" stands apart.
    dense = [("a", 0.92), ("b", 0.41), ("c", 0.40), ("d", 0.39), ("e", 0.38), ("f", 0.37), ("g", 0.36)]
    keyword = [("b", 7.1), ("c", 6.9), ("d", 6.0), ("e", 5.5), ("f", 5.0), ("g", 4.0)]
    rrf = [i for i, _ in reciprocal_rank_fusion({"dense": [i for i, _ in dense],
                                                 "keyword": [i for i, _ in keyword]})]
    convex = [i for i, _ in convex_fusion({"dense": dense, "keyword": keyword})]
    assert rrf[-1] == "a"
    assert convex[:2] == ["b", "a"]


def test_convex_scores_are_non_negative_missing_ids_get_nothing_and_ties_go_by_id():
    fused = dict(convex_fusion({"dense": [("x", 0.9), ("y", 0.5)], "keyword": [("z", 3.0), ("y", 1.0)]}))
    assert min(fused.values()) >= 0.0
    # x is first in dense and missing from keyword: exactly its dense share (z-shift 2.0 of two values).
    assert fused["x"] == pytest.approx(2.0)
    assert fused["z"] == pytest.approx(2.0)
    assert [i for i, _ in convex_fusion({"dense": [("x", 0.9), ("y", 0.5)],
                                          "keyword": [("z", 3.0), ("y", 1.0)]})] == ["x", "z", "y"]


def test_convex_weights_and_degenerate_lists():
    assert convex_fusion({"dense": [("a", 1.0), ("b", 0.0)], "keyword": [("b", 5.0), ("a", 1.0)]},
                         weights={"dense": 1.0, "keyword": 0.0})[0][0] == "a"
    assert convex_fusion({"dense": [("a", 0.5), ("b", 0.5)], "keyword": []}) == [("a", 0.0), ("b", 0.0)]
    assert convex_fusion({"dense": [], "keyword": []}) == []


@pytest.mark.parametrize("fusion", ["rrf", "convex"])
def test_both_fusions_serve_the_same_access_rules(small_mesh: SmallMesh, fusion: str):
    searcher = small_mesh.searcher(fusion=fusion)
    result = searcher.search(SearchRequest(query="label printer jams on the conveyor", principal=ANALYST, k=3))
    assert result.params["fusion"] == fusion
    assert result.hits and result.hits[0].chunk.document == "label-printer.md"
    assert {h.chunk.product_id for h in result.hits} <= {INTERNAL, "platform.handbook"}
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
