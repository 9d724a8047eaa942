"""Calibrate the citation verifier's threshold (`MIN_SUPPORT`) on the golden set.

    python -m eval_sets.calibrate_citations --data-dir DIR [--json]

The sentences (with at least 3 content words) of each reference answer that rests on one quoted
source are scored against the chunk holding that quote (should be kept) and against a chunk of another
product (should be dropped). Prints both distributions and, per candidate threshold, the share kept
and dropped; the suggested value is the highest threshold that keeps every gold pair. (Whether to
answer at all is the answer model's decision: `python -m eval_sets.fit_answer_model`.)

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
from pathlib import Path
from typing import Any

from eval_sets.golden import GoldenQuestion, load_golden
from indexing.embedder import create_embedder
from indexing.releases import CURRENT, release_registry
from indexing.types import Chunk
from indexing.versions import version_store
from retrieval.answer.citations import cited_text
from retrieval.answer.sentences import collapse, sentence_spans
from retrieval.answer.support import MIN_SUPPORT, SupportScorer, content_words
from retrieval.settings import RetrievalSettings
from retrieval.types import RetrievedChunk

KEEP_GOLD_AT_LEAST = 1.0  # the suggested MIN_SUPPORT never drops a citation of a reference answer
SUPPORT_GRID = tuple(round(0.25 + 0.05 * i, 2) for i in range(8))  # 0.25 … 0.60


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
    release = release_registry(settings).get(CURRENT)
    versions = version_store(settings)
    return [c for entry in release.products.values() for c in versions.read_chunks(entry.chunk_version)]


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    qs = statistics.quantiles(values, n=20, method="inclusive") if len(values) > 1 else list(values) * 19
    return {"min": round(min(values), 3), "p5": round(qs[0], 3), "p25": round(qs[4], 3),
            "median": round(qs[9], 3), "p75": round(qs[14], 3), "p95": round(qs[18], 3),
            "max": round(max(values), 3), "n": len(values)}


def calibrate(scorer: SupportScorer, questions: Sequence[GoldenQuestion], chunks: Sequence[Chunk]) -> dict[str, Any]:
    """Every figure the report prints (see the module docstring)."""
    gold_pairs, other_pairs = support_pairs(questions, chunks)
    gold, other = scorer.support_many(gold_pairs), scorer.support_many(other_pairs)
    grid = [{"min_support": t, "kept_gold": round(sum(v >= t for v in gold) / len(gold), 4),
             "dropped_other": round(sum(v < t for v in other) / len(other), 4)} for t in SUPPORT_GRID]
    suggested = max((row["min_support"] for row in grid if row["kept_gold"] >= KEEP_GOLD_AT_LEAST),
                    default=None)
    return {
        "scorer": scorer.id,
        "citation_support": {"gold": _percentiles(gold), "other_product": _percentiles(other), "grid": grid,
                             "suggested_min_support": suggested, "current_default": MIN_SUPPORT},
    }


def print_report(report: dict[str, Any]) -> None:
    support = report["citation_support"]
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
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    settings = RetrievalSettings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    embedder = create_embedder(settings.embedder)
    embedder.warm_up()
    report = calibrate(SupportScorer(embedder), load_golden(), _release_chunks(settings))
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
