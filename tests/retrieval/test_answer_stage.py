"""The grounded answer stage (retrieval/answer/grounded.py and what it is made of): the fitted answer-model
artefact and its checks, Unicode-aware features, table rows quoted as "Column: value" sentences, short
answers, the three outcomes for both answerers, and what provenance keeps of them.

Real parts only: the shipped artefact, the real chunker and scorer (hash embedder; MiniLM and the indexed
sample mesh in the `slow` tests), LangChain's fake chat models for the LLM answerer, a real SQLite log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage

from indexing.types import Chunk
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from retrieval.answer.answer_types import expected_type, spans
from retrieval.answer.base import ABSTENTION_TEXT
from retrieval.answer.candidates import answer_candidates
from retrieval.answer.extractive import ExtractiveAnswerer
from retrieval.answer.features import FEATURE_NAMES, candidate_features, select
from retrieval.answer.grounded import MAX_POSSIBLY_RELEVANT, POSSIBLY_RELEVANT_TEXT
from retrieval.answer.llm import LLMAnswerer
from retrieval.answer.model import (
    DEFAULT_MODEL,
    FIT_COMMAND,
    AnswerModel,
    Thresholds,
    content_hash,
    load_answer_model,
)
from retrieval.answer.sentences import strip_emphasis
from retrieval.answer.support import MIN_SUPPORT, content_words
from retrieval.provenance import (
    RECORD_VERSION,
    ProvenanceRecord,
    create_provenance_log,
    record_from,
    record_hash,
)
from retrieval.service import MeshService
from retrieval.types import OUTCOMES, Answer, RetrievedChunk, SearchRequest, SearchResult
from tests.retrieval.conftest import ALWAYS_ANSWER, ANSWER_OR_ABSTAIN, NEVER_ANSWER, SmallMesh

NET_REVENUE = ("finance.revenue-reporting", "metrics/net-revenue.md")
NOTICE = ("operations.fulfilment-ops", "carriers/carrier-notice-2026-05.html")
# Below the answer threshold, but retrieval strong enough for "possibly relevant" passages.
ONLY_POSSIBLY_RELEVANT = Thresholds(answer=1.01, relevant=0.0, sentence=1.01)

OWNERS = """\
## Metric owners

**Owners by metric**

| Metric | Owner | Target |
|---|:---:|---|
| Churn rate | Priya Raman | 2.5% |
| Net revenue retention | Jonah Feld | 104% |

source: metrics/owners.md
"""
CHURN_ROW = "Metric: Churn rate; Owner: Priya Raman; Target: 2.5%."
NRR_ROW = "Metric: Net revenue retention; Owner: Jonah Feld; Target: 104%."
NEVER_QUOTED = ("---", "|", "source:", "metrics/owners.md", "Owners by metric", "Metric owners [")


def owners_chunk() -> Chunk:
    return Chunk(chunk_id="owners", product_id="customer.subscription-metrics", document="metrics/owners.md",
                 doc_revision="o" * 64, text=OWNERS, start=0, end=len(OWNERS), heading_path=("Metric owners",),
                 n_tokens=60, n_model_tokens=70)


def assert_short_answer_points_into_its_citation(answer: Answer) -> None:
    short = answer.short
    assert short is not None and short.text and 1 <= short.marker <= len(answer.citations)
    assert answer.citations[short.marker - 1].text[short.start:short.end] == short.text


# ====================================================================================== the artefact
def write_copy(tmp_path: Path, edit: Any = None, *, rehash: bool = False, name: str = "answer-model.json") -> Path:
    """A copy of the shipped artefact with `edit(payload)` applied, its sha256 recomputed or not."""
    payload = json.loads(DEFAULT_MODEL.read_text("utf-8"))
    if edit is not None:
        edit(payload)
    if rehash:
        payload["sha256"] = content_hash(payload)
    path = tmp_path / name
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def test_shipped_answer_model_loads_with_an_id_from_its_content_hash(tmp_path: Path) -> None:
    path = write_copy(tmp_path)  # a snapshot: the checks read one version of the file
    payload = json.loads(path.read_text("utf-8"))
    answer_model = load_answer_model(path)
    assert payload["sha256"] == content_hash(payload)
    assert re.fullmatch(r"answer-lr@[0-9a-f]{12}", answer_model.id)
    assert answer_model.id == f"answer-lr@{payload['sha256'][:12]}"
    assert answer_model.features and set(answer_model.features) <= set(FEATURE_NAMES)
    t = answer_model.thresholds
    assert 0.0 < t.answer < 1.0 and 0.0 < t.relevant < 1.0 and 0.0 < t.sentence < 1.0
    assert t.as_dict() == {"answer": t.answer, "relevant": t.relevant, "sentence": t.sentence}
    assert {"data", "libraries"} <= set(answer_model.record)  # how it was made travels with it
    p = answer_model.probabilities(np.vstack([answer_model.mean, answer_model.mean + answer_model.scale]))
    assert p.shape == (2,) and np.all((p > 0.0) & (p < 1.0))
    assert answer_model.probabilities(np.zeros((0, len(answer_model.features)))).shape == (0,)


def test_an_edited_coefficient_breaks_the_recorded_sha256(tmp_path: Path) -> None:
    original = write_copy(tmp_path, name="original.json")
    payload = json.loads(original.read_text("utf-8"))
    payload["logistic_regression"]["coef"][0] += 0.25
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    with pytest.raises(ConfigError, match="sha256") as caught:
        load_answer_model(edited)
    assert FIT_COMMAND in str(caught.value) and str(edited) in str(caught.value)
    # The same edit with the hash recomputed loads, as a different model.
    payload["sha256"] = content_hash(payload)
    edited.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    before, after = load_answer_model(original), load_answer_model(edited)
    assert after.id != before.id and after.coef[0] == pytest.approx(before.coef[0] + 0.25)


def test_a_missing_artefact_names_the_fit_command(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "answer-model.json"
    with pytest.raises(ConfigError, match="not found") as caught:
        load_answer_model(missing)
    assert FIT_COMMAND in str(caught.value) and str(missing) in str(caught.value)


def test_an_artefact_fitted_on_other_features_is_stale(tmp_path: Path) -> None:
    def older(payload: dict[str, Any]) -> None:
        payload["features_version"] = "answer-features-0"

    with pytest.raises(ConfigError, match="stale") as caught:
        load_answer_model(write_copy(tmp_path, older, rehash=True))
    assert "refit" in str(caught.value) and FIT_COMMAND in str(caught.value)
    assert "answer-features-0" in str(caught.value)


def test_the_service_refuses_to_start_on_a_missing_model(small_mesh: SmallMesh, tmp_path: Path) -> None:
    service = MeshService(small_mesh.settings(answer_model=tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=re.escape(FIT_COMMAND)):
        service.warm_up()


# ====================================================================================== Unicode
def test_content_words_keep_letters_of_every_script() -> None:
    assert "ögedei" in content_words("Ögedei Khan's")
    assert "gedei" not in content_words("Ögedei Khan's")
    assert content_words("Когда умер Ögedei?") == {"когда", "умер", "ögedei"}
    assert content_words("ＭＲＲ") == content_words("MRR") == {"mrr"}  # NFKC: full-width letters fold


def test_non_ascii_question_words_are_lexical_evidence() -> None:
    question = "Когда умер Ögedei?"
    texts = ["Ögedei умер в 1241 году.", "The roastery ships coffee every weekday."]
    unit = np.eye(4)
    features = candidate_features(question, unit[0], texts, ["История", "Shipping"], unit[1:3], unit[1:3])
    lex, lex_c, lex_idf = select(features, ["lex", "lex_c", "lex_idf"]).T
    # Two of the question's three content words ("умер", "ögedei"; not "когда") are in the first text.
    assert lex[0] == pytest.approx(2 / 3) and lex_c[0] == pytest.approx(2 / 3) and lex_idf[0] > 0
    assert lex[1] == lex_c[1] == lex_idf[1] == 0.0


# ====================================================================================== table rows
def test_table_rows_are_candidates_in_column_value_form_and_nothing_else_is() -> None:
    candidates = answer_candidates(owners_chunk())
    assert [(c.kind, c.quoted) for c in candidates] == [("table", CHURN_ROW), ("table", NRR_ROW)]
    for c in candidates:  # the span is still the row as written
        assert OWNERS[c.start:c.end].startswith("| ") and OWNERS[c.start:c.end].endswith(" |")


@pytest.mark.parametrize("thresholds", [ALWAYS_ANSWER, ONLY_POSSIBLY_RELEVANT], ids=["answered", "possibly"])
def test_a_table_row_is_quoted_as_column_value_and_its_citation_verifies(
        hash_answer_scorer: Any, answer_model: AnswerModel, make_hits: Any, thresholds: Thresholds) -> None:
    hits = make_hits([owners_chunk()])
    answer = ExtractiveAnswerer(hash_answer_scorer, answer_model, thresholds=thresholds).answer(
        "Who owns the churn rate metric?", hits)
    assert answer.citations and answer.citations[0].chunk_id == "owners"
    quoted = [s for s in answer.sentences if s.markers]
    assert CHURN_ROW in [s.text for s in quoted]  # the key ("Churn rate") and every column name kept
    assert f"{CHURN_ROW[:-1]} [1]." in answer.text.splitlines()
    for sentence in quoted:
        assert sentence.text in (CHURN_ROW, NRR_ROW) and sentence.support >= MIN_SUPPORT
    assert answer.citations[0].scores["support"] >= MIN_SUPPORT and answer.dropped_citations == 0
    body = answer.text.removeprefix(f"{POSSIBLY_RELEVANT_TEXT}:")
    for fragment in NEVER_QUOTED:
        assert fragment not in body, fragment


def test_emphasis_is_dropped_from_quotes_and_the_quote_still_verifies(
        hash_answer_scorer: Any, answer_model: AnswerModel, make_hits: Any) -> None:
    text = ("## Missed pickup\n\nWhen the carrier misses the **17:00 pickup** at the `FC-RNO` dock, the "
            "shift lead rebooks the pallet for the morning linehaul.\n")
    chunk = Chunk(chunk_id="pickup", product_id="operations.fulfilment-ops", document="runbooks/pickup.md",
                  doc_revision="p" * 64, text=text, start=0, end=len(text), heading_path=("Missed pickup",),
                  n_tokens=30, n_model_tokens=36)
    answer = ExtractiveAnswerer(hash_answer_scorer, answer_model, thresholds=ALWAYS_ANSWER).answer(
        "What happens when the carrier misses the pickup?", make_hits([chunk]))
    assert answer.text == ("When the carrier misses the 17:00 pickup at the FC-RNO dock, the shift lead "
                           "rebooks the pallet for the morning linehaul [1].")
    assert answer.sentences[0].support == 1.0  # a verbatim quote, emphasis marks aside
    assert strip_emphasis("A **missed** `pickup` _today_") == "A missed pickup today"


# ====================================================================================== answer types
@pytest.mark.parametrize(("question", "kind"), [
    ("Who owns the churn metric?", "person"),
    ("Which team publishes the board pack?", "person"),
    ("Who succeeded Ögedei Khan?", "person"),
    ("When does the refund post?", "date"),
    ("What date was DR-014 approved?", "date"),
    ("How much does the gooseneck kettle cost?", "amount"),
    ("How many orders were late in May?", "number"),
    ("What percentage of orders shipped late?", "number"),
    ("Where is the sales-tax liability booked?", "place"),
    ("How is churn defined?", None),
    ("Why did the pickup fail?", None),
    ("What should an agent do if a kettle arrives dented?", None),
])
def test_expected_type_of_a_question(question: str, kind: str | None) -> None:
    assert expected_type(question) == kind


@pytest.mark.parametrize(("sentence", "kind", "found"), [
    ("Churn v2 took effect on 2026-07-01 after approval on 20 May 2026.", "date", ["2026-07-01", "20 May 2026"]),
    ("Orders placed by March 5, 2026 ship in Q2 2026.", "date", ["March 5, 2026", "Q2 2026"]),
    ("Support may refund up to $150.00; supervisors approve up to 500 dollars.", "amount",
     ["$150.00", "500 dollars"]),
    ("Refunds above €1,200 need approval and 41.8% of them are late.", "amount", ["€1,200", "41.8%"]),
    ("The team shipped 1,204 orders in 3 days.", "number", ["1,204", "3 days"]),
    ("The metric is owned by Priya Raman since May.", "person", ["Priya Raman"]),
    ("The empire passed to Ögedei Khan in 1229.", "person", ["Ögedei Khan"]),
    ("The office moved to São Paulo last year.", "place", ["São Paulo"]),
    ("Nothing of the kind is in this sentence.", "amount", []),
])
def test_spans_find_phrases_of_a_kind(sentence: str, kind: Any, found: list[str]) -> None:
    located = spans(sentence, kind)
    assert [sentence[a:b] for a, b in located] == found
    assert located == sorted(located) and all(b <= a2 for (_, b), (a2, _) in pairwise(located))


def test_a_short_answer_is_the_asked_for_phrase_with_its_span(
        hash_answer_scorer: Any, answer_model: AnswerModel, make_hits: Any) -> None:
    hits = make_hits([owners_chunk()])
    answerer = ExtractiveAnswerer(hash_answer_scorer, answer_model, thresholds=ALWAYS_ANSWER)
    answer = answerer.answer("Who owns the churn rate metric?", hits)
    assert answer.short is not None and (answer.short.text, answer.short.kind) == ("Priya Raman", "person")
    assert_short_answer_points_into_its_citation(answer)
    target = answerer.answer("What is the churn rate target?", hits)
    assert target.short is not None and (target.short.text, target.short.kind) == ("2.5%", "number")
    assert_short_answer_points_into_its_citation(target)
    how = answerer.answer("How is the churn rate target set?", hits)  # asks for more than a phrase
    assert how.outcome == "answered" and how.short is None


# ====================================================================================== the three outcomes
def test_forced_thresholds_give_each_outcome(hash_answer_scorer: Any, answer_model: AnswerModel,
                                             sample_chunks: Any, make_hits: Any) -> None:
    hits = make_hits(sample_chunks(*NET_REVENUE)[:3] + sample_chunks(*NOTICE)[:2])
    question = "Is sales tax collected from customers part of net revenue?"

    def ask(thresholds: Thresholds) -> Answer:
        return ExtractiveAnswerer(hash_answer_scorer, answer_model, thresholds=thresholds).answer(question, hits)

    answered, possibly, abstained = ask(ALWAYS_ANSWER), ask(ONLY_POSSIBLY_RELEVANT), ask(NEVER_ANSWER)
    assert [a.outcome for a in (answered, possibly, abstained)] == list(OUTCOMES)

    assert answered.answered and not answered.abstained and answered.citations
    assert all(s.markers for s in answered.sentences) and answered.closest_products == ()

    assert not possibly.answered and not possibly.abstained and possibly.citations
    assert possibly.text.startswith(f"{POSSIBLY_RELEVANT_TEXT}:\n") and possibly.short is None
    passages = possibly.text.splitlines()[1:]
    assert 1 <= len(passages) <= MAX_POSSIBLY_RELEVANT and all(re.search(r"\[\d+\]\.?$", p) for p in passages)
    assert len({c.chunk_id for c in possibly.citations}) == len(possibly.citations)  # one passage per chunk
    assert possibly.closest_products == tuple(dict.fromkeys(c.product_id for c in possibly.citations))

    assert abstained.abstained and abstained.citations == () and abstained.sentences == ()
    assert abstained.text.startswith(ABSTENTION_TEXT) and abstained.short is None
    assert abstained.closest_products == ("finance.revenue-reporting", "operations.fulfilment-ops")

    # Every answer records what decided it: the model, the thresholds used, and the two scores.
    for answer, thresholds in ((answered, ALWAYS_ANSWER), (possibly, ONLY_POSSIBLY_RELEVANT),
                               (abstained, NEVER_ANSWER)):
        d = answer.decision
        assert d["answer_model"] == answer_model.id and d["thresholds"] == thresholds.as_dict()
        assert d["answerer"] == answer.answerer == "extractive@2"
        assert d["answerability"] == answer.support and 0.0 <= d["answerability"] <= 1.0
        assert d["retrieval"] == answered.decision["retrieval"]  # same question, same hits: same scores
    assert possibly.decision["outcome"] == "possibly_relevant" and abstained.decision["outcome"] == "abstained"


def test_default_thresholds_come_from_the_model(hash_answer_scorer: Any, answer_model: AnswerModel,
                                                sample_chunks: Any, make_hits: Any) -> None:
    answerer = ExtractiveAnswerer(hash_answer_scorer, answer_model)
    assert answerer.thresholds == answer_model.thresholds
    answer = answerer.answer("What is net revenue?", make_hits(sample_chunks(*NET_REVENUE)))
    assert answer.decision["thresholds"] == answer_model.thresholds.as_dict()
    scores = answer.decision["answerability"], answer.decision["retrieval"]
    t = answer_model.thresholds
    expected = ("answered" if scores[0] >= t.answer else "possibly_relevant" if scores[1] >= t.relevant
                else "abstained")
    assert answer.outcome == expected  # (an answered draft could still fall back; this one does not)


# ====================================================================================== the LLM answerer
class RecordingHandler(BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            **kwargs: Any) -> None:
        self.calls.extend(messages)


def llm_answerer(scorer: Any, model: AnswerModel, thresholds: Thresholds, *replies: str,
                 ) -> tuple[LLMAnswerer, RecordingHandler]:
    recorder = RecordingHandler()
    messages: Iterator[AIMessage] = iter(AIMessage(content=r) for r in replies)
    chat = GenericFakeChatModel(messages=messages, callbacks=[recorder])
    return LLMAnswerer(chat, scorer, model, thresholds=thresholds), recorder


def test_llm_answerer_gives_the_same_three_outcomes_and_a_short_answer(
        hash_answer_scorer: Any, answer_model: AnswerModel, make_hits: Any) -> None:
    hits = make_hits([owners_chunk()])
    question = "Who owns the churn rate metric?"

    llm, calls = llm_answerer(hash_answer_scorer, answer_model, ALWAYS_ANSWER,
                              "Priya Raman owns the churn rate metric, with a target of 2.5% [1].")
    answered = llm.answer(question, hits)
    assert len(calls.calls) == 1 and answered.outcome == "answered" and answered.citations
    assert answered.sentences[0].markers == (1,) and answered.model == "generic-fake-chat-model"
    assert answered.short is not None and answered.short.text == "Priya Raman"
    assert_short_answer_points_into_its_citation(answered)
    assert answered.decision["answer_model"] == answer_model.id and answered.decision["model"] == answered.model

    llm, calls = llm_answerer(hash_answer_scorer, answer_model, ONLY_POSSIBLY_RELEVANT, "never asked [1]")
    possibly = llm.answer(question, hits)
    assert calls.calls == [] and possibly.outcome == "possibly_relevant" and not possibly.abstained
    assert possibly.text.startswith(POSSIBLY_RELEVANT_TEXT) and CHURN_ROW[:-1] in possibly.text
    assert possibly.citations and possibly.short is None

    llm, calls = llm_answerer(hash_answer_scorer, answer_model, NEVER_ANSWER, "never asked [1]")
    abstained = llm.answer(question, hits)
    assert calls.calls == [] and abstained.outcome == "abstained" and abstained.abstained
    assert abstained.citations == () and abstained.closest_products == ("customer.subscription-metrics",)


@pytest.mark.parametrize("reply", ["NOT FOUND", "Quokkas on Rottnest Island nap all afternoon [1]."],
                         ids=["not-found", "unsupported"])
def test_a_failed_llm_draft_falls_back_like_the_scores_would(hash_answer_scorer: Any, answer_model: AnswerModel,
                                                             make_hits: Any, reply: str) -> None:
    hits = make_hits([owners_chunk()])
    llm, calls = llm_answerer(hash_answer_scorer, answer_model, ALWAYS_ANSWER, reply)
    possibly = llm.answer("Who owns the churn rate metric?", hits)
    assert len(calls.calls) == 1  # asked, but the draft had nothing supported
    assert possibly.outcome == "possibly_relevant" and possibly.text.startswith(POSSIBLY_RELEVANT_TEXT)
    assert "Quokkas" not in possibly.text and possibly.citations

    llm, _ = llm_answerer(hash_answer_scorer, answer_model, ANSWER_OR_ABSTAIN, reply)
    abstained = llm.answer("Who owns the churn rate metric?", hits)
    assert abstained.outcome == "abstained" and abstained.citations == ()
    assert abstained.dropped_citations == (1 if "[1]" in reply else 0)


# ====================================================================================== provenance
def search_of(hits: list[RetrievedChunk]) -> SearchResult:
    return SearchResult(release_id=hits[0].release_id, hits=tuple(hits), params={"k": len(hits)},
                        timings_ms={"dense": 1.5})


def test_provenance_keeps_outcome_short_answer_and_decision(
        tmp_path: Path, hash_answer_scorer: Any, answer_model: AnswerModel, make_hits: Any) -> None:
    hits = make_hits([owners_chunk()])
    question = "Who owns the churn rate metric?"
    answer = ExtractiveAnswerer(hash_answer_scorer, answer_model, thresholds=ALWAYS_ANSWER).answer(question, hits)
    assert answer.short is not None
    analyst = Principal("ana", frozenset({"analyst"}))
    record = record_from("req-stage-1", analyst, question, search_of(hits), answer, {"answer": 2.0})
    assert record.record_version == RECORD_VERSION == 2
    assert (record.outcome, record.short["text"], record.decision["answer_model"]) == (
        "answered", "Priya Raman", answer_model.id)
    stored = record.as_dict()
    assert stored["short"] == {"text": "Priya Raman", "kind": "person", "marker": answer.short.marker,
                               "start": answer.short.start, "end": answer.short.end}
    assert stored["decision"]["thresholds"] == ALWAYS_ANSWER.as_dict()

    log = create_provenance_log("sqlite", tmp_path)
    log.warm_up()
    try:
        log.append(record)
        abstained = ExtractiveAnswerer(hash_answer_scorer, answer_model, thresholds=NEVER_ANSWER).answer(
            question, hits)
        log.append(record_from("req-stage-2", analyst, question, search_of(hits), abstained))
        got = log.get("req-stage-1", analyst)
        assert (got.outcome, got.short, got.decision) == (record.outcome, record.short, record.decision)
        assert log.get("req-stage-2", analyst).outcome == "abstained"
        assert log.get("req-stage-2", analyst).decision["outcome"] == "abstained"
        assert log.verify().ok
    finally:
        log.close()


@pytest.mark.parametrize("abstained", [False, True])
def test_a_version_1_record_still_reads_with_its_outcome_from_abstained(
        hash_answer_scorer: Any, answer_model: AnswerModel, make_hits: Any, abstained: bool) -> None:
    hits = make_hits([owners_chunk()])
    answer = ExtractiveAnswerer(hash_answer_scorer, answer_model,
                                thresholds=NEVER_ANSWER if abstained else ALWAYS_ANSWER).answer("Who owns churn?", hits)
    current = record_from("req-v1", Principal("ana", frozenset({"analyst"})), "Who owns churn?", search_of(hits),
                          answer).as_dict()
    old = {k: v for k, v in current.items() if k not in ("outcome", "short", "decision")} | {"record_version": 1}
    old["hash"] = record_hash(old)

    record = ProvenanceRecord.from_dict(old)
    assert record.record_version == 1 and record.abstained is abstained
    assert record.outcome == ("abstained" if abstained else "answered")
    assert record.short is None and record.decision == {}
    assert record.as_dict() == old and record_hash(record.as_dict()) == old["hash"]  # its hash still verifies


# ====================================================================================== slow: sample mesh
ANALYST = Principal(id="analyst", roles=frozenset({"analyst"}))


@pytest.mark.slow
def test_short_answers_over_the_sample_mesh(sample_searcher: Any, answer_scorer: Any,
                                            answer_model: AnswerModel) -> None:
    owner = Catalog.load([SAMPLE_MESH]).products["customer.subscription-metrics"].owner.name
    answerer = ExtractiveAnswerer(answer_scorer, answer_model)  # the model's own thresholds
    cases = [("Who owns the subscription metrics product?", "person", owner),
             ("When did churn v2 take effect?", "date", "2026-07-01"),
             ("How much can a support agent refund without a supervisor?", "amount", "$150")]
    for question, kind, expected in cases:
        hits = sample_searcher.search(SearchRequest(query=question, principal=ANALYST)).hits
        answer = answerer.answer(question, hits)
        assert answer.outcome == "answered", (question, answer.decision)
        assert answer.short is not None and (answer.short.kind, answer.short.text) == (kind, expected), question
        assert_short_answer_points_into_its_citation(answer)

    question = "How is churn rate defined?"
    hits = sample_searcher.search(SearchRequest(query=question, principal=ANALYST)).hits
    answer = answerer.answer(question, hits)
    assert answer.outcome == "answered" and answer.short is None
    assert "churn" in answer.text.lower()
