"""Fusion of ranked lists: reciprocal-rank fusion and a convex combination of standardised scores.

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


def convex_fusion(scored: Mapping[str, Sequence[tuple[str, float]]], *,
                  weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """Fuse named candidate lists of (id, raw score), best first, by a weighted sum of z-scores.

    Each list's scores are standardised over its own candidates (z = (s - mean) / std; all equal → 0)
    and shifted so the list's lowest candidate sits at 0; an id missing from a list gets 0 from it, as
    if it ranked just below the last candidate. Fused(d) = Σ_lists w_list · (z_list(d) - min z_list),
    never negative (the shift is the same for every id, so it changes no order, and later
    multiplicative decays stay meaningful). Unlike RRF this keeps how far
    apart the scores are (a clear dense winner stays ahead); on SciFact's train queries it beat every
    RRF setting (benchmarks/scifact.py). Ties are broken by id."""
    ids: dict[str, None] = {}
    normalised: dict[str, tuple[dict[str, float], float]] = {}
    for name, items in scored.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        if w == 0 or not items:
            continue
        values = [s for _, s in items]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        z = {doc_id: (s - mean) / std if std > 0 else 0.0 for doc_id, s in items}
        floor = min(z.values())
        normalised[name] = ({doc_id: v - floor for doc_id, v in z.items()}, w)
        ids.update(dict.fromkeys(z))
    fused = {doc_id: sum(w * z.get(doc_id, 0.0) for z, w in normalised.values()) for doc_id in ids}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
