"""Reciprocal-rank fusion of ranked lists.

RRF(d) = Σ_lists w_list / (k + rank_list(d)), ranks 1-based; documents missing from a list get nothing
from it. k = 60 is the constant of Cormack, Clarke & Büttcher (SIGIR 2009); the weights let one list
count more (tuned on SciFact's train queries, see benchmarks/scifact.py). Ties are broken by id so the
order is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

RRF_K = 60


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[str]], *, k: int = RRF_K,
                           weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """Fuse named rankings (best first) into one list of (id, fused score), best first."""
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        if w == 0:
            continue
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
