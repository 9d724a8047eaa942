"""SciFact (BEIR) retrieval quality of meshrag's dense, keyword and hybrid search, beside published figures.

    python benchmarks/scifact.py [PATH] [--json OUT] [--cache-dir DIR] [--served-sweep]
                                 [--methods M,...] [--store faiss,pgvector [--dsn DSN] [--pg-schema S]]

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

`--store faiss,pgvector` adds a "hybrid-served [store]" row per store: the served fusion as above, but with
each query's dense top 50 coming from that VectorStore (the corpus vectors added to one collection, searched
through `VectorStore.search` as the service does), so embedded mode (FAISS) and shared mode (pgvector) can be
compared; the BM25 list is the same `KeywordIndex` in both (a release's keyword index is one artefact,
whichever mode serves it). Issue #16 wants shared within 0.005 of embedded: the difference is printed. The
pgvector store is `--dsn` (default: an embedded server started in a temporary folder), schema `--pg-schema`
(default meshrag_beir; the collection is dropped afterwards). Under the store's exact-scan threshold
(10,000 vectors; SciFact has 5,183) pgvector searches exactly, above it through its HNSW index.
`--methods hybrid-served --store faiss,pgvector` skips the train-split tuning the other rows need.
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

from eval_sets.beir import (
    METHODS,
    SERVED_CANDIDATES,
    BeirEvaluation,
    default_cache_dir,
    load_beir,
    ranx_scores,
    run_beir,
    served_weight_sweep,
    served_weights,
)
from indexing.embedder import create_embedder
from knowledge.errors import MeshragError

STORE_TOLERANCE = 0.005  # issue #16: shared mode's hybrid-served nDCG@10 within this of embedded mode's

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


def served_through_store(ev: BeirEvaluation, split: str, kind: str, dsn: str | None, schema: str,
                         work: Path) -> dict:
    """nDCG@10 / R@100 on `split` of the served fusion whose dense lists come from a `kind` VectorStore."""
    import time

    import numpy as np

    from indexing.stores.factory import create_store
    from indexing.types import SearchFilter, VectorRecord
    from retrieval.fusion import convex_fusion

    t0 = time.perf_counter()
    qrels = ev.dataset.split(split)
    query_ids = sorted(qrels)
    store = create_store(kind, work / kind, dsn, schema)  # type: ignore[arg-type]
    store.warm_up()
    collection = f"beir-{ev.dataset.digest[:16]}"
    if collection in store.collections():
        store.drop_collection(collection)
    vectors = ev.doc_vectors()
    store.create_collection(collection, int(vectors.shape[1]))
    for start in range(0, len(ev.doc_ids), 1000):
        store.add(collection, [VectorRecord(ev.doc_ids[i], vectors[i])
                               for i in range(start, min(start + 1000, len(ev.doc_ids)))])
    loaded = time.perf_counter() - t0
    row_of = {q: i for i, q in enumerate(ev.query_ids)}
    query_vectors = ev.query_vectors()
    bm25 = ev.bm25_scores(query_ids)
    weights = served_weights()
    flt = SearchFilter(collections=(collection,))
    run = {}
    try:
        for r, q in enumerate(query_ids):
            dense = [(h.id, h.score) for h in store.search(query_vectors[row_of[q]], SERVED_CANDIDATES, flt)]
            top = np.argsort(-bm25[r], kind="stable")[:SERVED_CANDIDATES]
            keyword = [(ev.doc_ids[c], float(bm25[r, c])) for c in top if bm25[r, c] > 0]
            fused = [doc_id for doc_id, _ in convex_fusion({"dense": dense, "keyword": keyword}, weights=weights)]
            run[q] = {doc_id: float(len(fused) - i) for i, doc_id in enumerate(fused)}
    finally:
        store.drop_collection(collection)
        close = getattr(store, "close", None)  # pgvector: give its connections back
        if close is not None:
            close()
    scores = ranx_scores(qrels, run)
    return {"ndcg_at_10": round(scores["ndcg@10"], 4), "recall_at_100": round(scores["recall@100"], 4),
            "detail": f"dense top {SERVED_CANDIDATES} from the {kind} store ({len(ev.doc_ids)} vectors added in "
                      f"{loaded:.1f} s), BM25 k1=1.2 b=0.75, served convex fusion",
            "seconds": round(time.perf_counter() - t0, 1)}


def store_rows(path: Path, kinds: list[str], dsn: str | None, schema: str, cache_dir: Path | None) -> dict:
    """One "hybrid-served [kind]" result per store, and shared − embedded when both ran."""
    import shutil
    import tempfile

    from indexing.stores.embedded_pg import start_postgres, stop_postgres

    embedder = create_embedder("minilm")
    embedder.warm_up()
    ev = BeirEvaluation(load_beir(path), embedder, cache_dir)
    work = Path(tempfile.mkdtemp(prefix="meshrag-beir-stores-"))
    pgdata = None
    try:
        if "pgvector" in kinds and dsn is None:
            pgdata = work / "pgdata"
            dsn = start_postgres(pgdata)
        rows = {f"hybrid-served [{kind}]": served_through_store(ev, "test", kind, dsn, schema, work) for kind in kinds}
    finally:
        if pgdata is not None:
            stop_postgres(pgdata)
        shutil.rmtree(work, ignore_errors=True)
    if {"faiss", "pgvector"} <= set(kinds):
        delta = rows["hybrid-served [pgvector]"]["ndcg_at_10"] - rows["hybrid-served [faiss]"]["ndcg_at_10"]
        rows["shared − embedded nDCG@10"] = {"delta": round(delta, 4), "within": abs(delta) <= STORE_TOLERANCE,
                                             "tolerance": STORE_TOLERANCE}
    return rows


def print_store_rows(rows: dict) -> None:
    print()
    for name, row in rows.items():
        if "delta" in row:
            verdict = "within" if row["within"] else "OUTSIDE"
            print(f"{name}: {row['delta']:+.4f} ({verdict} ±{row['tolerance']})")
        else:
            print(f"{name:<26} | {row['ndcg_at_10']:.4f} | {row['recall_at_100']:.4f} | {row['detail']}; "
                  f"{row['seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: {default_cache_dir()}")
    parser.add_argument("--served-sweep", action="store_true",
                        help="only print the served fusion's train nDCG@10 per dense share (how its weights are chosen)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--store", default="", help="faiss, pgvector or faiss,pgvector: add the served fusion "
                        "with dense lists from that store (embedded vs shared mode)")
    parser.add_argument("--dsn", default=None, help="PostgreSQL for --store pgvector (default: an embedded one)")
    parser.add_argument("--pg-schema", default="meshrag_beir", help="schema for --store pgvector")
    args = parser.parse_args(argv)
    methods = tuple(m for m in args.methods.split(",") if m)
    kinds = [k for k in args.store.split(",") if k]
    if [k for k in kinds if k not in ("faiss", "pgvector")]:
        parser.error(f"--store {args.store!r}: choose from faiss, pgvector")
    try:
        if args.served_sweep:
            sweep = served_weight_sweep(args.path, create_embedder("minilm"), cache_dir=args.cache_dir)
            print("served fusion, train queries: dense share → nDCG@10")
            print("\n".join(f"  {w:.2f}  {v:.4f}" for w, v in sweep.items()))
            return 0
        report = run_beir(args.path, "test", methods, create_embedder("minilm"), cache_dir=args.cache_dir)
        stores = store_rows(args.path, kinds, args.dsn, args.pg_schema, args.cache_dir) if kinds else {}
    except MeshragError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = report.as_dict()
    print(f"SciFact test split: {report.n_queries} queries over {report.n_docs} documents; "
          f"tuned on {report.fusion.tuned_on if report.fusion else '—'}")
    print(table(data))
    print(f"\ncorpus vectors {'from cache' if report.corpus_cached else 'encoded'}; timings {report.timings}")
    if stores:
        print_store_rows(stores)
        data["stores"] = stores
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if stores and not stores.get("shared − embedded nDCG@10", {}).get("within", True):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
