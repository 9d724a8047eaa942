"""The eval harness on a small mesh indexed by the real pipeline (hash embedder): metrics by ranx checked
by hand, abstention and access accounting, ragas offline, reports and comparisons through the CLI."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest

from eval_sets.answer_metrics import AnswerMetrics, AnswerSample, strip_markers
from eval_sets.golden import GoldenQuestion
from eval_sets.harness import UNPRIVILEGED, EvalHarness, unreadable_chunks
from eval_sets.metrics import percentile, retrieval_scores, roc_auc
from eval_sets.report import HELDOUT_METRICS, QuestionOutcome, answer_scores, token_f1
from indexing.embedder import create_embedder
from knowledge.model import Principal
from retrieval.types import OUTCOMES, SearchRequest
from tests.eval_sets.conftest import EvalMesh
from tests.retrieval.conftest import INTERNAL, PUBLIC, RESTRICTED

REQUIRED = {"recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "abstention_accuracy", "false_abstention_rate",
            "access_leaks", "supported_citation_share", "latency_p50_ms", "latency_p95_ms",
            "answer_correctness", "short_answer_f1", "answered_rate", "possibly_relevant_rate", "abstained_rate",
            "answerability_auc"}


def by_hand(documents: list[str], gold: set[str]) -> dict[str, float]:
    """Binary-relevance recall@k, MRR and nDCG@10 written out."""
    ranks = [r for r, d in enumerate(documents, start=1) if d in gold]
    dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= 10)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(gold), 10) + 1))
    return {"recall@1": sum(r <= 1 for r in ranks) / len(gold), "recall@5": sum(r <= 5 for r in ranks) / len(gold),
            "recall@10": sum(r <= 10 for r in ranks) / len(gold), "mrr": 1 / ranks[0] if ranks else 0.0,
            "ndcg@10": dcg / ideal}


def test_ranx_scores_match_a_hand_computation():
    scores = retrieval_scores({"a": {"d1", "d2"}, "b": {"d3"}, "c": {"d4"}},
                              {"a": ["d2", "x", "d1"], "b": ["y"], "c": []})
    # a: gold at ranks 1 and 3 → DCG 1 + 1/log2(4) = 1.5, ideal 1 + 1/log2(3) = 1.6309 → 0.91972
    assert scores["a"]["ndcg@10"] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert scores["a"]["ndcg@10"] == pytest.approx(0.919720789)
    assert (scores["a"]["recall@1"], scores["a"]["recall@5"], scores["a"]["mrr"]) == (0.5, 1.0, 1.0)
    assert scores["b"] == {"recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0, "mrr": 0.0, "ndcg@10": 0.0}
    assert scores["c"]["recall@10"] == 0.0  # nothing retrieved at all
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0 and percentile([5.0], 95) == 5.0


def outcome_of(qid: str, kind: str, outcome: str, answer: str, answerability: float, *, expected: tuple[str, ...] = (),
               short: str | None = None, golden_short: str | None = None) -> QuestionOutcome:
    question = GoldenQuestion(id=qid, question=f"Question {qid}?", kind=kind, answer="", expected=expected,
                              short=golden_short)
    return QuestionOutcome(question=question, documents=(), abstained=outcome != "answered", answer=answer,
                           contexts=(), citations=0, supported_citations=0, dropped_citations=0, leaks=(),
                           latency_ms=1.0, outcome=outcome, short=short, answerability=answerability)


def test_answer_metrics_match_a_hand_computation():
    outcomes = [
        outcome_of("a", "factual", "answered", "It is due within **Two  business** days [1].", 0.9,
                   expected=("two business days",), short="two business days", golden_short="Two business days"),
        outcome_of("b", "factual", "possibly_relevant", "… within two business days [1].", 0.4,
                   expected=("two business days",), short=None, golden_short="151,000 dollars"),
        outcome_of("c", "factual", "answered", "Call the depot [1].", 0.8, expected=("rebook",)),
        outcome_of("d", "unanswerable", "abstained", "Not found.", 0.8),
        outcome_of("e", "unanswerable", "possibly_relevant", "No confirmed answer.", 0.2),
    ]
    # Only an *answered* text counts as correct; markers, emphasis, case and spacing are ignored.
    assert [o.correct for o in outcomes] == [True, False, False, None, None]
    scores = answer_scores(outcomes)
    assert scores["answer_correctness"] == pytest.approx(1 / 3, abs=1e-4)
    assert scores["short_answer_f1"] == pytest.approx((1.0 + 0.0) / 2)
    assert (scores["answered_rate"], scores["possibly_relevant_rate"], scores["abstained_rate"]) == (0.4, 0.4, 0.2)
    # answerable 0.9, 0.4, 0.8 against unanswerable 0.8, 0.2: 4 of 6 pairs above, 1 tie (0.8 = 0.8) counted half
    assert scores["answerability_auc"] == pytest.approx(4.5 / 6, abs=1e-4)
    assert roc_auc([0.5], []) is None
    assert token_f1("about 151,000 dollars", "151,000 dollars") == pytest.approx(0.8)  # p 2/3, r 1
    assert token_f1(None, "151,000 dollars") == 0.0


def test_harness_metrics_on_a_small_mesh(eval_mesh: EvalMesh):
    with EvalHarness(eval_mesh.settings()) as harness:
        report = harness.evaluate(eval_mesh.run())
    overall = report.overall
    assert report.release_id == eval_mesh.registry().current_id()
    assert REQUIRED <= set(overall) and (overall["n"], overall["n_answerable"], overall["n_unanswerable"]) == (7, 5, 2)
    rows = {q["id"]: q for q in report.questions}
    answerable = [q for q in rows.values() if q["kind"] != "unanswerable"]
    for q in answerable:  # every ranx value agrees with the formula applied to the ranked documents
        expected = by_hand(q["documents"], set(q["gold"]))
        assert {m: q[m] for m in expected} == pytest.approx(expected), q["id"]
    for m in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"):
        assert overall[m] == pytest.approx(sum(q[m] for q in answerable) / len(answerable), abs=1e-4)
    # The restricted question, asked with its role, finds its document first.
    assert rows["t-004"]["documents"][0] == f"{RESTRICTED}:pay-bands.md"

    unanswerable = [q for q in rows.values() if q["kind"] == "unanswerable"]
    assert overall["abstention_accuracy"] == pytest.approx(sum(q["abstained"] for q in unanswerable) / 2)
    assert overall["false_abstention_rate"] == pytest.approx(sum(q["abstained"] for q in answerable) / 5)
    citations = sum(q["citations"] for q in rows.values())
    supported = sum(q["supported_citations"] for q in rows.values())
    assert overall["citations"] == citations
    assert overall["supported_citation_share"] == (pytest.approx(supported / citations) if citations else None)
    assert report.settings["min_support"] == harness_min_support(eval_mesh)

    # The unprivileged probe asked every question (the restricted one included) and saw nothing of people.pay.
    assert report.restricted_products == (RESTRICTED,)
    assert overall["access_leaks"] == 0 and all(q["leaks"] == [] for q in rows.values())
    assert set(report.per_product) == {PUBLIC, INTERNAL, RESTRICTED}
    assert report.per_product[INTERNAL]["n"] == 2 and report.per_product[INTERNAL]["abstention_accuracy"] is None
    assert 0 < overall["latency_p50_ms"] <= overall["latency_p95_ms"]

    # The answer stage: outcomes, answerability, correctness and short answers, each recomputed from the rows.
    for outcome in OUTCOMES:
        assert overall[f"{outcome}_rate"] == pytest.approx(sum(q["outcome"] == outcome for q in rows.values()) / 7,
                                                          abs=1e-4)
    for q in rows.values():  # "abstained" in the report means "not answered": either of the other outcomes
        assert q["outcome"] in OUTCOMES and q["abstained"] == (q["outcome"] != "answered")
        assert 0.0 <= q["answerability"] <= 1.0
    graded = {q["id"]: q["correct"] for q in rows.values() if q["correct"] is not None}
    assert set(graded) == {"t-001", "t-002", "t-004"}
    assert all(rows[qid]["outcome"] == "answered" for qid, correct in graded.items() if correct)
    assert overall["answer_correctness"] == pytest.approx(sum(graded.values()) / 3, abs=1e-4)
    assert overall["short_answer_f1"] == pytest.approx(token_f1(rows["t-004"]["short"], "151,000 dollars"), abs=1e-4)
    assert overall["answerability_auc"] == pytest.approx(
        roc_auc([q["answerability"] for q in answerable], [q["answerability"] for q in unanswerable]), abs=1e-3)
    # heldout_*: the same metrics over the held-out split alone (t-005 answerable, t-006 unanswerable).
    assert {q["id"] for q in rows.values() if q["split"] == "heldout"} == {"t-005", "t-006"}
    assert set(HELDOUT_METRICS) <= set(overall)
    assert overall["heldout_recall@5"] == pytest.approx(rows["t-005"]["recall@5"], abs=1e-4)
    assert overall["heldout_abstention_accuracy"] == float(rows["t-006"]["abstained"])
    assert overall["heldout_false_abstention_rate"] == float(rows["t-005"]["abstained"])
    assert overall["heldout_answer_correctness"] is None and overall["heldout_short_answer_f1"] is None
    assert rows["t-002"]["style"] == "paraphrase" and rows["t-001"]["style"] == "original"
    assert report.settings["answer_stage"]["answer_model"].startswith("answer-lr@")

    # ragas, offline: the gold quotes of the runbook questions are verbatim in the retrieved chunks.
    for qid in ("t-002", "t-003"):
        assert rows[qid]["ragas_context_recall"] == 1.0
    assert 0 <= overall["ragas_answer_similarity"] <= 1 and -1 <= overall["ragas_semantic_similarity"] <= 1
    assert rows["t-006"].get("ragas_context_recall") is None  # unanswerable: not scored


def harness_min_support(mesh: EvalMesh) -> float:
    with EvalHarness(mesh.settings(), answer_metrics=False) as harness:
        return harness.service.answerer.min_support  # type: ignore[attr-defined]


def test_leak_counter_counts_chunks_of_unreadable_products(eval_mesh: EvalMesh):
    """A real answer for a principal who may read the restricted product, checked as if it had reached
    the unprivileged principal: its people.pay chunks are leaks; for its own principal there are none."""
    partner = Principal(id="pp", roles=frozenset({"people-partner"}))
    with EvalHarness(eval_mesh.settings(), answer_metrics=False) as harness:
        result = harness.service.ask(SearchRequest(query="quokka band midpoint L4 engineer", principal=partner, k=10))
        catalog = harness.service.context.catalog
    leaks = unreadable_chunks(UNPRIVILEGED, catalog, result.search.hits, result.answer.citations)
    assert leaks and {leak.split(":")[0] for leak in leaks} == {RESTRICTED}
    assert len(leaks) == (sum(h.product_id == RESTRICTED for h in result.search.hits)
                          + sum(c.product_id == RESTRICTED for c in result.answer.citations))
    assert unreadable_chunks(partner, catalog, result.search.hits, result.answer.citations) == ()


def test_ragas_offline_metrics_make_no_network_call(monkeypatch: pytest.MonkeyPatch):
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args[1:] or kwargs)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    metrics = AnswerMetrics(create_embedder("hash"))
    metrics.warm_up()
    quote = "Switch the line to the backup printer and reprint the wave."
    scores = metrics.score([
        AnswerSample("same", "What if the printer jams?", quote, quote,
                     retrieved_contexts=(("# Label printer outage\n\nIf the conveyor label printer jams, switch the "
                                          "line to the backup printer and reprint the wave."),
                                         "Unrelated text about tea."),
                     reference_contexts=(quote,)),
        AnswerSample("other", "What if the printer jams?", "Call the depot.", quote,
                     retrieved_contexts=("Unrelated text about tea.",), reference_contexts=(quote,)),
        AnswerSample("no-quotes", "Who owns it?", "The platform team.", "The platform team owns it.",
                     retrieved_contexts=("The platform team.",)),
    ])
    assert attempts == []
    assert scores["same"]["ragas_context_recall"] == 1.0
    assert scores["same"]["ragas_context_precision"] == pytest.approx(1.0)  # the relevant context is ranked first
    assert scores["same"]["ragas_answer_similarity"] == 1.0
    assert scores["same"]["ragas_semantic_similarity"] == pytest.approx(1.0)
    assert scores["other"]["ragas_context_recall"] == 0.0 and scores["other"]["ragas_answer_similarity"] < 0.5
    assert scores["no-quotes"]["ragas_context_recall"] is None
    assert strip_markers("Shipped in October [1]. Refunds too [2, 3].") == "Shipped in October. Refunds too."


def test_cli_writes_json_and_markdown_reports(eval_mesh: EvalMesh, tmp_path: Path):
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    result = eval_mesh.cli("eval", str(eval_mesh.golden), "--json", str(out), "--md", str(md), "--no-answer-metrics")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert REQUIRED <= set(report["overall"]) and report["release_id"] == eval_mesh.registry().current_id()
    assert set(report["per_product"]) == {PUBLIC, INTERNAL, RESTRICTED}
    assert "ragas_answer_similarity" not in report["overall"]
    text = md.read_text()
    assert "| recall@5 |" in text and f"| {INTERNAL} |" in text
    assert "recall@5" in result.stdout and "per product" in result.stdout  # the rich tables


def test_compare_shows_deltas(eval_mesh: EvalMesh, tmp_path: Path):
    degraded = eval_mesh.drop_product(INTERNAL)
    out = tmp_path / "compare.json"
    result = eval_mesh.cli("eval", str(eval_mesh.golden), "--compare", degraded, "--json", str(out),
                           "--no-answer-metrics")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["compare"]["release_id"] == degraded
    a, b = report["overall"]["recall@5"], report["compare"]["overall"]["recall@5"]
    assert a > b and report["compare"]["delta"]["overall"]["recall@5"] == pytest.approx(a - b)
    assert report["compare"]["delta"]["per_product"][INTERNAL]["recall@5"] == pytest.approx(
        report["per_product"][INTERNAL]["recall@5"])  # the dropped product's questions find nothing of it
    assert "Δ" in result.stdout and f"+{a - b:.3f}" in result.stdout and degraded in result.stdout


def test_unknown_golden_set_is_named(eval_mesh: EvalMesh):
    result = eval_mesh.cli("eval", "no-such-set")
    assert result.exit_code == 2
    assert "no golden set 'no-such-set'" in result.stderr


def test_llm_judged_metrics_run_through_the_answerers_chat_model():
    """With a chat model (LangChain's fake, answering ragas's prompts in the order it asks them),
    faithfulness, answer relevancy and LLM context precision are scored alongside the offline ones."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    claim = "The owner answers reader questions within two business days."
    replies = [json.dumps({"statements": [claim]}),  # faithfulness: the answer's statements …
               json.dumps({"statements": [{"statement": claim, "reason": "stated", "verdict": 1}]}),  # … checked
               *[json.dumps({"question": "How fast does the owner answer reader questions?", "noncommittal": 0})] * 3,
               json.dumps({"reason": "it says how fast", "verdict": 1})]  # context precision
    metrics = AnswerMetrics(create_embedder("hash"), FakeListChatModel(responses=replies))
    metrics.warm_up()
    scores = metrics.score([AnswerSample("q", "How fast does the owner answer?", claim, claim,
                                         retrieved_contexts=(claim,), reference_contexts=(claim,))])["q"]
    assert set(scores) == set(metrics.names) and len(metrics.names) == 7
    assert scores["ragas_faithfulness"] == 1.0 and scores["ragas_llm_context_precision"] == pytest.approx(1.0)
    assert 0 < scores["ragas_answer_relevancy"] <= 1


def test_eval_beir_runs_the_beir_module_on_a_dataset_folder(eval_mesh: EvalMesh, tmp_path: Path):
    data = tmp_path / "tiny-beir"
    (data / "qrels").mkdir(parents=True)
    docs = [("d1", "Carrier pickup", "When the carrier misses the pickup, call the depot and rebook the pallet."),
            ("d2", "Label printer", "If the label printer jams, switch to the backup printer."),
            ("d3", "Pay bands", "Bands stretch fifteen percent either side of the midpoint.")]
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "carrier missed the pickup"}) + "\n"
                                        + json.dumps({"_id": "q2", "text": "label printer jams"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    out = tmp_path / "beir.json"
    result = eval_mesh.cli("eval", "beir", str(data), "--methods", "dense,keyword", "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["split"] == "test" and report["n_queries"] == 2 and set(report["results"]) == {"dense", "keyword"}
    assert report["results"]["keyword"]["ndcg_at_10"] == pytest.approx(1.0)
    assert "nDCG@10" in result.stdout and "keyword" in result.stdout
