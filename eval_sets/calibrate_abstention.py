"""Calibrate the answerers' two thresholds on the golden set.

    python -m eval_sets.calibrate_abstention --data-dir DIR [--k 8] [--json]

1. Abstention (`ABSTAIN_THRESHOLD`): every golden question is searched with its own roles against the
   `current` release (top k, as the ask path does) and scored with `SupportScorer.question_support`.
   Answerable questions (every kind but `unanswerable`) should score at or above the threshold,
   unanswerable ones below. Prints both distributions, the threshold maximising balanced accuracy
   (ties: the lowest, i.e. the fewest false abstentions) and the false-abstention rate at it, and the
   same under the constraint of at most `MAX_FALSE_ABSTENTION` false abstentions (the default's rule).
2. Citation support (`MIN_SUPPORT`): the sentences (with at least 3 content words) of each reference
   answer that rests on one quoted source, against the chunk holding that quote (should be kept) and
   against a chunk of another product (should be dropped). Prints both distributions and, per
   candidate threshold, the share kept and dropped; the suggested value is the highest threshold
   that keeps every gold pair.

Settings not given on the command line come from MESHRAG_* / the defaults.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from eval_sets.golden import GoldenQuestion, load_golden
from indexing.releases import CURRENT, ReleaseRegistry
from indexing.types import Chunk
from indexing.versions import VersionStore
from knowledge.model import Principal
from retrieval.answer.citations import cited_text
from retrieval.answer.sentences import collapse, sentence_spans
from retrieval.answer.support import ABSTAIN_THRESHOLD, MIN_SUPPORT, SupportScorer, content_words
from retrieval.searcher import MeshSearcher
from retrieval.settings import RetrievalSettings
from retrieval.types import RetrievedChunk, SearchRequest

KEEP_GOLD_AT_LEAST = 1.0  # the suggested MIN_SUPPORT never drops a citation of a reference answer
# With two dozen unanswerable questions one of them moves balanced accuracy by two points, so the
# unconstrained optimum may buy that point with many refused answerable questions; the default is
# chosen among thresholds that refuse at most this share of answerable ones.
MAX_FALSE_ABSTENTION = 0.10
SUPPORT_GRID = tuple(round(0.25 + 0.05 * i, 2) for i in range(8))  # 0.25 … 0.60


@dataclass(frozen=True)
class ScoredQuestion:
    id: str
    kind: str
    answerable: bool
    support: float


@dataclass(frozen=True)
class Threshold:
    threshold: float
    balanced_accuracy: float
    false_abstention_rate: float  # answerable questions that would be abstained on
    true_abstention_rate: float  # unanswerable questions that would be abstained on


def question_supports(searcher: MeshSearcher, scorer: SupportScorer, questions: Sequence[GoldenQuestion],
                      k: int = 8) -> list[ScoredQuestion]:
    """question_support of each question over what the searcher returns for it (its own roles)."""
    scored = []
    for q in questions:
        principal = Principal(id=f"golden:{q.id}", roles=frozenset(q.roles))
        hits = searcher.search(SearchRequest(query=q.question, principal=principal, k=k)).hits
        scored.append(ScoredQuestion(q.id, q.kind, q.answerable, scorer.question_support(q.question, hits)))
    return scored


def at_threshold(scored: Sequence[ScoredQuestion], threshold: float) -> Threshold:
    answerable = [s.support for s in scored if s.answerable]
    unanswerable = [s.support for s in scored if not s.answerable]
    far = sum(v < threshold for v in answerable) / len(answerable)
    tar = sum(v < threshold for v in unanswerable) / len(unanswerable)
    return Threshold(round(threshold, 4), round((1 - far + tar) / 2, 4), round(far, 4), round(tar, 4))


def best_threshold(scored: Sequence[ScoredQuestion], max_false_abstention: float = 1.0) -> Threshold:
    """The threshold (midway between neighbouring scores) maximising balanced accuracy, among those
    abstaining on at most `max_false_abstention` of the answerable questions."""
    if not any(s.answerable for s in scored) or all(s.answerable for s in scored):
        raise ValueError("calibration needs both answerable and unanswerable questions")
    values = sorted({s.support for s in scored})
    candidates = [(a + b) / 2 for a, b in pairwise(values)] or values
    results = [at_threshold(scored, t) for t in candidates]
    allowed = [r for r in results if r.false_abstention_rate <= max_false_abstention]
    return max(allowed, key=lambda r: (r.balanced_accuracy, -r.false_abstention_rate, -r.threshold))


def support_pairs(questions: Sequence[GoldenQuestion], chunks: Sequence[Chunk], seed: int = 0
                  ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(reference sentence, gold chunk) pairs and (same sentence, a chunk of another product) pairs."""
    rng = random.Random(seed)
    by_document: dict[tuple[str, str], list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_document[(chunk.product_id, chunk.document)].append(chunk)
    gold_pairs, other_pairs = [], []
    for q in questions:
        # Only single-evidence answers: a sentence of a two-source answer may rest on the other source.
        if len(q.gold) != 1 or not q.gold[0].quote:
            continue
        evidence = q.gold[0]
        quote = collapse(evidence.quote or "")
        holders = [c for c in by_document[(evidence.product, evidence.document)] if quote in collapse(c.text)]
        if not holders:
            continue
        others = [c for c in chunks if c.product_id != evidence.product]
        for a, b in sentence_spans(q.answer):
            sentence = q.answer[a:b]
            if len(content_words(sentence)) >= 3:
                gold_pairs.append((sentence, _cited(holders[0])))
                other_pairs.append((sentence, _cited(rng.choice(others))))
    return gold_pairs, other_pairs


def _cited(chunk: Chunk) -> str:
    return cited_text(RetrievedChunk(chunk=chunk, release_id="", product_version="", chunk_version="",
                                     embedding_version="", domain="", classification="", score=0.0, rank=1))


def _release_chunks(settings: RetrievalSettings) -> list[Chunk]:
    data_dir = settings.resolved_data_dir()
    release = ReleaseRegistry(data_dir).get(CURRENT)
    versions = VersionStore(data_dir)
    return [c for entry in release.products.values() for c in versions.read_chunks(entry.chunk_version)]


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else list(values) * 19
    return {"min": round(min(values), 3), "p5": round(qs[0], 3), "p25": round(qs[4], 3),
            "median": round(qs[9], 3), "p75": round(qs[14], 3), "p95": round(qs[18], 3),
            "max": round(max(values), 3), "n": len(values)}


def _histogram(values: Sequence[float], lo: float = 0.2, hi: float = 0.9,
               bins: int = 14) -> list[dict[str, Any]]:
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    return [{"from": round(lo + i * width, 3), "to": round(lo + (i + 1) * width, 3), "n": c}
            for i, c in enumerate(counts)]


def calibrate(searcher: MeshSearcher, scorer: SupportScorer, questions: Sequence[GoldenQuestion],
              chunks: Sequence[Chunk], k: int = 8) -> dict[str, Any]:
    """Every figure the report prints (see the module docstring)."""
    scored = question_supports(searcher, scorer, questions, k=k)
    chosen = best_threshold(scored, MAX_FALSE_ABSTENTION)
    by_kind = {}
    for kind in sorted({s.kind for s in scored}):
        group = [s for s in scored if s.kind == kind]
        by_kind[kind] = round(sum(s.support < chosen.threshold for s in group) / len(group), 4)

    gold_pairs, other_pairs = support_pairs(questions, chunks)
    gold, other = scorer.support_many(gold_pairs), scorer.support_many(other_pairs)
    grid = [{"min_support": t, "kept_gold": round(sum(v >= t for v in gold) / len(gold), 4),
             "dropped_other": round(sum(v < t for v in other) / len(other), 4)} for t in SUPPORT_GRID]
    suggested = max((row["min_support"] for row in grid if row["kept_gold"] >= KEEP_GOLD_AT_LEAST),
                    default=None)
    return {
        "k": k, "scorer": scorer.id,
        "abstention": {
            "answerable": _percentiles([s.support for s in scored if s.answerable]),
            "unanswerable": _percentiles([s.support for s in scored if not s.answerable]),
            "histograms": {label: _histogram([s.support for s in scored if s.answerable == want])
                           for label, want in (("answerable", True), ("unanswerable", False))},
            "best": asdict(best_threshold(scored)),
            "false_abstention_cap": MAX_FALSE_ABSTENTION,
            "best_within_cap": asdict(chosen),
            "abstention_rate_by_kind_at_best_within_cap": by_kind,
            "current_default": asdict(at_threshold(scored, ABSTAIN_THRESHOLD)),
        },
        "citation_support": {"gold": _percentiles(gold), "other_product": _percentiles(other), "grid": grid,
                             "suggested_min_support": suggested, "current_default": MIN_SUPPORT},
    }


def _describe(t: dict[str, float]) -> str:
    return (f"{t['threshold']:.4f}: balanced accuracy {t['balanced_accuracy']:.3f}, false abstentions "
            f"{t['false_abstention_rate']:.1%}, unanswerable abstained {t['true_abstention_rate']:.1%}")


def print_report(report: dict[str, Any]) -> None:
    abstention, support = report["abstention"], report["citation_support"]
    print(f"question_support over the top {report['k']} hits ({report['scorer']})")
    for label in ("answerable", "unanswerable"):
        print(f"  {label}: {abstention[label]}")
        for row in abstention["histograms"][label]:
            print(f"    {row['from']:.2f}-{row['to']:.2f} {'#' * row['n']} {row['n']}")
    print(f"  best threshold {_describe(abstention['best'])}")
    print(f"  best with at most {abstention['false_abstention_cap']:.0%} false abstentions "
          f"{_describe(abstention['best_within_cap'])}")
    print(f"  abstention rate by kind at it: {abstention['abstention_rate_by_kind_at_best_within_cap']}")
    print(f"  current ABSTAIN_THRESHOLD {_describe(abstention['current_default'])}")
    print("citation support of reference-answer sentences")
    print(f"  against their gold chunk: {support['gold']}")
    print(f"  against another product's chunk: {support['other_product']}")
    for row in support["grid"]:
        print(f"  min_support {row['min_support']:.2f}: kept gold {row['kept_gold']:.1%}, "
              f"dropped other {row['dropped_other']:.1%}")
    print(f"  suggested MIN_SUPPORT (highest keeping >= {KEEP_GOLD_AT_LEAST:.0%} of gold pairs): "
          f"{support['suggested_min_support']}; current {support['current_default']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="index data directory (default: MESHRAG_DATA_DIR)")
    parser.add_argument("--k", type=int, default=8, help="hits per question, as the ask path retrieves")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    settings = RetrievalSettings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    searcher = MeshSearcher(settings)
    searcher.warm_up()
    scorer = SupportScorer(searcher.embedder)  # the searcher's warm embedder: one model load
    report = calibrate(searcher, scorer, load_golden(), _release_chunks(settings), k=args.k)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
