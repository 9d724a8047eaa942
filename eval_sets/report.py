"""An evaluation's results: per-question outcomes aggregated overall and per product, as JSON-ready
data, table rows (for the console and Markdown) and comparisons of two releases.

Aggregates (answerable = every kind but `unanswerable`):
- recall@1/5/10, mrr, ndcg@10: means over answerable questions (eval_sets/metrics.py);
- abstention_accuracy: share of unanswerable questions not answered (abstained, or only "possibly
  relevant" passages: neither claims an answer);
- false_abstention_rate: share of answerable questions not answered (same rule);
- answered_rate / possibly_relevant_rate / abstained_rate: the three outcomes over all questions;
- answer_correctness: share of answerable questions with `expected` phrases whose *answered* text
  contains one of them (case and spacing ignored); short_answer_f1: token F1 of the short answer against
  the question's `short` (0 when none was given), over questions that have one;
- answerability_auc: ROC AUC of the answerability score, answerable against unanswerable questions;
- heldout_*: the answer metrics again over the `heldout` split only (nothing fitted or chosen on it);
- access_leaks: chunks (hits and citations) of products the asking principal may not read, over
  both passes; per product, the leaked chunks *of* that product;
- supported_citation_share: share of kept citations whose support score is ≥ the verifier's threshold;
  dropped_citations: markers the verifier removed;
- latency_p50_ms / latency_p95_ms: wall time of `ask` with the question's own roles;
- ragas_*: means over the questions where the metric could be measured (eval_sets/answer_metrics.py).
- discovery section (overall only): discovery_fact_rate, the share of `discovery` questions about one
  product whose answered text holds an expected fact (owner name, product id, status word, SLA);
  discovery_aggregation_exact, the share of aggregation questions (`expected_products`) whose answer
  names exactly the expected products (by id or title), no other catalog product;
- version section (overall only): version_correct, the share of `version` questions answered with an
  expected phrase and citing exactly the question's `versions` of its product.
A product's row aggregates the questions whose `products` name it (a cross-domain question counts for
each of its products); unanswerable questions name none, so their metrics are overall only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eval_sets.answer_metrics import LLM_METRICS, OFFLINE_METRICS, strip_markers
from eval_sets.golden import GoldenQuestion
from eval_sets.metrics import RETRIEVAL_METRICS, mean, percentile, rate, roc_auc
from retrieval.answer.sentences import strip_emphasis

Value = float | int | None
LOWER_IS_BETTER = frozenset({"false_abstention_rate", "heldout_false_abstention_rate", "access_leaks",
                             "dropped_citations", "latency_p50_ms", "latency_p95_ms"})
ANSWER_METRICS = ("answer_correctness", "short_answer_f1", "answered_rate", "possibly_relevant_rate",
                  "abstained_rate", "answerability_auc")
HELDOUT_METRICS = tuple(f"heldout_{m}" for m in ("answer_correctness", "short_answer_f1", "abstention_accuracy",
                                                 "false_abstention_rate", "answerability_auc", "recall@5",
                                                 "ndcg@10"))
SECTION_METRICS = ("discovery_fact_rate", "discovery_aggregation_exact", "version_correct")
SUMMARY_METRICS = (*RETRIEVAL_METRICS, *ANSWER_METRICS, *HELDOUT_METRICS, *SECTION_METRICS, "abstention_accuracy",
                   "false_abstention_rate", "access_leaks",
                   "supported_citation_share", "dropped_citations", "latency_p50_ms", "latency_p95_ms",
                   *OFFLINE_METRICS, *LLM_METRICS)
PRODUCT_COLUMNS = ("n", *RETRIEVAL_METRICS, "false_abstention_rate", "access_leaks", "supported_citation_share",
                   "latency_p50_ms")
COMPARE_PRODUCT_METRICS = ("recall@5", "ndcg@10", "false_abstention_rate")
SHORT = {"false_abstention_rate": "false abst.", "access_leaks": "leaks", "supported_citation_share": "cit. supp.",
         "latency_p50_ms": "p50 ms"}


@dataclass(frozen=True)
class QuestionOutcome:
    """What one golden question got from the release."""

    question: GoldenQuestion
    documents: tuple[str, ...]  # `product:document`, ranked by first chunk
    abstained: bool  # not answered: the outcome is "possibly_relevant" or "abstained"
    answer: str
    contexts: tuple[str, ...]  # retrieved chunk texts
    citations: int
    supported_citations: int
    dropped_citations: int
    leaks: tuple[str, ...]  # `product:chunk` that reached a principal who may not read the product
    latency_ms: float
    outcome: str = "answered"
    short: str | None = None
    answerability: float = 0.0
    named_products: tuple[str, ...] = ()  # catalog products the answered text names (id or title)
    cited_versions: tuple[str, ...] = ()  # `product@version` of every kept citation

    @property
    def aggregation_exact(self) -> bool | None:
        """Whether the answer names exactly `expected_products`; None for other questions."""
        expected = self.question.expected_products
        if expected is None:
            return None
        return set(self.named_products) == set(expected)

    @property
    def version_correct(self) -> bool | None:
        """A version question answered with an expected phrase from exactly its `versions`; else None."""
        q = self.question
        if q.kind != "version" or not q.products:
            return None
        cited = {v.split("@", 1)[1] for v in self.cited_versions if v.split("@", 1)[0] == q.products[0]}
        return bool(self.correct) and cited == set(q.versions)

    @property
    def correct(self) -> bool | None:
        """Whether an answered text holds an expected phrase; None when the question lists none."""
        expected = self.question.expected
        if not expected:
            return None
        text = _norm(strip_markers(self.answer)) if self.outcome == "answered" else ""
        return any(_norm(e) in text for e in expected)


@dataclass(frozen=True)
class EvalReport:
    release_id: str
    overall: dict[str, Value]
    per_product: dict[str, dict[str, Value]]
    restricted_products: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    sets_digest: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    questions: tuple[dict[str, Any], ...] = ()
    compare: EvalReport | None = None

    def with_comparison(self, other: EvalReport) -> EvalReport:
        return replace(self, compare=other)

    def metric(self, name: str, product: str | None = None) -> Value:
        row = self.overall if product is None else self.per_product.get(product, {})
        return row.get(name)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "release_id": self.release_id, "overall": self.overall, "per_product": self.per_product,
            "restricted_products": list(self.restricted_products), "sets": list(self.sets),
            "sets_digest": self.sets_digest, "settings": self.settings, "timings_s": self.timings_s,
            "questions": list(self.questions)}
        if self.compare is not None:
            out["compare"] = {"release_id": self.compare.release_id, "overall": self.compare.overall,
                              "per_product": self.compare.per_product, "delta": deltas(self, self.compare)}
        return out


# ------------------------------------------------------------------------------------ aggregation
def summarise(outcomes: Sequence[QuestionOutcome], retrieval: dict[str, dict[str, float]],
              answers: dict[str, dict[str, float | None]], *, leaks: int | None = None) -> dict[str, Value]:
    """The summary metrics of a group of questions."""
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]
    citations = sum(o.citations for o in outcomes)
    latencies = [o.latency_ms for o in outcomes]
    row: dict[str, Value] = {"n": len(outcomes), "n_answerable": len(answerable), "n_unanswerable": len(unanswerable)}
    for m in RETRIEVAL_METRICS:
        row[m] = _round(mean(retrieval[o.question.id][m] for o in answerable if o.question.id in retrieval))
    row.update(answer_scores(outcomes))
    row["abstention_accuracy"] = _round(rate([o.abstained for o in unanswerable]))
    row["false_abstention_rate"] = _round(rate([o.abstained for o in answerable]))
    row["access_leaks"] = sum(len(o.leaks) for o in outcomes) if leaks is None else leaks
    row["supported_citation_share"] = _round(sum(o.supported_citations for o in outcomes) / citations
                                             if citations else None)
    row["citations"] = citations
    row["dropped_citations"] = sum(o.dropped_citations for o in outcomes)
    row["latency_p50_ms"] = _round(percentile(latencies, 50), 1)
    row["latency_p95_ms"] = _round(percentile(latencies, 95), 1)
    names = dict.fromkeys(name for scores in answers.values() for name in scores)
    for name in names:
        row[name] = _round(mean(answers[o.question.id].get(name) for o in answerable if o.question.id in answers))
    return row


def _norm(text: str) -> str:
    return " ".join(strip_emphasis(text).casefold().split())


def token_f1(predicted: str | None, expected: str) -> float:
    got, want = _norm(predicted or "").split(), _norm(expected).split()
    common = sum(min(got.count(t), want.count(t)) for t in set(got))
    if not got or not want or not common:
        return 0.0
    p, r = common / len(got), common / len(want)
    return 2 * p * r / (p + r)


def answer_scores(outcomes: Sequence[QuestionOutcome]) -> dict[str, Value]:
    """The answer-stage metrics of a group of questions (see the module docstring)."""
    correct = [c for o in outcomes if o.question.answerable and (c := o.correct) is not None]
    shorts = [token_f1(o.short, o.question.short) for o in outcomes if o.question.short]
    auc = roc_auc([o.answerability for o in outcomes if o.question.answerable],
                  [o.answerability for o in outcomes if not o.question.answerable])
    facts = [bool(o.correct) for o in outcomes
             if o.question.kind == "discovery" and o.question.expected_products is None and o.question.expected]
    return {"answer_correctness": _round(rate(correct)), "short_answer_f1": _round(mean(shorts)),
            "discovery_fact_rate": _round(rate(facts)), "n_discovery_facts": len(facts),
            "n_aggregations": sum(1 for o in outcomes if o.question.expected_products is not None),
            "n_versions": sum(1 for o in outcomes if o.question.kind == "version"),
            "discovery_aggregation_exact": _round(rate([e for o in outcomes if (e := o.aggregation_exact) is not None])),
            "version_correct": _round(rate([v for o in outcomes if (v := o.version_correct) is not None])),
            **{f"{name}_rate": _round(rate([o.outcome == name for o in outcomes]))
               for name in ("answered", "possibly_relevant", "abstained")},
            "answerability_auc": _round(auc)}


def heldout_scores(outcomes: Sequence[QuestionOutcome], retrieval: dict[str, dict[str, float]]) -> dict[str, Value]:
    """The `heldout_*` metrics: the held-out split's answer and retrieval metrics."""
    held = [o for o in outcomes if o.question.split == "heldout"]
    if not held:
        return {}
    row = summarise(held, retrieval, {})
    return {name: row.get(name.removeprefix("heldout_")) for name in HELDOUT_METRICS}


def build_report(*, release_id: str, outcomes: Sequence[QuestionOutcome], retrieval: dict[str, dict[str, float]],
                 answers: dict[str, dict[str, float | None]], restricted_products: Sequence[str],
                 sets: Sequence[str], sets_digest: str, settings: dict[str, Any],
                 timings_s: dict[str, float]) -> EvalReport:
    leaked_from: dict[str, int] = {}
    for o in outcomes:
        for leak in o.leaks:
            pid = leak.split(":", 1)[0]
            leaked_from[pid] = leaked_from.get(pid, 0) + 1
    products = sorted({p for o in outcomes for p in o.question.products} | set(leaked_from))
    per_product = {pid: summarise([o for o in outcomes if pid in o.question.products], retrieval, answers,
                                  leaks=leaked_from.get(pid, 0))
                   for pid in products}
    questions = tuple(_question_row(o, retrieval.get(o.question.id, {}), answers.get(o.question.id, {}))
                      for o in outcomes)
    return EvalReport(release_id=release_id,
                      overall=summarise(outcomes, retrieval, answers) | heldout_scores(outcomes, retrieval),
                      per_product=per_product, restricted_products=tuple(restricted_products), sets=tuple(sets),
                      sets_digest=sets_digest, settings=settings, timings_s=timings_s, questions=questions)


def _question_row(o: QuestionOutcome, retrieval: dict[str, float], answers: dict[str, float | None]) -> dict[str, Any]:
    q = o.question
    return {"id": q.id, "kind": q.kind, "products": list(q.products), "gold": sorted(q.gold_documents()),
            "documents": list(o.documents), "abstained": o.abstained, "outcome": o.outcome,
            "answerability": round(o.answerability, 4), "short": o.short, "correct": o.correct,
            "split": q.split, "style": q.style, "named_products": list(o.named_products),
            "cited_versions": list(o.cited_versions), "aggregation_exact": o.aggregation_exact,
            "version_correct": o.version_correct,
            "citations": o.citations, "supported_citations": o.supported_citations,
            "dropped_citations": o.dropped_citations, "leaks": list(o.leaks), "latency_ms": round(o.latency_ms, 1),
            **{k: round(v, 4) for k, v in retrieval.items()},
            **{k: (None if v is None else round(v, 4)) for k, v in answers.items()}}


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# ------------------------------------------------------------------------------------ comparison
def delta(name: str, a: Value, b: Value) -> Value:
    """a − b, or None when either side was not measured."""
    if a is None or b is None:
        return None
    d = a - b
    return d if isinstance(d, int) else round(d, 4 if "latency" not in name else 1)


def deltas(a: EvalReport, b: EvalReport) -> dict[str, Any]:
    """Metric by metric, `a` minus `b`, overall and for the products both reports have."""
    overall = {m: delta(m, a.overall.get(m), b.overall.get(m)) for m in a.overall if m in b.overall}
    per_product = {pid: {m: delta(m, row.get(m), b.per_product[pid].get(m)) for m in row if m in b.per_product[pid]}
                   for pid, row in a.per_product.items() if pid in b.per_product}
    return {"overall": overall, "per_product": per_product}


def is_worse(name: str, change: float) -> bool:
    """Whether a change of `change` (new − old) in metric `name` is a step back."""
    return change > 0 if name in LOWER_IS_BETTER else change < 0


# ------------------------------------------------------------------------------------ tables
Table = tuple[list[str], list[list[str]]]


def fmt(name: str, value: Value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if name.endswith("_ms"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def fmt_delta(name: str, value: Value) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    text = fmt(name, value)
    return text if text.startswith("-") else f"+{text}"


def overall_table(report: EvalReport) -> Table:
    names = [m for m in SUMMARY_METRICS if m in report.overall]
    if report.compare is None:
        return ["metric", "value"], [[m, fmt(m, report.overall[m])] for m in names]
    other = report.compare
    rows = [[m, fmt(m, report.overall[m]), fmt(m, other.overall.get(m)),
             fmt_delta(m, delta(m, report.overall[m], other.overall.get(m)))] for m in names]
    return ["metric", report.release_id, other.release_id, "Δ"], rows


SECTIONS = (("discovery: expected fact in the answer", "discovery_fact_rate", "n_discovery_facts"),
            ("discovery: aggregation names exactly the right products", "discovery_aggregation_exact",
             "n_aggregations"),
            ("versions: answered from the right version(s)", "version_correct", "n_versions"))


def section_table(report: EvalReport) -> Table:
    """The discovery and version sections: each rate with the number of questions it is over."""
    rows = [[label, str(report.overall.get(n, 0)), fmt(m, report.overall.get(m))] for label, m, n in SECTIONS]
    if report.compare is None:
        return ["section", "questions", "value"], rows
    for row, (_, m, _) in zip(rows, SECTIONS, strict=True):
        row += [fmt(m, report.compare.overall.get(m)),
                fmt_delta(m, delta(m, report.overall.get(m), report.compare.overall.get(m)))]
    return ["section", "questions", report.release_id, report.compare.release_id, "Δ"], rows


def product_table(report: EvalReport) -> Table:
    headers = ["product", *(SHORT.get(c, c) for c in PRODUCT_COLUMNS)]
    rows = [[pid, *(fmt(c, row.get(c)) for c in PRODUCT_COLUMNS)] for pid, row in report.per_product.items()]
    return headers, rows


def product_compare_table(report: EvalReport) -> Table:
    """Per product, A = the evaluated release, B = the one compared with, Δ = A − B."""
    assert report.compare is not None
    other = report.compare
    headers = ["product"]
    for m in COMPARE_PRODUCT_METRICS:
        headers += [f"{SHORT.get(m, m)} A", f"{SHORT.get(m, m)} B", "Δ"]
    rows = []
    for pid in sorted(set(report.per_product) | set(other.per_product)):
        a, b = report.per_product.get(pid, {}), other.per_product.get(pid, {})
        row = [pid]
        for m in COMPARE_PRODUCT_METRICS:
            row += [fmt(m, a.get(m)), fmt(m, b.get(m)), fmt_delta(m, delta(m, a.get(m), b.get(m)))]
        rows.append(row)
    return headers, rows


def markdown(report: EvalReport) -> str:
    """The report's tables as GitHub-flavoured Markdown."""
    parts = [f"# Evaluation of release `{report.release_id}`", "",
             (f"Golden sets: {', '.join(f'`{s}`' for s in report.sets)} (digest `{report.sets_digest}`); "
              f"{report.overall.get('n')} questions, {report.overall.get('n_answerable')} answerable. "
              f"Restricted products (unreadable to the unprivileged probe): "
              f"{', '.join(report.restricted_products) or 'none'}."), "",
             "## Overall", "", _md(*overall_table(report)), "", "## Discovery and versions", "",
             _md(*section_table(report)), "", "## Per product", "", _md(*product_table(report))]
    if report.compare is not None:
        parts += ["", f"## Per product: A = `{report.release_id}`, B = `{report.compare.release_id}`", "",
                  _md(*product_compare_table(report))]
    return "\n".join(parts) + "\n"


def _md(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
