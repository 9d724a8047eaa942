"""BEIR-format retrieval benchmarks (e.g. SciFact): dense, keyword and hybrid, scored with ranx.

A dataset folder holds `corpus.jsonl` ({"_id", "title", "text"}), `queries.jsonl` ({"_id", "text"}) and
`qrels/<split>.tsv` (query-id, corpus-id, score; a header line). Judgements with score <= 0 are dropped.

Methods (the MTEB conventions: one vector per document, no chunking, exact search):
- `dense`: the embedder over `(title + " " + text).strip()`, exact inner product over unit vectors.
  Corpus and query vectors are cached in `<cache_dir>/<dataset digest>-<model id>[-queries].npy`, so a
  second run does not encode again.
- `keyword`: our `KeywordIndex` (BM25, Lucene defaults k1=1.2, b=0.75) over the same text, tokenised as
  the service tokenises (`KeywordIndex.tokenize`: `\\w+`, Lucene stopwords, English Snowball stems).
- `keyword-tuned`: the same index with k1/b tuned on the train queries.
- `hybrid-rrf60`: plain reciprocal-rank fusion (k=60, equal weights, default BM25) — the untuned baseline.
- `hybrid`: the fusion chosen by `tune_fusion` on the TRAIN queries (never the evaluated split).
- `hybrid-served`: what the service does by default (`retrieval.fusion.convex_fusion` over each list's top
  `SERVED_CANDIDATES`, weighted by the `RetrievalSettings` defaults dense_weight/keyword_weight, BM25
  defaults): z-scores standardised over the candidates, not over the whole corpus. `served_weight_sweep`
  gives its train nDCG@10 for each dense share in `SERVED_DENSE_SHARES` (how the served weights were chosen).

`tune_fusion` searches, by mean nDCG@10 over the train queries:
1. BM25 k1 x b over `BM25_GRID` (keyword alone);
2. with that BM25, RRF (`retrieval.fusion.reciprocal_rank_fusion`) over `RRF_GRID` (k, dense weight
   with keyword weight 1 - dense weight, candidate depth per list) and a convex combination
   α·norm(dense) + (1-α)·norm(bm25) over `CONVEX_GRID` (α, per-query normalisation over the whole
   corpus: min-max or z-score). The best configuration wins; ties go to the earlier one in grid order.
The grid is searched with a vectorised nDCG@10 (linear gains, log2 discount, as ranx and pytrec_eval);
every reported figure is computed by ranx on the evaluated split, from runs whose scores are rank
positions, so ranx scores exactly the order we produce (ties between documents go to the smaller id,
as in `reciprocal_rank_fusion`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexing.embedder import create_embedder
from indexing.keyword import KeywordIndex
from indexing.types import Embedder
from knowledge.errors import ConfigError
from retrieval.fusion import convex_fusion, reciprocal_rank_fusion
from retrieval.settings import RetrievalSettings

METHODS = ("dense", "keyword", "keyword-tuned", "hybrid-rrf60", "hybrid", "hybrid-served")
DEFAULT_METHODS = ("dense", "keyword", "hybrid", "hybrid-served")
SERVED_CANDIDATES = 50  # RetrievalSettings.candidates: the served searcher's list depth
SERVED_DENSE_SHARES = tuple(round(0.3 + 0.05 * i, 2) for i in range(13))  # dense / (dense + keyword): 0.3-0.9
METRICS = ("ndcg@10", "recall@100")
RUN_DEPTH = 1000  # documents per query in every evaluated run (as MTEB/BEIR)
TEXT_CONVENTION = "title+space+text/strip/v1"  # part of the dataset digest: what each document's text is

BM25_GRID: dict[str, tuple[float, ...]] = {
    "k1": (0.6, 0.9, 1.2, 1.5, 2.0),
    "b": (0.3, 0.5, 0.75, 0.9, 1.0),
}
RRF_GRID: dict[str, tuple[float, ...]] = {
    "k": (1, 5, 10, 20, 40, 60, 100),
    "dense_weight": (0.3, 0.4, 0.5, 0.6, 0.7),
    "depth": (100, 1000),
}
CONVEX_GRID: dict[str, tuple[Any, ...]] = {
    "normalization": ("minmax", "zscore"),
    "alpha": tuple(round(a * 0.05, 2) for a in range(21)),
}


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class BeirDataset:
    """A loaded BEIR dataset: documents in file order, all queries, and the qrels of the loaded splits."""

    name: str
    path: Path
    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, Mapping[str, int]]]  # split → query id → doc id → relevance

    @property
    def digest(self) -> str:
        """Content hash of the documents exactly as they are encoded (ids, texts, text convention)."""
        h = hashlib.sha256(TEXT_CONVENTION.encode())
        for doc_id, text in zip(self.doc_ids, self.doc_texts):
            h.update(b"\x00" + doc_id.encode("utf-8") + b"\x01" + text.encode("utf-8"))
        return h.hexdigest()[:16]

    def split(self, split: str) -> Mapping[str, Mapping[str, int]]:
        try:
            return self.qrels[split]
        except KeyError:
            raise ConfigError(
                f"{self.path}: no qrels/{split}.tsv; available splits: {', '.join(sorted(self.qrels))}"
            ) from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc}); is this a BEIR dataset folder?") from exc
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or "_id" not in record:
            raise ConfigError(f"{path}: line {lineno} is not an object with an '_id'")
        records.append(record)
    return records


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        cells = line.rstrip("\n").split("\t")
        if not line.strip() or (lineno == 1 and not cells[-1].strip().lstrip("-").isdigit()):
            continue  # blank line or the header
        if len(cells) != 3:
            raise ConfigError(f"{path}: line {lineno} has {len(cells)} columns, expected query-id, corpus-id, score")
        try:
            score = int(cells[2])
        except ValueError:
            raise ConfigError(f"{path}: line {lineno}: score {cells[2]!r} is not an integer") from None
        if score > 0:
            qrels.setdefault(cells[0], {})[cells[1]] = score
    return qrels


def load_beir(path: str | Path) -> BeirDataset:
    """Read a BEIR dataset folder: corpus.jsonl, queries.jsonl and every qrels/*.tsv."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; pass a BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)")
    docs = _read_jsonl(root / "corpus.jsonl")
    ids = tuple(str(d["_id"]) for d in docs)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{root / 'corpus.jsonl'}: document ids are not unique")
    texts = tuple(f"{d.get('title') or ''} {d.get('text') or ''}".strip() for d in docs)
    queries = {str(q["_id"]): str(q.get("text") or "") for q in _read_jsonl(root / "queries.jsonl")}
    qrels = {p.stem: _read_qrels(p) for p in sorted((root / "qrels").glob("*.tsv"))}
    if not qrels:
        raise ConfigError(f"{root}: no qrels/<split>.tsv files")
    for split, judged in qrels.items():
        missing = sorted(set(judged) - set(queries))
        if missing:
            raise ConfigError(f"{root}: qrels/{split}.tsv names {len(missing)} unknown queries, e.g. {missing[0]!r}")
    return BeirDataset(name=root.name, path=root, doc_ids=ids, doc_texts=texts, queries=queries, qrels=qrels)


# ------------------------------------------------------------------------------------------ params and report


@dataclass(frozen=True)
class FusionParams:
    """How `hybrid` fuses dense and BM25, and the BM25 it fuses (chosen on the train queries)."""

    method: Literal["rrf", "convex"] = "rrf"
    rrf_k: int = 60
    dense_weight: float = 0.5  # RRF: weight of the dense list (keyword: 1 - it); convex: α
    depth: int = 1000  # RRF: candidates per list
    normalization: Literal["minmax", "zscore"] = "minmax"  # convex only
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    train_ndcg_at_10: float | None = None  # the tuning objective reached on train
    tuned_on: str | None = None

    def describe(self) -> str:
        bm25 = f"BM25 k1={self.bm25_k1:g} b={self.bm25_b:g}"
        if self.method == "rrf":
            return (f"RRF k={self.rrf_k} w_dense={self.dense_weight:g} w_keyword={1 - self.dense_weight:g} "
                    f"depth={self.depth}, {bm25}")
        return f"convex α={self.dense_weight:g}·dense + {1 - self.dense_weight:g}·bm25 ({self.normalization}), {bm25}"


PLAIN_RRF = FusionParams(method="rrf", rrf_k=60, dense_weight=0.5, depth=RUN_DEPTH)


def served_weights() -> dict[str, float]:
    """The service's default fusion weights (the `RetrievalSettings` field defaults)."""
    fields = RetrievalSettings.model_fields
    return {"dense": float(fields["dense_weight"].default), "keyword": float(fields["keyword_weight"].default)}


@dataclass(frozen=True)
class MethodResult:
    ndcg_at_10: float
    recall_at_100: float
    detail: str = ""


@dataclass
class BeirReport:
    dataset: str
    path: str
    digest: str
    split: str
    n_docs: int
    n_queries: int
    model_id: str
    results: dict[str, MethodResult]
    fusion: FusionParams | None = None
    timings: dict[str, float] = field(default_factory=dict)
    corpus_cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["results"] = {m: asdict(r) for m, r in self.results.items()}
        return out

    def table(self) -> str:
        rows = [f"{self.dataset} ({self.split}: {self.n_queries} queries, {self.n_docs} docs, {self.model_id})",
                f"{'method':<14} {'nDCG@10':>8} {'R@100':>8}  detail"]
        rows += [f"{m:<14} {r.ndcg_at_10:>8.4f} {r.recall_at_100:>8.4f}  {r.detail}" for m, r in self.results.items()]
        return "\n".join(rows)


# ------------------------------------------------------------------------------------------ evaluation


def default_cache_dir() -> Path:
    """`<data dir>/beir`, the data dir being MESHRAG_DATA_DIR or ./.meshrag (as the CLI's)."""
    return Path(os.environ.get("MESHRAG_DATA_DIR") or ".meshrag").expanduser().resolve() / "beir"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class BeirEvaluation:
    """One dataset and one embedder; vectors, BM25 indexes and score matrices are computed once."""

    def __init__(self, dataset: BeirDataset, embedder: Embedder, cache_dir: str | Path | None = None) -> None:
        self.dataset = dataset
        self.embedder = embedder
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.query_ids = tuple(dataset.queries)
        # Columns in id order: a tie between documents then goes to the smaller id everywhere (vectorised
        # tuning, KeywordIndex.search, reciprocal_rank_fusion), so tuning and evaluation rank identically.
        self._file_rows = sorted(range(len(dataset.doc_ids)), key=lambda i: dataset.doc_ids[i])
        self.doc_ids = tuple(dataset.doc_ids[i] for i in self._file_rows)
        self.doc_texts = tuple(dataset.doc_texts[i] for i in self._file_rows)
        self._qrow = {q: i for i, q in enumerate(self.query_ids)}
        self._doc_vectors: np.ndarray | None = None
        self._query_vectors: np.ndarray | None = None
        self._bm25: dict[tuple[float, float, int], np.ndarray] = {}  # (k1, b, depth) → all queries' scores
        self.corpus_cached = False
        self.timings: dict[str, float] = {}

    # -- vectors
    def _cached_vectors(self, path: Path, texts: Sequence[str]) -> tuple[np.ndarray, bool]:
        if path.is_file():
            vectors = np.load(path)
            if vectors.shape == (len(texts), self.embedder.dim):
                return vectors, True
        self.embedder.warm_up()
        vectors = np.asarray(self.embedder.embed_documents(list(texts)), dtype=np.float32)
        _save_npy(path, vectors)
        return vectors, False

    def doc_vectors(self) -> np.ndarray:
        if self._doc_vectors is None:
            t0 = time.perf_counter()
            path = self.cache_dir / f"{self.dataset.digest}-{_safe(self.embedder.model_id)}.npy"
            vectors, self.corpus_cached = self._cached_vectors(path, self.dataset.doc_texts)  # file order
            self._doc_vectors = vectors[self._file_rows]
            self.timings["encode_corpus_s"] = round(time.perf_counter() - t0, 3)
        return self._doc_vectors

    def query_vectors(self) -> np.ndarray:
        if self._query_vectors is None:
            texts = [self.dataset.queries[q] for q in self.query_ids]
            h = hashlib.sha256("\x00".join(f"{q}\x01{t}" for q, t in zip(self.query_ids, texts)).encode()).hexdigest()
            path = self.cache_dir / f"{self.dataset.digest}-{_safe(self.embedder.model_id)}-queries-{h[:12]}.npy"
            self._query_vectors, _ = self._cached_vectors(path, texts)
        return self._query_vectors

    # -- score matrices (rows: the given queries; columns: documents in id order, `self.doc_ids`)
    def dense_scores(self, query_ids: Sequence[str]) -> np.ndarray:
        rows = [self._qrow[q] for q in query_ids]
        return self.query_vectors()[rows] @ self.doc_vectors().T

    def bm25_scores(self, query_ids: Sequence[str], k1: float = 1.2, b: float = 0.75,
                    depth: int | None = None) -> np.ndarray:
        """BM25 scores via `KeywordIndex.search`: every matched document, or only each query's top `depth`
        (0 = not matched or not in the top `depth`)."""
        n_docs = len(self.doc_ids)
        depth = n_docs if depth is None else min(depth, n_docs)
        full = (float(k1), float(b), n_docs)
        key = full if full in self._bm25 else (float(k1), float(b), depth)
        if key not in self._bm25:
            index = KeywordIndex(k1=k1, b=b)
            index.build(self.doc_ids, self.doc_texts)
            col = {d: i for i, d in enumerate(self.doc_ids)}
            matrix = np.zeros((len(self.query_ids), n_docs), dtype=np.float32)
            for row, q in enumerate(self.query_ids):
                hits = index.search(self.dataset.queries[q], depth)
                if hits:
                    matrix[row, [col[d] for d, _ in hits]] = [s for _, s in hits]
            self._bm25[key] = matrix
        return self._bm25[key][[self._qrow[q] for q in query_ids]]

    # -- runs
    def _run(self, query_ids: Sequence[str], scores: np.ndarray, keep_positive: bool = False
             ) -> dict[str, dict[str, float]]:
        top = _top(scores, RUN_DEPTH)
        return {q: _ranked([self.doc_ids[c] for c in top[r] if not keep_positive or scores[r, c] > 0])
                for r, q in enumerate(query_ids)}

    def run(self, method: str, query_ids: Sequence[str], fusion: FusionParams | None = None
            ) -> dict[str, dict[str, float]]:
        """The ranked run (top RUN_DEPTH per query) of `method` for `query_ids`."""
        if method == "dense":
            return self._run(query_ids, self.dense_scores(query_ids))
        if method == "keyword":
            return self._run(query_ids, self.bm25_scores(query_ids), keep_positive=True)
        fusion = fusion or PLAIN_RRF
        if method == "keyword-tuned":
            return self._run(query_ids, self.bm25_scores(query_ids, fusion.bm25_k1, fusion.bm25_b), keep_positive=True)
        if method == "hybrid-rrf60":
            return self._rrf_run(query_ids, PLAIN_RRF)
        if method == "hybrid-served":
            return self._served_run(query_ids)
        if method == "hybrid":
            if fusion.method == "rrf":
                return self._rrf_run(query_ids, fusion)
            return self._run(query_ids, self.fused_scores(query_ids, fusion))
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")

    def _candidate_lists(self, query_ids: Sequence[str], depth: int, k1: float = 1.2, b: float = 0.75
                         ) -> list[tuple[str, list[tuple[str, float]], list[tuple[str, float]]]]:
        """Per query: its id, the dense top `depth` and the matched BM25 top `depth`, as (doc id, score)."""
        dense, bm25 = self.dense_scores(query_ids), self.bm25_scores(query_ids, k1, b)
        dense_top, bm25_top = _top(dense, depth), _top(bm25, depth)
        ids = self.doc_ids
        return [(q, [(ids[c], float(dense[r, c])) for c in dense_top[r]],
                 [(ids[c], float(bm25[r, c])) for c in bm25_top[r] if bm25[r, c] > 0])
                for r, q in enumerate(query_ids)]

    def _rrf_run(self, query_ids: Sequence[str], p: FusionParams) -> dict[str, dict[str, float]]:
        """RRF through the production `reciprocal_rank_fusion` over each list's top `depth`."""
        weights = {"dense": p.dense_weight, "keyword": 1 - p.dense_weight}
        run = {}
        for q, dense, keyword in self._candidate_lists(query_ids, p.depth, p.bm25_k1, p.bm25_b):
            fused = reciprocal_rank_fusion({"dense": [d for d, _ in dense], "keyword": [d for d, _ in keyword]},
                                           k=p.rrf_k, weights=weights)
            run[q] = _ranked([doc_id for doc_id, _ in fused[:RUN_DEPTH]])
        return run

    def _served_run(self, query_ids: Sequence[str], weights: Mapping[str, float] | None = None,
                    lists: Sequence[tuple[str, list[tuple[str, float]], list[tuple[str, float]]]] | None = None
                    ) -> dict[str, dict[str, float]]:
        """`convex_fusion` of the top SERVED_CANDIDATES of each list with `weights` (default: the served ones)."""
        weights = served_weights() if weights is None else weights
        lists = self._candidate_lists(query_ids, SERVED_CANDIDATES) if lists is None else lists
        return {q: _ranked([doc_id for doc_id, _ in convex_fusion({"dense": dense, "keyword": keyword},
                                                                  weights=weights)])
                for q, dense, keyword in lists}

    def served_sweep(self, split: str = "train", shares: Sequence[float] = SERVED_DENSE_SHARES
                     ) -> dict[float, float]:
        """nDCG@10 (ranx) on `split` of the served fusion for each dense share w (weights w and 1 - w)."""
        qrels = self.dataset.split(split)
        query_ids = sorted(qrels)
        lists = self._candidate_lists(query_ids, SERVED_CANDIDATES)
        return {w: round(ranx_scores(qrels, self._served_run(query_ids, {"dense": w, "keyword": 1 - w}, lists),
                                     ("ndcg@10",))["ndcg@10"], 4)
                for w in shares}

    def fused_scores(self, query_ids: Sequence[str], p: FusionParams) -> np.ndarray:
        """Vectorised fused scores for every document (RRF: same formula as `reciprocal_rank_fusion`)."""
        dense = self.dense_scores(query_ids)
        bm25 = self.bm25_scores(query_ids, p.bm25_k1, p.bm25_b)
        if p.method == "convex":
            return p.dense_weight * _normalise(dense, p.normalization) + \
                (1 - p.dense_weight) * _normalise(bm25, p.normalization, empty_rows=~(bm25 > 0).any(axis=1))
        return _rrf_matrix(_ranks(dense), _ranks(bm25), bm25 > 0, p)

    def evaluate(self, method: str, split: str, fusion: FusionParams | None = None) -> MethodResult:
        qrels = self.dataset.split(split)
        query_ids = sorted(qrels)
        scores = ranx_scores(qrels, self.run(method, query_ids, fusion))
        detail = {"dense": f"{self.embedder.model_id}, exact inner product",
                  "keyword": "BM25 k1=1.2 b=0.75 (KeywordIndex defaults)",
                  "hybrid-rrf60": PLAIN_RRF.describe(),
                  "hybrid-served": f"served default: convex z-score fusion of the top {SERVED_CANDIDATES} of "
                                   "each list, weights " + " ".join(f"{k}={v:g}" for k, v in served_weights().items())
                                   + ", BM25 k1=1.2 b=0.75"}.get(method, "")
        if fusion is not None and method == "keyword-tuned":
            detail = f"BM25 k1={fusion.bm25_k1:g} b={fusion.bm25_b:g} (tuned on train)"
        if fusion is not None and method == "hybrid":
            detail = fusion.describe() + (f" (tuned on {fusion.tuned_on})" if fusion.tuned_on else "")
        return MethodResult(round(scores["ndcg@10"], 4), round(scores["recall@100"], 4), detail)

    # -- tuning
    def tune_fusion(self, split: str = "train") -> FusionParams:
        """Grid search (module docstring) on `split`'s queries by mean nDCG@10."""
        qrels = self.dataset.split(split)
        query_ids = sorted(qrels)
        rel = _relevance_matrix(qrels, query_ids, self.doc_ids)
        ideal = _ideal_dcg(qrels, query_ids, 10)
        best_bm25, best = (1.2, 0.75), -1.0
        for k1 in BM25_GRID["k1"]:
            for b in BM25_GRID["b"]:
                value = _ndcg10(self.bm25_scores(query_ids, k1, b, depth=10), rel, ideal, positive_only=True)
                if value > best + 1e-12:
                    best_bm25, best = (k1, b), value
        k1, b = best_bm25
        dense, bm25 = self.dense_scores(query_ids), self.bm25_scores(query_ids, k1, b)
        dense_ranks, bm25_ranks, matched = _ranks(dense), _ranks(bm25), bm25 > 0
        candidates: list[tuple[float, FusionParams]] = []
        for depth in RRF_GRID["depth"]:
            for k in RRF_GRID["k"]:
                for w in RRF_GRID["dense_weight"]:
                    p = FusionParams("rrf", rrf_k=int(k), dense_weight=w, depth=int(depth), bm25_k1=k1, bm25_b=b)
                    fused = _rrf_matrix(dense_ranks, bm25_ranks, matched, p)
                    candidates.append((_ndcg10(fused, rel, ideal, positive_only=True), p))
        empty = ~matched.any(axis=1)
        for norm in CONVEX_GRID["normalization"]:
            dn, bn = _normalise(dense, norm), _normalise(bm25, norm, empty_rows=empty)
            for alpha in CONVEX_GRID["alpha"]:
                p = FusionParams("convex", dense_weight=alpha, normalization=norm, bm25_k1=k1, bm25_b=b)
                candidates.append((_ndcg10(alpha * dn + (1 - alpha) * bn, rel, ideal), p))
        value, chosen = max(candidates, key=lambda c: c[0])  # max keeps the first of equal values
        return FusionParams(**{**asdict(chosen), "train_ndcg_at_10": round(value, 4),
                               "tuned_on": f"{split} ({len(query_ids)} queries)"})


# ------------------------------------------------------------------------------------------ matrix helpers


def _ranked(doc_ids: Sequence[str]) -> dict[str, float]:
    """A run entry whose scores are the rank positions: ranx then scores exactly this order, ties included
    (from raw scores it would break ties its own way)."""
    return {doc_id: float(len(doc_ids) - i) for i, doc_id in enumerate(doc_ids)}


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's `k` best scores, best first (ties: lower column first)."""
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every column within its row (descending score, ties by column)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(scores.shape[0])[:, None], order] = np.arange(1, scores.shape[1] + 1)
    return ranks


def _rrf_matrix(dense_ranks: np.ndarray, bm25_ranks: np.ndarray, matched: np.ndarray, p: FusionParams) -> np.ndarray:
    dense = np.where(dense_ranks <= p.depth, p.dense_weight / (p.rrf_k + dense_ranks), 0.0)
    keyword = np.where((bm25_ranks <= p.depth) & matched, (1 - p.dense_weight) / (p.rrf_k + bm25_ranks), 0.0)
    return dense + keyword


def _normalise(scores: np.ndarray, how: str, empty_rows: np.ndarray | None = None) -> np.ndarray:
    s = scores.astype(np.float64)
    if how == "minmax":
        low, high = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
        out = (s - low) / np.where(high > low, high - low, 1.0)
    elif how == "zscore":
        std = s.std(axis=1, keepdims=True)
        out = (s - s.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    else:
        raise ConfigError(f"unknown normalization {how!r}; use 'minmax' or 'zscore'")
    if empty_rows is not None:
        out[empty_rows] = 0.0  # a query BM25 matches nowhere: that list has no opinion
    return out


def _relevance_matrix(qrels: Mapping[str, Mapping[str, int]], query_ids: Sequence[str],
                      doc_ids: Sequence[str]) -> np.ndarray:
    col = {d: i for i, d in enumerate(doc_ids)}
    rel = np.zeros((len(query_ids), len(doc_ids)), dtype=np.float64)
    for r, q in enumerate(query_ids):
        for d, g in qrels[q].items():
            if d in col:
                rel[r, col[d]] = g
    return rel


def _ideal_dcg(qrels: Mapping[str, Mapping[str, int]], query_ids: Sequence[str], k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(len(query_ids))
    for r, q in enumerate(query_ids):
        gains = sorted(qrels[q].values(), reverse=True)[:k]
        out[r] = float(np.dot(gains, discounts[: len(gains)]))
    return out


def _ndcg10(scores: np.ndarray, rel: np.ndarray, ideal: np.ndarray, positive_only: bool = False) -> float:
    """Mean nDCG@10 (linear gains, log2 discount: ranx's and pytrec_eval's definition). With
    `positive_only`, a score <= 0 means "not retrieved" (BM25, RRF) and earns nothing."""
    top = _top(scores, 10)
    gains = np.take_along_axis(rel, top, axis=1)
    if positive_only:
        gains = np.where(np.take_along_axis(scores, top, axis=1) > 0, gains, 0.0)
    dcg = gains @ (1.0 / np.log2(np.arange(2, top.shape[1] + 2)))
    return float(np.mean(np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)))


def ranx_scores(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
                metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean metrics over the queries of `qrels` with ranx (a query without results scores 0)."""
    import warnings

    from ranx import Qrels, Run, evaluate

    queries = sorted(qrels)
    # ranx needs at least one entry per query; a doc id that cannot be relevant stands in for "nothing".
    filled = {q: dict(run.get(q) or {"\x00no-result": 0.0}) for q in queries}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's "unsafe cast uint64 to int64" inside ranx's nDCG
        result = evaluate(Qrels({q: dict(qrels[q]) for q in queries}), Run(filled), list(metrics),
                          make_comparable=True)
    return {m: float(result[m]) for m in metrics} if isinstance(result, dict) else {metrics[0]: float(result)}


# ------------------------------------------------------------------------------------------ API


def _evaluation(path: str | Path, embedder: Embedder | None, cache_dir: str | Path | None) -> BeirEvaluation:
    embedder = embedder or create_embedder("minilm")
    embedder.warm_up()
    return BeirEvaluation(load_beir(path), embedder, cache_dir)


def tune_fusion(path: str | Path, embedder: Embedder | None = None, *, cache_dir: str | Path | None = None
                ) -> FusionParams:
    """BM25 and fusion parameters tuned on the dataset's train queries (see the module docstring)."""
    return _evaluation(path, embedder, cache_dir).tune_fusion("train")


def served_weight_sweep(path: str | Path, embedder: Embedder | None = None, *, split: str = "train",
                        cache_dir: str | Path | None = None) -> dict[float, float]:
    """Dense share → nDCG@10 on `split` (train: choose there, never on test) of the served fusion."""
    return _evaluation(path, embedder, cache_dir).served_sweep(split)


def run_beir(path: str | Path, split: str = "test", methods: Sequence[str] = DEFAULT_METHODS,
             embedder: Embedder | None = None, fusion: FusionParams | None = None, *,
             cache_dir: str | Path | None = None) -> BeirReport:
    """nDCG@10 and Recall@100 (ranx) of each method on `split`. `hybrid` without `fusion` is tuned on train."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    t0 = time.perf_counter()
    ev = _evaluation(path, embedder, cache_dir)
    ev.dataset.split(split)  # fail early on a missing split
    if fusion is None and any(m in ("hybrid", "keyword-tuned") for m in methods):
        if split == "train":
            raise ConfigError("tuning uses the train split; evaluate on another split or pass fusion=")
        t1 = time.perf_counter()
        fusion = ev.tune_fusion("train")
        ev.timings["tune_s"] = round(time.perf_counter() - t1, 3)
    results = {m: ev.evaluate(m, split, fusion) for m in methods}
    ev.timings["total_s"] = round(time.perf_counter() - t0, 3)
    return BeirReport(dataset=ev.dataset.name, path=str(ev.dataset.path), digest=ev.dataset.digest, split=split,
                      n_docs=len(ev.dataset.doc_ids), n_queries=len(ev.dataset.split(split)),
                      model_id=ev.embedder.model_id, results=results, fusion=fusion, timings=dict(ev.timings),
                      corpus_cached=ev.corpus_cached)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval_sets.beir", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: <MESHRAG_DATA_DIR or .meshrag>/beir")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = run_beir(args.path, args.split, tuple(m for m in args.methods.split(",") if m),
                          create_embedder(args.embedder), cache_dir=args.cache_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.table())
        if report.fusion is not None:
            print(f"hybrid: {report.fusion.describe()}; train nDCG@10 {report.fusion.train_ndcg_at_10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
