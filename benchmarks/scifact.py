"""SciFact (BEIR) retrieval quality of meshrag's dense, keyword and hybrid search, beside published figures.

    python benchmarks/scifact.py [PATH] [--json OUT] [--cache-dir DIR] [--served-sweep]

PATH defaults to ../shared/benchmarks/scifact beside the repository (never copied into it). Everything
tuned (BM25 k1/b, fusion) is tuned on the 809 train queries by `eval_sets.beir.tune_fusion`; the table
reports the 300 test queries, scored with ranx. The first run encodes the corpus with MiniLM (minutes
on 2 cores); the vectors are cached under --cache-dir (default <MESHRAG_DATA_DIR or .meshrag>/beir).

Measured (test split, nDCG@10 / R@100; BM25 with English Snowball stems): dense 0.6451 / 0.9250 (= MTEB),
keyword 0.6857 / 0.9209, keyword-tuned (k1=1.2, b=0.5) 0.6827 / 0.9209, hybrid-rrf60 0.7171 / 0.9617,
hybrid 0.7341 / 0.9583 with the train-chosen convex combination 0.65·z(dense) + 0.35·z(BM25 k1=1.2
b=0.5) (train nDCG@10 0.7393). hybrid-served (the service's default fusion: z-scores over each top-50
list, equal weights) 0.7228 / 0.9503; RRF k=60 over the same lists 0.7146. Before stemming: keyword
0.6664 / 0.8859, hybrid-rrf60 0.6929, hybrid 0.7199, hybrid-served 0.7126.
`--served-sweep` prints the served fusion's train nDCG@10 per dense share: 0.40 is best on train (0.7336
vs 0.7288 for equal weights; 0.7261 on test), but it costs the golden set 0.022 nDCG@10
(eval_sets.retrieval_check), so the service keeps equal weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and benchmarks/indexing.py would shadow the
# `indexing` package: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

from eval_sets.beir import METHODS, default_cache_dir, run_beir, served_weight_sweep
from indexing.embedder import create_embedder
from knowledge.errors import ConfigError

DEFAULT_PATH = REPO.parent / "shared" / "benchmarks" / "scifact"

# Published test-split figures (nDCG@10 / Recall@100), as listed in shared/benchmarks/scifact/SOURCE.md.
REFERENCES: dict[str, str] = {
    "dense": "0.645 / 0.925  all-MiniLM-L6-v2 exact search (MTEB)",
    "keyword": "0.665 / —  BM25 (BEIR paper, Table 2); Anserini BM25 flat 0.679 / 0.925, multifield 0.665 / 0.908",
    "keyword-tuned": "0.679 / 0.925  Anserini BM25 flat (Porter stemming)",
    "hybrid-rrf60": "0.684 / 0.958  plain RRF of MiniLM + \\w+ BM25 on this corpus (SOURCE.md)",
    "hybrid": "0.713 / —  txtai hybrid (published BEIR notebook)",
    "hybrid-served": "0.713 / —  txtai hybrid (published BEIR notebook)",
}


def table(report_dict: dict) -> str:
    rows = [("method", "nDCG@10", "R@100", "reference nDCG@10 / R@100"), ("-" * 13, "-" * 7, "-" * 6, "-" * 26)]
    # "hybrid-served" is 13 characters: the first column is as wide as the longest method name.
    for method, result in report_dict["results"].items():
        rows.append((method, f"{result['ndcg_at_10']:.4f}", f"{result['recall_at_100']:.4f}", REFERENCES.get(method, "")))
    lines = [f"{a:<13} | {b:>7} | {c:>6} | {d}" for a, b, c, d in rows]
    lines.append("")
    for method, result in report_dict["results"].items():
        if result["detail"]:
            lines.append(f"{method}: {result['detail']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: {default_cache_dir()}")
    parser.add_argument("--served-sweep", action="store_true",
                        help="only print the served fusion's train nDCG@10 per dense share (how its weights are chosen)")
    args = parser.parse_args(argv)
    try:
        if args.served_sweep:
            sweep = served_weight_sweep(args.path, create_embedder("minilm"), cache_dir=args.cache_dir)
            print("served fusion, train queries: dense share → nDCG@10")
            print("\n".join(f"  {w:.2f}  {v:.4f}" for w, v in sweep.items()))
            return 0
        report = run_beir(args.path, "test", METHODS, create_embedder("minilm"), cache_dir=args.cache_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = report.as_dict()
    print(f"SciFact test split: {report.n_queries} queries over {report.n_docs} documents; "
          f"tuned on {report.fusion.tuned_on if report.fusion else '—'}")
    print(table(data))
    print(f"\ncorpus vectors {'from cache' if report.corpus_cached else 'encoded'}; timings {report.timings}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
