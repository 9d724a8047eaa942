"""The version cues and routing beyond "v1" / "before July" (retrieval/version_cues.py), and the version
stage's own answers over the sample mesh (retrieval/version_questions.py): what an older version said,
"what changed" without named versions, and a version that does not exist."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from indexing.releases import ProductEntry, Release
from indexing.types import Embedder
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from retrieval.service import MeshService
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.version_cues import (
    RULE_WORDS,
    asks_change,
    change_pair,
    cue_version,
    detect_cue,
    missing_numbers,
)
from retrieval.version_questions import VersionRouter
from retrieval.versions import version_index

PRODUCT = "customer.subscription-metrics"
ANALYST = Principal("version-routing-test", frozenset({"analyst"}))
TODAY = date(2026, 12, 6)


def _entry(version: str, since: str | None = None) -> ProductEntry:
    return ProductEntry(PRODUCT, version, "customer", "internal", f"cv-{version}", f"ev-{version}", {}, 1, since)


@pytest.fixture(scope="module")
def three():
    """Versions 1.0.0 (undated), 1.5.0 (from 2025-06-01) and 2.0.0 (current, from 2026-07-01)."""
    release = Release("rel-a", "2026-12-01T00:00:00+00:00", "faiss", "m",
                      {PRODUCT: _entry("2.0.0", "2026-07-01T00:00:00+00:00")},
                      kept={PRODUCT: {"1.0.0": _entry("1.0.0"), "1.5.0": _entry("1.5.0", "2025-06-01T00:00:00+00:00")}})
    return version_index(release, [])[PRODUCT]


@pytest.mark.parametrize("question,version", [
    ("what did the first version say about pauses?", "1.0.0"),
    ("how was churn defined in the second release?", "1.5.0"),
    ("what was churn before v2?", "1.5.0"),
    ("how did churn work pre-2.0?", "1.5.0"),
    ("in the old churn rule, how were pauses handled?", "1.5.0"),
    ("how was churn counted before the last version?", "1.5.0"),
    ("how was churn counted before?", "1.5.0"),
    ("how did we count churn originally?", "1.0.0"),
    ("how was churn measured last year?", "1.5.0"),  # 2025-12-31
    ("what did churn mean in Q1 2025?", "1.0.0"),  # 2025-03-31, before 1.5.0
    ("how is churn counted this year?", "2.0.0"),
    # other users' wording (dev set 3)
    ("as of 1 March 2026 how were gift subs counted in churn", "1.5.0"),  # a day written first
    ("how were pauses treated on the 3rd of June 2025?", "1.5.0"),
    ("what was the churn rule in 2025-03?", "1.0.0"),  # an ISO month
    ("how did we treat gift subs in churn last spring?", "1.5.0"),  # spring 2026: March to May
    ("prior to the update, were paused subscribers ever churned?", "1.5.0"),
    ("before they rewrote it, how was churn counted?", "1.5.0"),
])
def test_cues_select_a_version(three, question, version):
    cue = detect_cue(question, 2026, TODAY)
    assert cue is not None, question
    chosen = cue_version(cue, three)
    assert chosen is not None and chosen.version == version, (question, cue)


@pytest.mark.parametrize("question", [
    "How old is the rule?",
    "what happens before the last retry?",
    "how is churn counted for 2000 subscribers?",
    "which subscribers are in the first month of a subscription?",
    "what on-time target was the new site held to at first?",
])
def test_wording_that_is_no_version_cue(question):
    assert detect_cue(question, 2026, TODAY) is None


def test_a_time_the_data_is_asked_about_is_told_from_a_rule_asked_about():
    data, rule = "what was our churn rate in Q2 2026?", "how were pauses treated in Q2 2026?"
    assert detect_cue(data, 2026, TODAY).during and detect_cue(rule, 2026, TODAY).during
    assert not RULE_WORDS.search(data) and RULE_WORDS.search(rule)


@pytest.mark.parametrize("question,default,pair", [
    ("diff between the first and second version of the churn metric?", False, ("1.0.0", "1.5.0")),
    ("compare churn in v1.0 vs v2", False, ("1.0.0", "2.0.0")),
    ("what's new since version 1.5?", False, ("1.5.0", "2.0.0")),
    ("how does the old churn rule differ from today's?", False, ("1.5.0", "2.0.0")),
    ("what changed in how we count churn?", False, None),
    ("what changed in how we count churn?", True, ("1.5.0", "2.0.0")),
    ("compare churn for Columbus-served and Reno-served subscribers", True, None),  # two things, not two times
])
def test_change_pairs(three, question, default, pair):
    assert asks_change(question)
    found = change_pair(question, three, default=default)
    assert (None if found is None else (found[0].version, found[1].version)) == pair


def test_versions_that_do_not_exist_are_named(three):
    assert missing_numbers("what did version 3 say?", three) == ("3",)
    assert missing_numbers("diff between the first and fifth version", three) == ()  # "fifth": no ordinal cue
    assert missing_numbers("what did version 1.5 say?", three) == ()


# ------------------------------------------------------------------------------- the sample mesh
@pytest.fixture(scope="module")
def service(sample_index: Path, minilm: Embedder, tmp_path_factory: pytest.TempPathFactory) -> MeshService:
    data_dir = tmp_path_factory.mktemp("version-routing") / "data"
    shutil.copytree(sample_index, data_dir)  # this module writes provenance records
    settings = RetrievalSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH])
    svc = MeshService(settings, context=ServingContext(settings, embedder=minilm))
    svc.warm_up()
    return svc


def _ask(service: MeshService, question: str):
    return service.ask(service.limits.search_request(ANALYST, question)).answer


@pytest.mark.slow
@pytest.mark.parametrize("question", ["How did the old churn rule treat a bounced card payment?",
                                      "back in May, how were long pauses counted in churn?"])
def test_a_question_about_the_old_rule_is_answered_with_what_that_version_said(service: MeshService, question):
    answer = _ask(service, question)
    assert answer.outcome == "answered" and answer.answerer.startswith("meshrag.versions.pinned@"), answer.text
    assert answer.decision["version"] == "1.0.0" and answer.decision["compared_with"] == "2.0.0"
    assert {c.product_version for c in answer.citations} == {"1.0.0"}
    assert "in effect until 2026-06-30" in answer.sentences[0].text
    # the old definition leads; every quote is the cited v1 chunk's own text
    assert "cancelled during that month" in answer.sentences[1].text
    by_marker = {c.marker: c for c in answer.citations}
    for sentence in answer.sentences[1:]:
        quote = sentence.text.split('"', 1)[1].rsplit('"', 1)[0]
        cited = " ".join(" ".join(by_marker[m].text for m in sentence.markers).replace("**", "").replace("`", "").split())
        assert sentence.markers and all(part.strip(" |") in cited for part in quote.split(": ", 1)[-1].split("; "))


@pytest.mark.slow
def test_what_changed_without_named_versions_compares_the_previous_and_current(service: MeshService):
    answer = _ask(service, "what changed in the way churn gets calculated?")
    assert answer.decision.get("rule") == "version-diff", answer.text
    assert (answer.decision["from"], answer.decision["to"]) == ("1.0.0", "2.0.0")
    assert {c.product_version for c in answer.citations} == {"1.0.0", "2.0.0"}


@pytest.mark.slow
def test_a_version_that_does_not_exist_is_an_abstention_naming_those_that_do(service: MeshService):
    answer = _ask(service, "what did the churn rate page say in version 7?")
    assert answer.outcome == "abstained" and not answer.citations
    assert "no version 7" in answer.text and "1.0.0" in answer.text and "2.0.0" in answer.text


@pytest.mark.slow
def test_a_pinned_question_with_no_topic_word_in_that_version_is_left_to_the_answerer(service: MeshService):
    answer = _ask(service, "under v1, what was the espresso machine warranty?")
    assert not answer.answerer.startswith("meshrag.versions.pinned@")


# ------------------------------------------------------------ seasons, halves, "over a time" (dev set 2)
@pytest.mark.parametrize("question,first,last", [
    ("how were failed payments handled for churn in spring 2026?", date(2026, 3, 1), date(2026, 5, 31)),
    ("what changed with churn over the summer of 2026?", date(2026, 6, 1), date(2026, 8, 31)),
    ("how was churn counted in the first half of 2026?", date(2026, 1, 1), date(2026, 6, 30)),
    ("what did churn mean in late 2025?", date(2025, 9, 1), date(2025, 12, 31)),
    ("how was churn counted in winter 2026?", date(2025, 12, 1), date(2026, 2, 28)),
    ("how was churn counted in early summer?", date(2026, 6, 1), date(2026, 6, 30)),  # the current version's year
])
def test_seasons_and_parts_of_a_year_are_times_a_question_is_set_in(question, first, last):
    cue = detect_cue(question, 2026, TODAY)
    assert cue is not None and cue.during and cue.span == (first, last) and cue.day == last, cue


def test_what_changed_over_a_time_that_saw_a_new_version_compares_its_start_and_end(three):
    summer = "what changed with churn over the summer of 2026?"
    pair = change_pair(summer, three, cue=detect_cue(summer, 2026, TODAY))
    assert pair is not None and (pair[0].version, pair[1].version) == ("1.5.0", "2.0.0")
    quiet = "what changed with churn over the summer of 2025?"  # 1.5.0 was in effect the whole summer
    assert change_pair(quiet, three, cue=detect_cue(quiet, 2026, TODAY)) is None


def test_a_missing_apostrophe_still_asks_what_changed(three):
    question = "whats different between churn v1 and v2"
    assert asks_change(question)
    pair = change_pair(question, three)
    assert pair is not None and (pair[0].version, pair[1].version) == ("1.5.0", "2.0.0")  # v1 = the newest 1.x


def test_the_old_worked_example_is_a_previous_version_cue(three):
    cue = detect_cue("what was the april 2026 churn figure in the old worked example?", 2026, TODAY)
    assert cue is not None and cue.relative == "previous" and cue_version(cue, three).version == "1.5.0"


@pytest.mark.slow
@pytest.mark.parametrize("question,detail", [
    # the question's rare words find a detail the two meaning rankings rank low: it is quoted too
    ("which decision record did the original churn definition come from", "DR-009"),
    ("when were monthly churn figures final under the first version?", "5th of the following month"),
])
def test_a_pinned_answer_quotes_the_detail_the_question_asks_for(service: MeshService, question, detail):
    answer = _ask(service, question)
    assert answer.answerer.startswith("meshrag.versions.pinned@") and detail in answer.text, answer.text
    assert {c.product_version for c in answer.citations} == {"1.0.0"}


@pytest.mark.slow
def test_what_changed_over_the_summer_the_new_version_took_effect_is_a_diff(service: MeshService):
    answer = _ask(service, "what changed with churn over the summer of 2026?")
    assert answer.decision.get("rule") == "version-diff", answer.text
    assert (answer.decision["from"], answer.decision["to"]) == ("1.0.0", "2.0.0")


def test_last_season_is_the_latest_one_over():
    assert detect_cue("how was churn counted last winter?", 2026, date(2026, 1, 15)).span == (
        date(2024, 12, 1), date(2025, 2, 28))
    assert detect_cue("how was churn counted last summer?", 2026, TODAY).span == (date(2026, 6, 1), date(2026, 8, 31))


@pytest.mark.parametrize("question,pair", [
    ("churn v1 -> v2 changes pls", ("1.5.0", "2.0.0")),  # "v1": the newest 1.x
    ("from v1.5 to v2, differences?", ("1.5.0", "2.0.0")),
])
def test_two_versions_named_with_a_change_word(three, question, pair):
    assert asks_change(question)
    found = change_pair(question, three)
    assert found is not None and (found[0].version, found[1].version) == pair


def test_two_versions_named_without_a_change_word_is_no_diff():
    assert not asks_change("what did v1 and v2 say about pauses?")


def test_becoming_churn_is_a_rule_asked_about():
    assert RULE_WORDS.search("back in spring, a failed payment became churn when?")
    assert not RULE_WORDS.search("what was our churn rate back in spring?")


@pytest.mark.slow
def test_an_older_versions_sentences_are_embedded_ahead_with_the_answer_passages(service: MeshService):
    # The first question about an older version must not wait for its sentences to be embedded (about half
    # a second for the sample's churn rule 1.0.0 on two cores).
    report = service.prepare_answer_vectors()
    older = VersionRouter(service.context, service.search).passages(service.context.release())
    assert older and report["passages"] >= len(set(older))
    assert service.answerer.scorer.missing(older) == []


@pytest.mark.parametrize("question", [
    "originally, how many different reasons made a subscriber count as lost?",  # an adjective, not a change
    "which different plans do we sell?",
])
def test_different_before_a_noun_asks_no_change(question):
    assert not asks_change(question)


@pytest.mark.parametrize("question", [
    "old vs new: when is a month's figure final?",
    "then and now, how do pauses count?",
    "how is the old rule different from the new one?",
])
def test_two_sides_said_without_numbers_ask_a_change(three, question):
    assert asks_change(question)
    found = change_pair(question, three, default=True)
    assert found is not None and (found[0].version, found[1].version) == ("1.5.0", "2.0.0")


@pytest.mark.parametrize("question", [
    "what did the first release's change history say about 2024?",  # a document's section, not a change
    "what does the changelog of the old rule list?",
])
def test_a_change_history_is_a_document_not_a_change(question):
    assert not asks_change(question)
