"""Indexing throughput on SciFact: our pipeline (cold, then warm) beside LangChain and the model's limit.

    python benchmarks/indexing.py [PATH] [--limit-docs N] [--layout files|jsonl] [--json OUT] [--profile OUT]

Rows, all in one process, on the same corpus (PATH, default ../shared/benchmarks/scifact/corpus.jsonl
beside the repository; never copied into it):
- ours cold: `IndexPipeline.run()` on a temporary knowledge product (`scifact.abstracts`), with a new,
  empty data dir and embedding cache: load, hash, PII scan, chunk (200 cl100k tokens, 40 overlap),
  embed (MiniLM), write the FAISS collection, BM25 index and release.
- ours warm: the same run again on the same data dir: every version is found and reused.
- langchain: the usual LangChain pipeline: one Document per abstract (`title + " " + text`),
  RecursiveCharacterTextSplitter (chunk size and overlap in characters = our 200/40 tokens times the
  characters per cl100k token measured on our chunks), HuggingFaceEmbeddings over the same bundled model
  (normalised, library defaults otherwise), FAISS.from_documents.
- limit: a bare `SentenceTransformer.encode` of exactly our chunks' embedding texts, sorted by word-piece
  count, batch 64: the compute floor of this machine for that work.

Layout of the temporary product (`--layout`):
- files (default): one Markdown file per abstract (`# <title>` + text) in the product's docs/ folder.
  Fairer: the pipeline sees 5,183 documents like LangChain sees 5,183 Documents, each chunk's breadcrumb
  is its abstract's title, and nothing else enters the chunk text.
- jsonl: the input port points at the shared corpus.jsonl itself (zero copy). The pipeline then reads ONE
  document whose records become sections; each chunk carries an `_id: …` metadata line and a
  "corpus > <title>" breadcrumb, so its text differs from LangChain's.

Model loading counts in both pipelines' times (each loads the model itself); the imports of torch,
sentence-transformers and LangChain are done before any row. The machine is shared: each row records
the load average before and after it.

Measured on an idle machine (load 1.6-2.1, 2 cores), `--limit-docs 1000`, files layout: ours cold 88.6 s
(23.7 chunks/s, 2,102 chunks; chunking 8.0 s, overlapped with embedding), warm 0.32 s (277x), LangChain
97.3 s (23.1 chunks/s, 2,243 chunks), limit 82.5 s (25.5 chunks/s). Ours / limit 0.93; ours / LangChain
1.03 in chunks/s, 1.08 in word pieces/s, 1.10 in documents/s; LangChain / limit 0.86 in word pieces/s.
As the forward pass is ~94 % of either pipeline, ours can beat LangChain by at most limit / LangChain
(1.16x here) on an idle machine. On a busy one the ratios follow the other jobs' load (600 documents at
load 2-8: ours / LangChain 1.38 in one run, 0.59 in the next).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would shadow the `indexing`
# package: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
DEFAULT_CORPUS = REPO.parent / "shared" / "benchmarks" / "scifact" / "corpus.jsonl"
DOMAIN, PRODUCT = "scifact", "abstracts"
LIMIT_BATCH = 64


@dataclass
class Row:
    name: str
    seconds: float
    docs: int
    chunks: int
    word_pieces: int  # what the model actually processes (per chunk at most its max_seq_length)
    load_before: float
    load_after: float
    notes: str = ""
    breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds else float("inf")

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds else float("inf")

    @property
    def word_pieces_per_s(self) -> float:
        return self.word_pieces / self.seconds if self.seconds else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs_per_s": round(self.docs_per_s, 2), "chunks_per_s": round(self.chunks_per_s, 2),
                "word_pieces_per_s": round(self.word_pieces_per_s, 1)}


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def read_records(corpus: Path, limit: int | None) -> list[dict[str, Any]]:
    records = []
    with corpus.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
                if limit is not None and len(records) >= limit:
                    break
    return records


def write_product(mesh_root: Path, layout: str, corpus: Path, records: list[dict[str, Any]], limited: bool) -> Path:
    """A complete, valid knowledge product `scifact.abstracts` under `mesh_root`."""
    folder = mesh_root / DOMAIN / PRODUCT
    folder.mkdir(parents=True)
    if layout == "jsonl":
        if limited:  # the port must name a file holding exactly the selected records
            source = folder.parent / "corpus-subset.jsonl"
            source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
        else:
            source = corpus.resolve()
        port = str(source)
    else:
        docs = folder / "docs"
        docs.mkdir()
        for r in records:
            (docs / f"{r['_id']}.md").write_text(f"# {r['title']}\n\n{r['text']}\n", encoding="utf-8")
        port = "docs"
    description = {"purpose": "SciFact abstracts (BEIR), indexed to benchmark the indexing pipeline.",
                   "usage": "Benchmarks only.", "limitations": "Public scientific abstracts; no personal data."}
    team = {"name": "Benchmarks", "members": [{"username": "bench", "name": "Benchmark Runner", "role": "owner"}]}
    pid = f"{DOMAIN}.{PRODUCT}"
    descriptor = {
        "apiVersion": "v1.0.0", "kind": "DataProduct", "id": pid, "name": "SciFact abstracts", "version": "1.0.0",
        "status": "active", "domain": DOMAIN, "description": description,
        "inputPorts": [{"name": "documents", "version": "1.0.0", "contractId": pid,
                        "customProperties": [{"property": "path", "value": port}]}],
        "team": team,
    }
    contract = {
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": pid, "name": "SciFact abstracts", "version": "1.0.0",
        "status": "active", "domain": DOMAIN, "dataProduct": PRODUCT, "description": description, "team": team,
        "roles": [{"role": "everyone", "access": "read", "description": "everyone may read this product"}],
        "slaProperties": [{"property": "freshness", "value": 3650, "unit": "d"},
                          {"property": "retention", "value": 3, "unit": "y"}],
        "tags": ["benchmark"],
        "customProperties": [{"property": "classification", "value": "public"},
                             {"property": "piiPolicy", "value": "allow"}],
    }
    (folder / "product.yaml").write_text(yaml.safe_dump(descriptor, sort_keys=False), "utf-8")
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False), "utf-8")
    return folder


def run_ours(mesh_root: Path, data_dir: Path, name: str, n_docs: int, profile: Path | None = None
             ) -> tuple[Row, Any]:
    from indexing.pipeline import IndexPipeline
    from indexing.settings import IndexSettings
    from indexing.versions import VersionStore

    settings = IndexSettings(data_dir=data_dir, mesh_roots=[mesh_root], store="faiss", embedder="minilm")
    before = load1()
    profiler = cProfile.Profile() if profile is not None else None
    t0 = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = IndexPipeline(settings).run()
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - t0
    product = next(p for p in report.products if p.product_id == f"{DOMAIN}.{PRODUCT}")
    if product.gate != "passed":
        raise SystemExit(f"the benchmark product was blocked: {product.reason}")
    versions = VersionStore(settings.resolved_data_dir())
    chunks = versions.read_chunks(product.chunk_version)
    breakdown = {}
    if product.embedded:  # timings of the steps that ran in this run
        breakdown["chunk_s"] = versions.chunk_manifest(product.chunk_version).get("timings", {}).get("chunk_s", 0.0)
        breakdown["embed_s"] = versions.embedding_manifest(product.embedding_version).get("timings", {}).get("embed_s", 0.0)
    if profiler is not None:
        assert profile is not None
        profiler.dump_stats(str(profile))
    row = Row(name, seconds, n_docs, len(chunks), sum(min(c.n_model_tokens, 256) for c in chunks), before, load1(),
              notes=f"embedded {product.embedded}, reused {product.reused}, pipeline documents {product.documents}",
              breakdown=breakdown)
    return row, chunks


def run_langchain(records: list[dict[str, Any]], model_path: str, chunk_chars: int, overlap_chars: int
                  ) -> tuple[Row, list[str]]:
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    before = load1()
    t0 = time.perf_counter()
    docs = [Document(page_content=f"{r['title']} {r['text']}".strip(), metadata={"id": r["_id"]}) for r in records]
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_chars, chunk_overlap=overlap_chars)
    chunks = splitter.split_documents(docs)
    t_split = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=model_path, model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    t_model = time.perf_counter()
    store = FAISS.from_documents(chunks, embeddings)
    seconds = time.perf_counter() - t0
    assert store.index.ntotal == len(chunks)
    row = Row("langchain", seconds, len(records), len(chunks), 0, before, load1(),
              notes=f"RecursiveCharacterTextSplitter({chunk_chars}, {overlap_chars}) + HuggingFaceEmbeddings + "
                    "FAISS.from_documents",
              breakdown={"split_s": round(t_split - t0, 3), "model_load_s": round(t_model - t_split, 3),
                         "embed_and_index_s": round(time.perf_counter() - t_model, 3)})
    return row, [c.page_content for c in chunks]


def run_limit(texts: list[str], model: Any) -> Row:
    """Batches of texts of equal word-piece length (sorting by characters, as `encode` does, pads ~27 %
    more on SciFact), one `encode` call per batch so its own re-sorting cannot mix them."""
    before = load1()
    lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]
    ordered = [texts[i] for i in sorted(range(len(texts)), key=lambda i: lengths[i])]
    t0 = time.perf_counter()
    for first in range(0, len(ordered), LIMIT_BATCH):
        model.encode(ordered[first:first + LIMIT_BATCH], batch_size=LIMIT_BATCH, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=False)
    seconds = time.perf_counter() - t0
    return Row("limit", seconds, 0, len(texts), 0, before, load1(),
               notes=f"SentenceTransformer.encode, our chunk texts sorted by word pieces, batch {LIMIT_BATCH}")


def word_pieces(model: Any, texts: list[str]) -> int:
    limit = int(model.max_seq_length)
    lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]]
    return sum(min(n, limit) for n in lengths)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def print_table(rows: list[Row], ratios: dict[str, float]) -> None:
    print(f"{'row':<11} {'seconds':>9} {'docs/s':>9} {'chunks/s':>9} {'wp/s':>9} {'chunks':>7} {'load':>11}  notes")
    for r in rows:
        docs = f"{r.docs_per_s:9.1f}" if r.docs else f"{'—':>9}"
        print(f"{r.name:<11} {r.seconds:9.2f} {docs} {r.chunks_per_s:9.1f} {r.word_pieces_per_s:9.0f} {r.chunks:>7} "
              f"{r.load_before:5.2f}→{r.load_after:<5.2f}  {r.notes}")
        if r.breakdown:
            print(f"{'':<11} {r.breakdown}")
    print()
    for key, value in ratios.items():
        print(f"{key:<44} {value:.3f}")


def print_profile(path: Path, top: int = 25) -> None:
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(str(path), stream=out).sort_stats(key).print_stats(top)
        print(f"\n--- cProfile of the cold run, top {top} by {key} ---")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_CORPUS,
                        help=f"corpus.jsonl or its BEIR folder (default: {DEFAULT_CORPUS})")
    parser.add_argument("--limit-docs", type=int, default=None, metavar="N", help="only the first N documents")
    parser.add_argument("--layout", choices=("files", "jsonl"), default="files")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    parser.add_argument("--profile", type=Path, default=None, metavar="OUT",
                        help="run the cold run under cProfile, save the stats to OUT and print the top costs")
    parser.add_argument("--skip", default="", help="comma-separated rows to skip: langchain, limit")
    args = parser.parse_args(argv)
    corpus = args.path / "corpus.jsonl" if args.path.is_dir() else args.path
    if not corpus.is_file():
        print(f"error: {corpus} does not exist; pass the SciFact corpus.jsonl or its folder", file=sys.stderr)
        return 2
    skip = {s for s in args.skip.split(",") if s}

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Imports first, so no row pays for them.
    import langchain_community.vectorstores  # noqa: F401
    import langchain_huggingface  # noqa: F401
    import langchain_text_splitters  # noqa: F401
    import sentence_transformers  # noqa: F401
    import torch

    from indexing.embedder import bundled_minilm_path

    records = read_records(corpus, args.limit_docs)
    model_path = str(bundled_minilm_path())
    tmp = Path(tempfile.mkdtemp(prefix="meshrag-bench-indexing-"))
    rows: list[Row] = []
    try:
        mesh_root, data_dir = tmp / "mesh", tmp / "data"
        write_product(mesh_root, args.layout, corpus, records, limited=args.limit_docs is not None)
        print(f"{len(records)} documents, layout {args.layout}, torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} cores, load {os.getloadavg()}", flush=True)

        cold, chunks = run_ours(mesh_root, data_dir, "ours cold", len(records), args.profile)
        rows.append(cold)
        print(f"ours cold: {cold.seconds:.1f}s, {cold.chunks} chunks", flush=True)
        warm, _ = run_ours(mesh_root, data_dir, "ours warm", len(records))
        warm.word_pieces = cold.word_pieces
        rows.append(warm)
        print(f"ours warm: {warm.seconds:.2f}s", flush=True)

        chars_per_token = sum(len(c.text) for c in chunks) / max(1, sum(c.n_tokens for c in chunks))
        texts = [c.embedding_text for c in chunks]
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_path, device="cpu")
        if "langchain" not in skip:
            lc, lc_texts = run_langchain(records, model_path, round(200 * chars_per_token), round(40 * chars_per_token))
            lc.word_pieces = word_pieces(model, lc_texts)
            rows.append(lc)
            print(f"langchain: {lc.seconds:.1f}s, {lc.chunks} chunks", flush=True)
        if "limit" not in skip:
            limit = run_limit(texts, model)
            limit.word_pieces = cold.word_pieces
            rows.append(limit)
            print(f"limit: {limit.seconds:.1f}s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    by = {r.name: r for r in rows}
    ratios: dict[str, float] = {"cold/warm seconds": ratio(cold.seconds, warm.seconds)}
    if "langchain" in by:
        ratios["ours/langchain docs/s"] = ratio(cold.docs_per_s, by["langchain"].docs_per_s)
        ratios["ours/langchain chunks/s"] = ratio(cold.chunks_per_s, by["langchain"].chunks_per_s)
        ratios["ours/langchain word pieces/s"] = ratio(cold.word_pieces_per_s, by["langchain"].word_pieces_per_s)
    if "limit" in by:
        ratios["ours/limit chunks/s (same chunks)"] = ratio(cold.chunks_per_s, by["limit"].chunks_per_s)
        if "langchain" in by:
            ratios["langchain/limit word pieces/s"] = ratio(by["langchain"].word_pieces_per_s,
                                                           by["limit"].word_pieces_per_s)
    print()
    print_table(rows, ratios)
    print(f"\nour chunks: {cold.chunks}, {chars_per_token:.2f} characters per cl100k token; "
          f"mean {cold.word_pieces / max(1, cold.chunks):.0f} word pieces per chunk")
    if args.profile is not None:
        print_profile(args.profile)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"documents": len(records), "layout": args.layout,
                                         "rows": [r.as_dict() for r in rows], "ratios": ratios,
                                         "chars_per_token": round(chars_per_token, 3)}, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
