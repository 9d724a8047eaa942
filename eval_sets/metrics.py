"""The arithmetic of an evaluation: document-level retrieval metrics (by ranx), rates and percentiles.

Retrieval is scored per `product:document` (the unit the golden set's gold evidence names): a
document's rank is the rank of its first chunk among the hits, and the ranx run gives it the score
1/rank so ranx orders documents exactly as the searcher did. Relevance is binary (every gold document
counts 1), so nDCG uses gains of 1 and the ideal ranking puts every gold document first. `mrr` is the
reciprocal rank of the first gold document within the hits (k=10 chunks: MRR@10 in effect).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from retrieval.types import RetrievedChunk

RETRIEVAL_METRICS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")


def document_id(product_id: str, document: str) -> str:
    return f"{product_id}:{document}"


def ranked_documents(hits: Sequence[RetrievedChunk]) -> tuple[str, ...]:
    """`product:document` ids of the hits in order of their first chunk."""
    return tuple(dict.fromkeys(document_id(h.chunk.product_id, h.chunk.document) for h in hits))


def retrieval_scores(gold: Mapping[str, Iterable[str]], ranked: Mapping[str, Sequence[str]]
                     ) -> dict[str, dict[str, float]]:
    """Per question id: recall@1/5/10, MRR and nDCG@10 of its ranked documents against its gold
    documents, computed by ranx. Questions without gold documents are left out."""
    from ranx import Qrels, Run, evaluate

    qrels = {qid: {doc: 1 for doc in docs} for qid, docs in gold.items() if docs}
    if not qrels:
        return {}
    run = Run({qid: {doc: 1.0 / rank for rank, doc in enumerate(ranked.get(qid, ()), start=1)}
               for qid in qrels})
    with warnings.catch_warnings():
        # ranx's numba kernels warn about a uint64 → int64 cast of ranks; ranks here are ≤ 10.
        warnings.simplefilter("ignore")
        evaluate(Qrels(qrels), run, list(RETRIEVAL_METRICS), return_mean=False, make_comparable=True)
    return {qid: {m: float(run.scores[m][qid]) for m in RETRIEVAL_METRICS} for qid in qrels}


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that were measured (None and NaN skipped); None when there are none."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(kept) if kept else None


def rate(flags: Sequence[bool]) -> float | None:
    """Share of True; None for an empty sequence (nothing to measure is not a perfect score)."""
    return sum(flags) / len(flags) if flags else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linearly interpolated between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counted half."""
    if not positive or not negative:
        return None
    pos, neg = np.asarray(positive), np.asarray(negative)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
