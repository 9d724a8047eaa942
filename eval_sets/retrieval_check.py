"""Document-level retrieval quality of the searcher on the golden set.

    python -m eval_sets.retrieval_check --data-dir DIR [--candidates N] [--rrf-k N]
        [--dense-weight W] [--keyword-weight W] [--same-document-decay D] [--keep-question-words]
        [--misses] [--json]

Every answerable golden question with gold documents is asked with its own roles against the `current` release. A
document (`product:document`, the `_catalog` card included) is ranked where its first chunk is in the
top 10 chunks; recall@n is the share of a question's gold documents ranked ≤ n, nDCG@10 uses binary
gains (ideal: the gold documents at the top). Reported overall and per question kind, with query
latency. Settings not given on the command line come from MESHRAG_* / the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from eval_sets.golden import GoldenQuestion, load_golden
from knowledge.model import Principal
from retrieval.searcher import MeshSearcher
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import SearchRequest, SearchResult

DEPTH = 10
TUNABLES = {"candidates", "fusion", "rrf_k", "dense_weight", "keyword_weight", "same_document_decay",
            "strip_question_words", "reranker_model"}
CUTOFFS = (1, 5, 10)


@dataclass(frozen=True)
class QuestionScore:
    question: GoldenQuestion
    ranks: dict[str, int | None]  # gold document → rank of its first chunk (None: not in the top DEPTH)
    ranked: tuple[str, ...]  # the documents of the top chunks, first occurrence order
    ms: float

    def recall(self, n: int) -> float:
        return sum(1 for r in self.ranks.values() if r is not None and r <= n) / len(self.ranks)

    def ndcg(self, n: int = DEPTH) -> float:
        dcg = sum(1 / math.log2(r + 1) for r in self.ranks.values() if r is not None and r <= n)
        ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(self.ranks), n) + 1))
        return dcg / ideal


def document_ranks(result: SearchResult) -> dict[str, int]:
    """`product:document` → 1-based rank of its first chunk."""
    ranks: dict[str, int] = {}
    for hit in result.hits:
        ranks.setdefault(f"{hit.chunk.product_id}:{hit.chunk.document}", hit.rank)
    return ranks


def score_question(searcher: MeshSearcher, q: GoldenQuestion) -> QuestionScore:
    principal = Principal(id=f"golden:{q.id}", roles=frozenset(q.roles))
    t0 = time.perf_counter()
    result = searcher.search(SearchRequest(query=q.question, principal=principal, k=DEPTH))
    ms = (time.perf_counter() - t0) * 1000
    ranks = document_ranks(result)
    return QuestionScore(q, {g: ranks.get(g) for g in sorted(q.gold_documents())}, tuple(ranks), ms)


def summarise(scores: list[QuestionScore]) -> dict[str, float]:
    out: dict[str, float] = {"n": len(scores)}
    for n in CUTOFFS:
        out[f"recall@{n}"] = round(statistics.fmean(s.recall(n) for s in scores), 4)
    out[f"ndcg@{DEPTH}"] = round(statistics.fmean(s.ndcg() for s in scores), 4)
    return out


Table = dict[str, dict[str, float]]


def evaluate(searcher: MeshSearcher, questions: list[GoldenQuestion] | None = None
             ) -> tuple[Table, list[QuestionScore], dict[str, float]]:
    """Metrics overall and per kind, per-question scores and latency, for a warmed-up searcher."""
    questions = [q for q in (questions if questions is not None else load_golden()) if q.answerable and q.gold]
    # One throw-away query so the first measured one does not pay for lazy initialisation in torch.
    searcher.search(SearchRequest(query="warm up", principal=Principal.anonymous(), k=1))
    scores = [score_question(searcher, q) for q in questions]
    by_kind: dict[str, list[QuestionScore]] = defaultdict(list)
    for s in scores:
        by_kind[s.question.kind].append(s)
    table = {"overall": summarise(scores)}
    table |= {kind: summarise(group) for kind, group in sorted(by_kind.items())}
    latencies = sorted(s.ms for s in scores)
    latency = {"mean_ms": round(statistics.fmean(latencies), 2),
               "p50_ms": round(latencies[len(latencies) // 2], 2),
               "p95_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 2)}
    return table, scores, latency


def run(settings: RetrievalSettings) -> tuple[Table, list[QuestionScore], dict[str, float]]:
    searcher = MeshSearcher(ServingContext(settings))
    searcher.warm_up()
    return evaluate(searcher)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval_sets.retrieval_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--candidates", type=int)
    parser.add_argument("--rrf-k", type=int)
    parser.add_argument("--dense-weight", type=float)
    parser.add_argument("--keyword-weight", type=float)
    parser.add_argument("--same-document-decay", type=float)
    parser.add_argument("--keep-question-words", action="store_true",
                        help="Do not strip question words from the keyword query.")
    parser.add_argument("--misses", action="store_true",
                        help="List questions whose gold is not in the top 5.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args(argv)
    overrides = {"candidates": args.candidates, "rrf_k": args.rrf_k, "dense_weight": args.dense_weight,
                 "keyword_weight": args.keyword_weight, "same_document_decay": args.same_document_decay,
                 "strip_question_words": False if args.keep_question_words else None}
    settings = RetrievalSettings(data_dir=args.data_dir,
                                 **{k: v for k, v in overrides.items() if v is not None})
    table, scores, latency = run(settings)
    misses = [{"id": s.question.id, "kind": s.question.kind, "question": s.question.question,
               "gold": s.ranks, "top": list(s.ranked[:5])} for s in scores if s.recall(5) < 1]
    if args.json:
        json.dump({"settings": settings.model_dump(include=TUNABLES), "metrics": table, "latency": latency,
                   "misses": misses}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(" ".join(f"{k}={v}" for k, v in settings.model_dump(include=TUNABLES).items()))
    header = f"{'kind':<14}{'n':>5}" + "".join(f"{f'recall@{n}':>11}" for n in CUTOFFS) + f"{'nDCG@10':>10}"
    print(header)
    for kind, row in table.items():
        print(f"{kind:<14}{int(row['n']):>5}" + "".join(f"{row[f'recall@{n}']:>11.3f}" for n in CUTOFFS)
              + f"{row['ndcg@10']:>10.3f}")
    print(f"latency per query: mean {latency['mean_ms']} ms, p50 {latency['p50_ms']} ms, "
          f"p95 {latency['p95_ms']} ms")
    if args.misses:
        for m in misses:
            print(f"- {m['id']} [{m['kind']}] {m['question']}\n    gold {m['gold']}\n    top  {m['top']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
