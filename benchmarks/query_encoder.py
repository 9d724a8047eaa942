"""Query encoding of MiniLM: torch beside its ONNX export, in latency and in SciFact retrieval quality.

    python benchmarks/query_encoder.py [PATH] [--beir-cache-dir DIR] [--onnx-cache-dir DIR]
                                       [--concurrency N] [--documents] [--json OUT]

PATH defaults to ../shared/benchmarks/scifact beside the repository. On the 300 test queries, in one
process, with the query caches off:
- latency: each query through `embed_query` of a torch MiniLM (torch at 1 intra-op thread, as
  `RetrievalSettings.torch_threads` serves) and of an ONNX one (onnxruntime, 1 intra-op thread), the two
  alternating query by query so both see the same load; p50/p95 and their ratio.
- the same for ONNX as served (`query_threads` = 2: a query encoded while no other is runs on 2
  intra-op threads, one arriving while others run on 1), with a check that its vectors equal the
  1-thread ones exactly.
- concurrency: N client threads (default 4) sharing one embedder, for torch, ONNX with 1 thread and
  ONNX as served: queries per second and latency percentiles.
- quality: dense nDCG@10 / Recall@100 on the test split by `eval_sets.beir` (ranx) over the same corpus
  vectors (the runner's cache in --beir-cache-dir, encoded with torch on a first run: minutes), once
  with the torch query vectors and once with the ONNX ones; they must agree to 3 decimals.
- with --documents: 192 abstracts cut to ~200 word pieces, batches of 64, through torch
  (`embed_documents`, torch's default threads) and through the ONNX graph (2 intra-op threads).

The ONNX export is cached in --onnx-cache-dir (default: the indexing cache dir, <data dir>/cache).
The machine is shared: rows record the load average, and the ratios move with it.

Measured (2 shared cores, load 8-10 from other jobs; two runs): one query at a time, torch p50/p95
28.9/46.7 and 62.4/86.3 ms, ONNX 12.8/23.6 and 27.0/45.1 ms (ONNX/torch 0.43-0.44 at p50, 0.51-0.52 at
p95); 4 clients: torch 28.0 and 16.8 q/s, ONNX with 1 thread 57.3 and 41.5 q/s, with 2 threads 45.4 and
34.2 q/s (so the query session keeps 1 thread). Min cosine torch/ONNX over the 300 queries 0.9999996;
dense nDCG@10 0.6451 / R@100 0.9250 with either query vectors. Documents: ONNX/torch 0.99 and 1.08, no
gain, so documents stay on torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and benchmarks/indexing.py would shadow
# the `indexing` package: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

import numpy as np

from eval_sets.beir import BeirDataset, BeirEvaluation, default_cache_dir, load_beir
from indexing.embedder import MiniLMEmbedder, bundled_minilm_path
from indexing.settings import IndexSettings
from knowledge.errors import ConfigError

DEFAULT_PATH = REPO.parent / "shared" / "benchmarks" / "scifact"


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _ms(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class GivenQueryVectors(BeirEvaluation):
    """The BEIR runner's evaluation over its (cached) corpus vectors, with the query vectors given here."""

    def __init__(self, dataset: BeirDataset, embedder: MiniLMEmbedder, cache_dir: Path,
                 vectors: Mapping[str, np.ndarray]) -> None:
        super().__init__(dataset, embedder, cache_dir)
        self._given = np.zeros((len(self.query_ids), embedder.dim), dtype=np.float32)
        for row, query_id in enumerate(self.query_ids):
            if query_id in vectors:  # other rows belong to queries this run never scores
                self._given[row] = vectors[query_id]

    def query_vectors(self) -> np.ndarray:
        return self._given


def sequential(models: Mapping[str, MiniLMEmbedder], texts: Sequence[str]
               ) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Per-query seconds and vectors of each model, rotating which goes first."""
    seconds: dict[str, list[float]] = {name: [] for name in models}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in models}
    order = list(models.items())
    for i, text in enumerate(texts):
        shift = i % len(order)
        for name, model in order[shift:] + order[:shift]:
            t = time.perf_counter()
            vector = model.embed_query(text)
            seconds[name].append(time.perf_counter() - t)
            vectors[name].append(vector)
    return seconds, {name: np.stack(v) for name, v in vectors.items()}


def concurrent(encode: Callable[[str], Any], texts: Sequence[str], clients: int) -> dict[str, float]:
    """`clients` threads splitting `texts`; throughput and per-call latency."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        mine = []
        for text in texts[worker::clients]:
            t = time.perf_counter()
            encode(text)
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - t0
    return {"qps": len(texts) / wall, "p50_ms": _ms(latencies, 0.5), "p95_ms": _ms(latencies, 0.95)}


def documents(torch_model: MiniLMEmbedder, onnx_path: Path, dataset: BeirDataset) -> dict[str, Any]:
    """Seconds for 192 ~200-word-piece texts in batches of 64: torch `embed_documents` vs the ONNX graph."""
    from tokenizers import Tokenizer

    from indexing.onnx_encoder import OnnxQueryEncoder

    cutter = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))
    cutter.no_padding()
    cutter.enable_truncation(max_length=200)
    texts = [cutter.decode(e.ids, skip_special_tokens=True) for e in cutter.encode_batch(list(dataset.doc_texts[:192]))]
    tokenizer = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=torch_model.max_seq_length)
    encoder = OnnxQueryEncoder(onnx_path, tokenizer, threads=2)
    runs: dict[str, list[float]] = {"torch": [], "onnx": []}
    worst = 1.0
    for round_ in range(2):
        order = ["torch", "onnx"] if round_ % 2 == 0 else ["onnx", "torch"]
        for name in order:
            t = time.perf_counter()
            if name == "torch":
                reference = torch_model.embed_documents(texts)
            else:
                ours = np.vstack([encoder.encode_batch(texts[i : i + 64]) for i in range(0, len(texts), 64)])
            runs[name].append(time.perf_counter() - t)
        worst = min(worst, float((reference * ours).sum(axis=1).min()))
    return {"texts": len(texts), "torch_s": min(runs["torch"]), "onnx_s": min(runs["onnx"]),
            "ratio": min(runs["onnx"]) / min(runs["torch"]), "min_cosine": worst}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
    parser.add_argument("--beir-cache-dir", type=Path, default=None, help=f"default: {default_cache_dir()}")
    parser.add_argument("--onnx-cache-dir", type=Path, default=None,
                        help="default: IndexSettings().resolved_cache_dir()")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--documents", action="store_true", help="also time ~200-word-piece document batches")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    beir_cache = args.beir_cache_dir or default_cache_dir()
    onnx_cache = args.onnx_cache_dir or IndexSettings().resolved_cache_dir()
    try:
        dataset = load_beir(args.path)
        query_ids = sorted(dataset.split("test"))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    texts = [dataset.queries[q] for q in query_ids]

    import torch

    torch_model = MiniLMEmbedder(query_runtime="torch", query_cache_size=0)
    torch_model.warm_up()
    t = time.perf_counter()
    onnx_model = MiniLMEmbedder(cache_dir=onnx_cache, query_runtime="onnx", query_cache_size=0, onnx_threads=1)
    onnx_model.warm_up()
    warm_s = time.perf_counter() - t
    onnx_two = MiniLMEmbedder(cache_dir=onnx_cache, query_runtime="onnx", query_cache_size=0, onnx_threads=2)
    onnx_two.warm_up()
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as served (RetrievalSettings.torch_threads)
    for text in texts[:10]:  # first calls allocate; not timed
        torch_model.embed_query(text)
        onnx_model.embed_query(text)
        onnx_two.embed_query(text)

    load_before = _load()
    seconds, vectors = sequential({"torch": torch_model, "onnx": onnx_model, "onnx-2": onnx_two}, texts)
    load_after = _load()
    cosines = (vectors["torch"].astype(np.float64) * vectors["onnx"]).sum(axis=1)

    rows_concurrent = {}
    for round_ in range(2):  # each configuration twice, in opposite orders; the better round is kept
        names = ["torch", "onnx-1", "onnx-2"] if round_ == 0 else ["onnx-2", "onnx-1", "torch"]
        for name in names:
            model = {"torch": torch_model, "onnx-1": onnx_model, "onnx-2": onnx_two}[name]
            figures = concurrent(model.embed_query, texts, args.concurrency)
            if name not in rows_concurrent or figures["qps"] > rows_concurrent[name]["qps"]:
                rows_concurrent[name] = figures
    load_concurrent = _load()

    quality = {}
    for name in ("torch", "onnx"):
        given = dict(zip(query_ids, vectors[name]))
        evaluation = GivenQueryVectors(dataset, torch_model, beir_cache, given)
        result = evaluation.evaluate("dense", "test")
        quality[name] = {"ndcg@10": result.ndcg_at_10, "recall@100": result.recall_at_100,
                         "corpus_cached": evaluation.corpus_cached}

    docs = None
    if args.documents:
        torch.set_num_threads(default_threads)
        docs = documents(torch_model, Path(onnx_model.query_info().onnx_path), dataset)

    p = {name: (_ms(s, 0.5), _ms(s, 0.95)) for name, s in seconds.items()}
    info = onnx_model.query_info()
    print(f"MiniLM query encoding, SciFact test split: {len(texts)} queries, one at a time "
          f"(load {load_before} -> {load_after})")
    print(f"{'runtime':<22} {'p50 ms':>7} {'p95 ms':>7}")
    print(f"{'torch (1 thread)':<22} {p['torch'][0]:>7.2f} {p['torch'][1]:>7.2f}")
    print(f"{'onnx (1 thread)':<22} {p['onnx'][0]:>7.2f} {p['onnx'][1]:>7.2f}")
    print(f"{'onnx / torch':<22} {p['onnx'][0] / p['torch'][0]:>7.2f} {p['onnx'][1] / p['torch'][1]:>7.2f}"
          f"   (speed-up x{p['torch'][0] / p['onnx'][0]:.2f} at p50)")
    print(f"{'onnx (2 threads) *':<22} {p['onnx-2'][0]:>7.2f} {p['onnx-2'][1]:>7.2f}")
    print(f"{'onnx (2 thr.) / torch':<22} {p['onnx-2'][0] / p['torch'][0]:>7.2f} "
          f"{p['onnx-2'][1] / p['torch'][1]:>7.2f}   * as served (query_threads=2): a lone query gets 2 threads; "
          f"vectors equal to 1 thread's: {np.array_equal(vectors['onnx'], vectors['onnx-2'])}")
    print(f"\ncosine(torch, onnx) over the queries: min {cosines.min():.7f}, mean {cosines.mean():.7f}; "
          f"probe min {info.onnx_min_cosine:.7f}; warm-up of the ONNX embedder {warm_s:.1f} s, model load included "
          f"({'exported' if onnx_model.onnx_exported else 'cached export reused'}: {info.onnx_path})")
    print(f"\n{args.concurrency} client threads sharing one embedder (load {load_concurrent})")
    print(f"{'runtime':<22} {'q/s':>7} {'p50 ms':>7} {'p95 ms':>7}")
    for name, label in (("torch", "torch (1 thread)"), ("onnx-1", "onnx (1 thread)"),
                        ("onnx-2", "onnx (2 when alone) *")):
        r = rows_concurrent[name]
        print(f"{label:<22} {r['qps']:>7.1f} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f}")
    print("\ndense retrieval, same corpus vectors (ranx, test split)")
    print(f"{'query vectors':<22} {'nDCG@10':>8} {'R@100':>8}")
    for name in ("torch", "onnx"):
        print(f"{name:<22} {quality[name]['ndcg@10']:>8.4f} {quality[name]['recall@100']:>8.4f}")
    same = round(quality["torch"]["ndcg@10"], 3) == round(quality["onnx"]["ndcg@10"], 3)
    print(f"nDCG@10 equal to 3 decimals: {'yes' if same else 'NO'}; corpus vectors "
          f"{'from cache' if quality['torch']['corpus_cached'] else 'encoded'} ({beir_cache})")
    if docs is not None:
        print(f"\ndocuments: {docs['texts']} texts of ~200 word pieces, batches of 64: torch {docs['torch_s']:.2f} s "
              f"({default_threads} threads), onnx {docs['onnx_s']:.2f} s (2 threads), ratio {docs['ratio']:.2f}, "
              f"min cosine {docs['min_cosine']:.7f}")
    if args.json is not None:
        report = {"queries": len(texts), "latency_ms": p, "cosine_min": float(cosines.min()),
                  "probe_min_cosine": info.onnx_min_cosine, "onnx_warm_up_s": warm_s,
                  "concurrency": {"clients": args.concurrency, **rows_concurrent}, "quality": quality,
                  "documents": docs, "load": [load_before, load_after, load_concurrent],
                  "p50_ratio": p["onnx"][0] / p["torch"][0], "median_cosine": statistics.median(cosines.tolist())}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
