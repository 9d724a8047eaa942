"""Answer-stage benchmarks on data no one here wrote: SciFact claims (rationale sentences, NOT ENOUGH
INFO) and WikiQA (answer-sentence selection and answer triggering), each scored for the fitted answer
model beside the zero-shot baseline (plain MiniLM cosine between question and sentence).

    python -m eval_sets.answer_bench [--scifact DIR] [--wikiqa DIR] [--json OUT]

Both data sets are read from ../shared/benchmarks (never copied into the repository). A *candidate
set* is one question with the sentences it is compared with: a claim with the sentences of one abstract
it cites (context: the abstract's title), a WikiQA question with its page summary's sentences (context:
the page title). Metrics:

- SciFact (split dev = the BEIR test queries; nothing is fitted on it): `rationale_top2` = share of
  SUPPORT/CONTRADICT claim–abstract pairs with a rationale sentence among the two best-scored;
  `nei_auc` = ROC AUC of the best sentence score, pairs with evidence against pairs without.
- WikiQA (test): `map` / `mrr` over the 237 questions with both correct and wrong candidates;
  answer triggering over all 633: answer when the best score ≥ a threshold chosen on WikiQA dev for
  the best F1 there, correct only when that sentence is labelled 1 (precision, recall, F1 as in the
  WikiQA paper). WikiQA's licence allows evaluation and development only: no shipped artefact is
  fitted on it (a WikiQA threshold is a benchmark setting, not a product one).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval_sets.metrics import roc_auc
from indexing.embedder import create_embedder
from indexing.embedding_cache import EmbeddingCache, embed_with_cache
from indexing.types import Embedder
from knowledge.errors import ConfigError
from retrieval.answer.features import candidate_features, select
from retrieval.answer.model import AnswerModel, load_answer_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "benchmarks"


@dataclass(frozen=True)
class CandidateSet:
    question: str
    context: str  # document title
    sentences: tuple[str, ...]
    labels: tuple[int, ...]  # 1 = answers (WikiQA) / rationale (SciFact)
    group: str  # claim id or question id: splits never cut a group
    has_evidence: bool = False  # SciFact: the abstract holds evidence for the claim

    @property
    def contextual(self) -> list[str]:
        return [f"{self.context}: {s}" if self.context else s for s in self.sentences]


@dataclass
class Vectors:
    """Question and passage vectors of a benchmark, embedded once through the persistent cache."""

    embedder: Embedder
    cache: EmbeddingCache | None
    questions: dict[str, np.ndarray] = field(default_factory=dict)
    passages: dict[str, np.ndarray] = field(default_factory=dict)

    def load(self, sets: Sequence[CandidateSet], progress: Callable[[str], None] | None = None) -> None:
        qs = [q for q in dict.fromkeys(s.question for s in sets) if q not in self.questions]
        ps = [p for p in dict.fromkeys(t for s in sets for t in (*s.sentences, *s.contextual))
              if p not in self.passages]
        if progress:
            progress(f"embedding {len(qs)} questions and {len(ps)} passages (cached after the first run)")
        self.questions.update(zip(qs, self._embed(qs), strict=True))
        self.passages.update(zip(ps, self._embed(ps), strict=True))

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        out = []
        for first in range(0, len(texts), 2048):
            part = texts[first:first + 2048]
            out.append(embed_with_cache(self.embedder, self.cache, part)[0] if self.cache is not None
                       else self.embedder.embed_documents(part))
        return np.vstack(out)

    def features(self, s: CandidateSet) -> np.ndarray:
        sv = np.vstack([self.passages[t] for t in s.sentences])
        cv = np.vstack([self.passages[t] for t in s.contextual])
        return candidate_features(s.question, self.questions[s.question], s.sentences,
                                  [s.context] * len(s.sentences), sv, cv)


# ------------------------------------------------------------------------------------------ readers
def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{what} not found at {path}: pass its folder (../shared/benchmarks/... beside the "
                          "repository is the default)")
    return path


def load_scifact(folder: Path, split: str) -> list[CandidateSet]:
    """One candidate set per (claim, cited abstract) of `claims_<split>.jsonl`."""
    docs: dict[int, dict[str, Any]] = {}
    with gzip.open(_require(folder / "corpus_sentences.jsonl.gz", "SciFact sentences"), "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs[int(d["doc_id"])] = d
    out = []
    with open(_require(folder / f"claims_{split}.jsonl", f"SciFact claims_{split}"), encoding="utf-8") as f:
        for line in f:
            claim = json.loads(line)
            for doc_id in claim["cited_doc_ids"]:
                doc = docs.get(int(doc_id))
                if doc is None or not doc["abstract"]:
                    continue
                evidence = claim["evidence"].get(str(doc_id), [])
                rationale = {i for e in evidence for i in e["sentences"]}
                out.append(CandidateSet(claim["claim"], doc["title"], tuple(doc["abstract"]),
                                        tuple(int(i in rationale) for i in range(len(doc["abstract"]))),
                                        str(claim["id"]), bool(evidence)))
    return out


def load_wikiqa(folder: Path, split: str) -> list[CandidateSet]:
    """One candidate set per WikiQA question of `WikiQA-<split>.tsv`, candidates in file order."""
    grouped: dict[str, dict[str, Any]] = {}
    with open(_require(folder / f"WikiQA-{split}.tsv", f"WikiQA {split}"), newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        for qid, question, _doc, title, _sid, sentence, label in rows:
            g = grouped.setdefault(qid, {"q": question, "title": title, "s": [], "l": []})
            g["s"].append(sentence)
            g["l"].append(int(label))
    return [CandidateSet(g["q"], g["title"], tuple(g["s"]), tuple(g["l"]), qid, any(g["l"]))
            for qid, g in grouped.items()]


# ------------------------------------------------------------------------------------------ metrics
def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    ranked = labels[np.argsort(-scores, kind="stable")]
    hits = np.cumsum(ranked)
    return float((hits / np.arange(1, len(ranked) + 1) * ranked).sum() / ranked.sum())


def reciprocal_rank(labels: np.ndarray, scores: np.ndarray) -> float:
    ranked = labels[np.argsort(-scores, kind="stable")]
    return 1.0 / (int(np.argmax(ranked)) + 1)


def triggering(sets: Sequence[CandidateSet], scores: Sequence[np.ndarray], threshold: float) -> dict[str, float]:
    """WikiQA answer triggering at `threshold`: question-level precision, recall, F1."""
    answered = correct = 0
    for s, sc in zip(sets, scores, strict=True):
        best = int(np.argmax(sc))
        if sc[best] >= threshold:
            answered += 1
            correct += s.labels[best]
    with_answer = sum(1 for s in sets if any(s.labels))
    p = correct / answered if answered else 0.0
    r = correct / with_answer if with_answer else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "threshold": round(float(threshold), 6)}


def best_threshold(sets: Sequence[CandidateSet], scores: Sequence[np.ndarray]) -> float:
    """The answer-triggering threshold with the best F1 on these sets."""
    candidates = sorted({float(sc.max()) for sc in scores})
    return max(candidates, key=lambda t: triggering(sets, scores, t)["f1"]) if candidates else 0.0


def selection_metrics(sets: Sequence[CandidateSet], scores: Sequence[np.ndarray]) -> dict[str, float]:
    both = [(np.asarray(s.labels), sc) for s, sc in zip(sets, scores, strict=True) if 0 < sum(s.labels) < len(s.labels)]
    return {"questions": len(both),
            "map": round(float(np.mean([average_precision(lab, sc) for lab, sc in both])), 4),
            "mrr": round(float(np.mean([reciprocal_rank(lab, sc) for lab, sc in both])), 4)}


def scifact_metrics(sets: Sequence[CandidateSet], scores: Sequence[np.ndarray]) -> dict[str, Any]:
    with_evidence = [(np.asarray(s.labels), sc) for s, sc in zip(sets, scores, strict=True) if s.has_evidence]
    top2 = [float(lab[np.argsort(-sc, kind="stable")[:2]].max()) for lab, sc in with_evidence]
    auc = roc_auc([float(sc.max()) for s, sc in zip(sets, scores, strict=True) if s.has_evidence],
                  [float(sc.max()) for s, sc in zip(sets, scores, strict=True) if not s.has_evidence])
    return {"pairs": len(sets), "pairs_with_evidence": len(with_evidence),
            "rationale_top2": round(float(np.mean(top2)), 4) if top2 else None,
            "nei_auc": round(auc, 4) if auc is not None else None}


# ------------------------------------------------------------------------------------------ scoring
Scorer = Callable[[CandidateSet, np.ndarray], np.ndarray]


def baseline_scorer(_s: CandidateSet, features: np.ndarray) -> np.ndarray:
    """The zero-shot baseline: cosine of question and sentence."""
    return select(features, ["cos_s"])[:, 0]


def model_scorer(model: AnswerModel) -> Scorer:
    return lambda _s, features: model.probabilities(select(features, model.features))


def score(vectors: Vectors, sets: Sequence[CandidateSet], scorer: Scorer) -> list[np.ndarray]:
    return [scorer(s, vectors.features(s)) for s in sets]


def evaluate(model: AnswerModel, vectors: Vectors, *, scifact: Path | None, wikiqa: Path | None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Held-out metrics of `model` beside the baseline: SciFact dev, WikiQA test (threshold from dev)."""
    out: dict[str, Any] = {}
    scorers = {"model": model_scorer(model), "baseline_cosine": baseline_scorer}
    if scifact is not None:
        dev = load_scifact(scifact, "dev")
        vectors.load(dev, progress)
        out["scifact_dev"] = {name: scifact_metrics(dev, score(vectors, dev, f)) for name, f in scorers.items()}
    if wikiqa is not None:
        dev, test = load_wikiqa(wikiqa, "dev"), load_wikiqa(wikiqa, "test")
        vectors.load([*dev, *test], progress)
        out["wikiqa_test"] = {}
        for name, f in scorers.items():
            threshold = best_threshold(dev, score(vectors, dev, f))
            test_scores = score(vectors, test, f)
            out["wikiqa_test"][name] = {**selection_metrics(test, test_scores),
                                        "triggering": triggering(test, test_scores, threshold)}
    return out


def open_vectors(cache_dir: Path | None) -> Vectors:
    embedder = create_embedder()
    embedder.warm_up()
    cache = None
    if cache_dir is not None:
        cache = EmbeddingCache(cache_dir / "embeddings.sqlite")
        cache.warm_up()
    return Vectors(embedder, cache)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", type=Path, default=SHARED / "scifact")
    parser.add_argument("--wikiqa", type=Path, default=SHARED / "wikiqa")
    parser.add_argument("--model", type=Path, default=None, help="answer model JSON (default: the shipped one)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".meshrag" / "cache" / "answer-bench")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        model = load_answer_model(args.model)
        vectors = open_vectors(args.cache_dir)
        report = {"model": model.id, **evaluate(model, vectors, scifact=args.scifact, wikiqa=args.wikiqa,
                                                progress=lambda m: print(m, file=sys.stderr))}
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n", "utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
