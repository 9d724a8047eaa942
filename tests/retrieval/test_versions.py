"""Product versions: kept versions indexed beside the current one, pins and as-of dates, the version-question
rule and the "what changed" answer, over the sample mesh indexed by the real pipeline with the real MiniLM."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from indexing.releases import ProductEntry, Release, ReleaseRegistry
from indexing.types import Embedder
from knowledge.errors import ProductNotFound
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from retrieval.requests import RequestLimitExceeded, RequestLimits
from retrieval.service import MeshService
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import SearchRequest
from retrieval.version_questions import detect_cue
from retrieval.versions import ProductVersion, version_at, version_index
from tests.retrieval.version_questions import PRODUCT, VERSION_QUESTIONS

ANALYST = Principal("versions-test", frozenset({"analyst"}))
OLD, NEW = "1.0.0", "2.0.0"


# ------------------------------------------------------------------------------------------ no model
def _entry(version: str, since: str | None = None) -> ProductEntry:
    return ProductEntry(PRODUCT, version, "customer", "internal", f"cv-{version}", f"ev-{version}", {}, 1, since)


def test_version_at_takes_the_newest_dated_on_or_before_the_day_and_the_oldest_before_any():
    versions = tuple(version_index(Release("rel-a", "2026-12-01T00:00:00+00:00", "faiss", "m",
                                           {PRODUCT: _entry(NEW, "2026-07-01T00:00:00+00:00")},
                                           kept={PRODUCT: {OLD: _entry(OLD)}}), [])[PRODUCT])
    assert [pv.version for pv in versions] == [OLD, NEW] and versions[1].current
    assert version_at(versions, date(2026, 6, 30)).version == OLD
    assert version_at(versions, date(2026, 7, 1)).version == NEW
    assert version_at(versions, date(2020, 1, 1)).version == OLD  # nothing older is kept


def test_an_older_release_keeps_a_published_version_addressable():
    old = Release("rel-old", "2026-01-01T00:00:00+00:00", "faiss", "m", {PRODUCT: _entry("1.5.0")})
    new = Release("rel-new", "2026-08-01T00:00:00+00:00", "faiss", "m", {PRODUCT: _entry(NEW)})
    versions = version_index(new, [old, new])[PRODUCT]
    assert [(pv.version, pv.release_id) for pv in versions] == [("1.5.0", "rel-old"), (NEW, "rel-new")]
    # Dated by the release that first served each one as current.
    assert versions[1].since == datetime(2026, 8, 1, tzinfo=UTC)
    assert version_at(versions, date(2026, 7, 31)).version == "1.5.0"


@pytest.mark.parametrize(("question", "expect"), [
    ("what did v1 say?", ("1",)), ("in version 2.0.0, how?", ("2.0.0",)), ("between 1.0.0 and 2.x", ("1.0.0", "2")),
])
def test_named_versions_are_cues(question: str, expect: tuple[str, ...]):
    cue = detect_cue(question, 2026)
    assert cue is not None and cue.numbers == expect


@pytest.mark.parametrize(("question", "day"), [
    ("What was the churn definition before July?", date(2026, 6, 30)),
    ("before 2026-07-01, which rule?", date(2026, 6, 30)),
    ("how was it counted in 2025?", date(2025, 12, 31)),
    ("back in June 2026, how?", date(2026, 6, 30)),
])
def test_dates_are_cues(question: str, day: date):
    cue = detect_cue(question, 2026)
    assert cue is not None and cue.day == day


def test_a_question_without_a_cue_has_none():
    assert detect_cue("How is churn counted for paused subscribers?", 2026) is None


def test_the_request_builder_refuses_malformed_pins_and_dates():
    limits = RequestLimits(2000, 50, 20, 8)
    with pytest.raises(RequestLimitExceeded) as bad_pin:
        limits.search_request(ANALYST, "q", products=["customer.subscription-metrics@"])
    assert bad_pin.value.loc == ["body", "products", 0]
    with pytest.raises(RequestLimitExceeded) as bad_date:
        limits.search_request(ANALYST, "q", as_of="June 2026")
    assert bad_date.value.loc == ["body", "as_of"] and "YYYY-MM-DD" in str(bad_date.value)
    req = limits.search_request(ANALYST, "q", products=[f"{PRODUCT}@{OLD}"], as_of="2026-06-30")
    assert req.products == (f"{PRODUCT}@{OLD}",) and req.as_of == date(2026, 6, 30)


# ------------------------------------------------------------------------------- the sample mesh


@pytest.fixture(scope="module")
def service(sample_index: Path, minilm: Embedder, tmp_path_factory: pytest.TempPathFactory) -> MeshService:
    data_dir = tmp_path_factory.mktemp("versions") / "data"
    shutil.copytree(sample_index, data_dir)  # this module writes provenance records
    settings = RetrievalSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH])
    svc = MeshService(settings, context=ServingContext(settings, embedder=minilm))
    svc.warm_up()
    return svc


@pytest.mark.slow
def test_indexing_keeps_the_history_version_as_its_own_product_version(sample_index: Path):
    release = ReleaseRegistry(sample_index).current()
    assert release is not None
    current, kept = release.products[PRODUCT], release.kept[PRODUCT][OLD]
    assert current.product_version == NEW and current.since == "2026-07-01T00:00:00+00:00"
    assert kept.product_version == OLD and set(kept.documents) == {"metrics/churn-rate.md", "_catalog"}
    assert kept.chunk_version != current.chunk_version and kept.embedding_version != current.embedding_version
    assert kept.documents["metrics/churn-rate.md"] != current.documents["metrics/churn-rate.md"]
    assert kept.embedding_version in release.collections
    assert set(release.kept) == {PRODUCT}  # no other product keeps a version


@pytest.mark.slow
@pytest.mark.parametrize("question", ["How does a failed payment count as churn?", "Are paused subscribers churned?",
                                      "What was the churn definition before July?"])
def test_unpinned_search_serves_current_versions_only(service: MeshService, question: str):
    found = service.search(SearchRequest(query=question, principal=ANALYST, k=20))
    assert found.hits and all(h.product_version != OLD for h in found.hits)
    assert "versions_searched" not in found.params


@pytest.mark.slow
def test_a_pin_answers_the_old_churn_definition_and_replays(service: MeshService):
    req = service.limits.search_request(ANALYST, "On which day does a failed card payment count as churn?",
                                        products=[f"{PRODUCT}@{OLD}"])
    result = service.ask(req)
    assert result.answer.citations and {c.product_version for c in result.answer.citations} == {OLD}
    assert "day of failure" in " ".join(c.text for c in result.answer.citations) or \
        "2025-08-25" in result.answer.text
    record = result.record
    assert record is not None
    assert record.retrieval_params["filters"]["products"] == [f"{PRODUCT}@{OLD}"]
    assert record.retrieval_params["versions_searched"] == {f"{PRODUCT}@{OLD}": OLD}
    assert {r.product_version for r in record.retrieved} == {OLD}
    assert service.replay(record.request_id).same


@pytest.mark.slow
def test_as_of_before_the_v2_date_serves_v1_and_after_it_v2(service: MeshService):
    question = "When does a failed payment count as churn?"
    before = service.ask(service.limits.search_request(ANALYST, question, products=[PRODUCT], as_of="2026-06-30"))
    after = service.search(service.limits.search_request(ANALYST, question, products=[PRODUCT], as_of="2026-07-01"))
    assert {h.product_version for h in before.search.hits} == {OLD}
    assert {h.product_version for h in after.hits} == {NEW}
    assert before.record is not None and before.record.retrieval_params["as_of"] == "2026-06-30"
    assert service.replay(before.record.request_id).same
    # Without a product filter as_of moves only products with versions: the others stay as they are.
    everything = service.search(service.limits.search_request(ANALYST, "net revenue and churn", k=30,
                                                              as_of="2026-06-30"))
    assert {h.product_version for h in everything.hits if h.product_id == PRODUCT} <= {OLD}
    assert any(h.product_id != PRODUCT for h in everything.hits)


@pytest.mark.slow
def test_version_questions_are_answered_from_the_right_version(service: MeshService):
    right = []
    for question, version in VERSION_QUESTIONS:
        result = service.ask(service.limits.search_request(ANALYST, question))
        cited = [c.product_version for c in result.answer.citations if c.product_id == PRODUCT]
        right.append(bool(cited) and all(v == version for v in cited))
    assert sum(right) / len(right) >= 0.90, [q for (q, _), ok in zip(VERSION_QUESTIONS, right) if not ok]


@pytest.mark.slow
@pytest.mark.parametrize("question", ["What changed between 1.0.0 and 2.x?",
                                      "What changed in the churn rule between version 1 and version 2?"])
def test_what_changed_cites_both_versions_and_replays(service: MeshService, question: str):
    result = service.ask(service.limits.search_request(ANALYST, question))
    answer = result.answer
    assert answer.outcome == "answered" and answer.decision["rule"] == "version-diff"
    assert {c.product_version for c in answer.citations} == {OLD, NEW}
    assert "day of failure" in answer.text and "14-day dunning window" in answer.text
    for sentence in answer.sentences:  # each quoted side cites its own version's chunk, which holds the quote
        if sentence.text.startswith(("In metrics/", "Version ")):
            quote = sentence.text.split('"')[1]
            cited = [c for c in answer.citations if c.marker in sentence.markers]
            assert cited and all(c.product_version == (OLD if " said:" in sentence.text else NEW) for c in cited)
            assert quote.split(". ")[0].replace("**", "")[:40] in " ".join(c.text.replace("**", "").replace("`", "")
                                                                             for c in cited)
    assert result.record is not None and service.replay(result.record.request_id).same


@pytest.mark.slow
def test_unknown_version_names_the_versions_that_exist(service: MeshService):
    with pytest.raises(ProductNotFound) as err:
        service.search(SearchRequest(query="churn", principal=ANALYST, products=(f"{PRODUCT}@3.0.0",)))
    assert f"{PRODUCT} has no version '3.0.0'; it has versions {OLD}, {NEW}" in str(err.value)


@pytest.mark.slow
def test_a_version_of_an_unreadable_product_looks_missing(service: MeshService):
    nobody = Principal("nobody")  # reads public products only: subscription metrics is internal
    errors = []
    for pinned in (f"{PRODUCT}@{OLD}", f"{PRODUCT}@9.9.9", "customer.nope@1.0.0"):
        with pytest.raises(ProductNotFound) as err:
            service.search(SearchRequest(query="churn", principal=nobody, products=(pinned,)))
        errors.append(str(err.value).replace(pinned.split("@")[0], "X"))
    assert errors[0] == errors[1] == errors[2] and OLD not in errors[0]


def test_product_version_key_names_other_versions():
    entry = _entry(OLD)
    assert ProductVersion(PRODUCT, OLD, entry, None, False, "r").key == f"{PRODUCT}@{OLD}"
    assert ProductVersion(PRODUCT, OLD, entry, None, True, "r").key == PRODUCT
