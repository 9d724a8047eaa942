"""Evaluate a release against golden sets: every question asked end to end through `MeshService.ask`.

Against one release, each question is
1. searched with its own roles, k=10: the retrieval metrics (recall@1/5/10, MRR, nDCG@10);
2. asked with its own roles through `MeshService.ask` at the served depth (`top_k`, 8 by default, the
   depth the answerer's abstention threshold was calibrated at): abstention, citations, latency and
   the answer metrics (ragas contexts = the chunks this answer saw);
3. asked as an unprivileged principal (`UNPRIVILEGED_ROLES`), k=10: every chunk in its hits or
   citations from a product that principal may not read is an access leak (the restricted products).
A chunk of a product the question's own roles may not read, in 1 or 2, counts as a leak too. Whether a principal may read a
product is the catalog's current contract, the rule the searcher itself must apply.

Answers go to a provenance log in a temporary directory, removed afterwards: an evaluation's
hundreds of answers are not questions anyone asked, and the served log stays a record of those.
Metric definitions: eval_sets/metrics.py, eval_sets/answer_metrics.py, eval_sets/report.py.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from eval_sets.answer_metrics import AnswerMetrics, AnswerSample, create_answer_metrics, strip_markers
from eval_sets.golden import GOLDEN_DIR, GoldenQuestion, load_golden
from eval_sets.metrics import ranked_documents, retrieval_scores
from eval_sets.report import EvalReport, QuestionOutcome, build_report
from indexing.types import Embedder
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError
from knowledge.model import Principal
from retrieval.discovery import cites_discoverable_fact
from retrieval.provenance import ProvenanceLog, create_provenance_log
from retrieval.service import MeshService
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import CURRENT, Citation, RetrievedChunk, SearchRequest

DEPTH = 10  # chunks per question: the retrieval metrics' k
UNPRIVILEGED_ROLES = ("employee", "analyst", "support-agent", "finance-analyst")
UNPRIVILEGED = Principal(id="eval:unprivileged", roles=frozenset(UNPRIVILEGED_ROLES))


def resolve_sets(names: Sequence[str] | None) -> list[Path]:
    """Golden set files from names (`finance_people`) or paths; default: every set in eval_sets/golden/."""
    if not names:
        return sorted(GOLDEN_DIR.glob("*.jsonl"))
    available = sorted(p.stem for p in GOLDEN_DIR.glob("*.jsonl"))
    paths = []
    for name in names:
        path = Path(name)
        if path.is_file():
            paths.append(path)
        elif (GOLDEN_DIR / f"{name}.jsonl").is_file():
            paths.append(GOLDEN_DIR / f"{name}.jsonl")
        else:
            raise ConfigError(f"no golden set {name!r}: not a file, nor one of {', '.join(available)}")
    return paths


def set_name(path: Path) -> str:
    """A bundled set by its name (`finance_people`), any other file by its path."""
    path = Path(path).resolve()
    return path.stem if path.parent == GOLDEN_DIR else str(path)


def sets_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class EvalRun:
    """What to evaluate: golden set files and the questions read from them."""

    paths: tuple[Path, ...]
    questions: tuple[GoldenQuestion, ...]

    @classmethod
    def load(cls, names: Sequence[str] | None = None) -> EvalRun:
        paths = tuple(resolve_sets(names))
        questions = tuple(load_golden(list(paths)))
        if not questions:
            raise ConfigError(f"the golden set(s) {', '.join(str(p) for p in paths)} hold no questions")
        return cls(paths, questions)


class EvalHarness:
    """Runs golden questions against releases of one data directory. Construct cheaply, `warm_up()`
    once, then `evaluate()` as many releases as needed: models and indexes are loaded once, each
    evaluation gets an answer stage (and so an embedding cache) of its own."""

    NAME = "meshrag.eval"
    VERSION = "1"

    def __init__(self, settings: RetrievalSettings, *, answer_metrics: bool = True,
                 embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder  # an already loaded embedder to share (else the settings' one)
        self.with_answer_metrics = answer_metrics
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._provenance: ProvenanceLog | None = None
        self._context: ServingContext | None = None
        self._service: MeshService | None = None
        self._evaluated = 0
        self._answer_metrics: AnswerMetrics | None = None

    def warm_up(self) -> None:
        if self._service is not None:
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="meshrag-eval-")
        self._provenance = create_provenance_log("sqlite", Path(self._tmp.name))
        self._context = ServingContext(self.settings, embedder=self._embedder)
        self._service = self._fresh_service()
        if self.with_answer_metrics:
            self._answer_metrics = create_answer_metrics(self._service.context.embedder, self._service.answerer)
            self._answer_metrics.warm_up()

    def _fresh_service(self) -> MeshService:
        """A service over the shared serving context (models, indexes) with an answer stage of its own, so no
        release is answered from caches another release's evaluation filled (latency stays comparable)."""
        service = MeshService(self.settings, context=self._context, provenance=self._provenance)
        service.warm_up()
        return service

    def close(self) -> None:
        if self._provenance is not None:
            self._provenance.close()
            self._provenance = None
        self._service = self._context = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.warm_up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def service(self) -> MeshService:
        if self._service is None:
            raise RuntimeError("EvalHarness is not warmed up: call warm_up() first")
        return self._service

    def release_id(self, ref: str = CURRENT) -> str:
        return self.service.context.releases.get(ref).id

    def evaluate(self, run: EvalRun, release: str = CURRENT) -> EvalReport:
        """Ask every question of `run` against `release` and compute the report."""
        if self._evaluated:
            self._service = self._fresh_service()
        self._evaluated += 1
        service = self.service
        release_id = self.release_id(release)
        t0 = time.perf_counter()
        # One throw-away question so the first measured one does not pay for lazy initialisation.
        service.ask(SearchRequest(query="warm up", principal=UNPRIVILEGED, k=1, release=release_id))
        outcomes = [self._ask(q, release_id) for q in run.questions]
        asked_s = time.perf_counter() - t0

        gold = {o.question.id: o.question.gold_documents() for o in outcomes
                if o.question.answerable and o.question.gold}
        retrieval = retrieval_scores(gold, {o.question.id: o.documents for o in outcomes})
        answers: dict[str, dict[str, float | None]] = {}
        t1 = time.perf_counter()
        if self._answer_metrics is not None:
            answers = self._answer_metrics.score([self._sample(o) for o in outcomes if o.question.answerable])
        release_obj = service.context.releases.get(release_id)
        catalog = service.context.catalog
        restricted = sorted(pid for pid in release_obj.products
                            if (p := catalog.products.get(pid)) is None or not UNPRIVILEGED.can_read(p))
        return build_report(
            release_id=release_id, outcomes=outcomes, retrieval=retrieval, answers=answers,
            restricted_products=restricted, sets=[set_name(p) for p in run.paths], sets_digest=sets_digest(run.paths),
            settings={"harness": f"{self.NAME}@{self.VERSION}", "k_retrieval": DEPTH, "k_answer": self.settings.top_k,
                      "embedder": self.settings.embedder,
                      "store": self.settings.store, "answerer": getattr(service.answerer, "id", None),
                      "min_support": self._min_support(), "unprivileged_roles": list(UNPRIVILEGED_ROLES),
                      "answer_stage": service.answerer.describe()},
            timings_s={"ask": round(asked_s, 2), "answer_metrics": round(time.perf_counter() - t1, 2),
                       "total": round(time.perf_counter() - t0, 2)})

    # ----------------------------------------------------------------------------------- helpers
    def _min_support(self) -> float:
        """The verifier's threshold: a citation below it is dropped (read from the answerer)."""
        return float(self.service.answerer.min_support)

    def _ask(self, q: GoldenQuestion, release_id: str) -> QuestionOutcome:
        service = self.service
        own = Principal(id=f"eval:{q.id}", roles=frozenset(q.roles))
        ranked = service.search(SearchRequest(query=q.question, principal=own, k=DEPTH, release=release_id))
        t0 = time.perf_counter()
        result = service.ask(SearchRequest(query=q.question, principal=own, k=self.settings.top_k,
                                           release=release_id))
        latency_ms = (time.perf_counter() - t0) * 1000
        probe = service.ask(SearchRequest(query=q.question, principal=UNPRIVILEGED, k=DEPTH, release=release_id))
        threshold = self._min_support()
        catalog = service.context.catalog
        citations = result.answer.citations
        leaks = (unreadable_chunks(own, catalog, ranked.hits)
                 + unreadable_chunks(own, catalog, result.search.hits, citations)
                 + unreadable_chunks(UNPRIVILEGED, catalog, probe.search.hits, probe.answer.citations))
        return QuestionOutcome(
            question=q, documents=ranked_documents(ranked.hits), abstained=not result.answer.answered,
            answer=result.answer.text, contexts=tuple(h.chunk.text for h in result.search.hits),
            citations=len(citations),
            supported_citations=sum(1 for c in citations if float(c.scores.get("support") or 0.0) >= threshold),
            dropped_citations=result.answer.dropped_citations, leaks=leaks, latency_ms=latency_ms,
            outcome=result.answer.outcome, short=result.answer.short.text if result.answer.short else None,
            answerability=result.answer.support,
            named_products=named_products(catalog, result.answer.text) if result.answer.answered else (),
            cited_versions=tuple(f"{c.product_id}@{c.product_version}" for c in citations))

    @staticmethod
    def _sample(o: QuestionOutcome) -> AnswerSample:
        q = o.question
        return AnswerSample(question_id=q.id, question=q.question, response=strip_markers(o.answer),
                            reference=q.answer, retrieved_contexts=o.contexts,
                            reference_contexts=tuple(e.quote for e in q.gold if e.quote))


def named_products(catalog: Catalog, text: str) -> tuple[str, ...]:
    """The catalog products `text` names, by id or title (case ignored), in catalog order."""
    folded = " ".join(strip_markers(text).casefold().split())
    return tuple(pid for pid, p in catalog.products.items()
                 if pid.casefold() in folded or p.title.casefold() in folded)


def unreadable_chunks(principal: Principal, catalog: Catalog, hits: Sequence[RetrievedChunk],
                      citations: Sequence[Citation] = ()) -> tuple[str, ...]:
    """`product:chunk` of every hit and citation from a product `principal` may not read (by the
    catalog's current contracts; a product missing from the catalog is unreadable). A citation of one of
    the catalog facts a contract makes discoverable is no leak for a principal who may discover it."""
    def unreadable(pid: str) -> bool:
        product = catalog.products.get(pid)
        return product is None or not principal.can_read(product)

    def discoverable_fact(c: Citation) -> bool:
        product = catalog.products.get(c.product_id)
        return product is not None and principal.can_discover(product) and cites_discoverable_fact(c)

    found = [f"{h.product_id}:{h.chunk_id}" for h in hits if unreadable(h.product_id)]
    found += [f"{c.product_id}:{c.chunk_id}" for c in citations
              if unreadable(c.product_id) and not discoverable_fact(c)]
    return tuple(found)


def evaluate_release(settings: RetrievalSettings, run: EvalRun, release: str = CURRENT, *,
                     compare: str | None = None, answer_metrics: bool = True) -> EvalReport:
    """One report for `release` (with `compare` evaluated alongside when given)."""
    with EvalHarness(settings, answer_metrics=answer_metrics) as harness:
        report = harness.evaluate(run, release)
        if compare is not None:
            report = report.with_comparison(harness.evaluate(run, compare))
    return report
