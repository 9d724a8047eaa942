"""The discovery recogniser on the ways people ask (written for the recogniser's rules, in words of our own,
not taken from any golden set): cue words inside a cue's gap still link a product, whom-to-contact
questions about a topic, more cue wordings, aggregations said as "anything / what … stuff / what can I
read", topic words that no product covers, and a pinned (older-version) search left to the version stage."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from knowledge.catalog import Catalog
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from retrieval.discovery import CatalogFacts, DiscoveryAnswerer, recognise
from retrieval.discovery.cache import KeptVersions
from retrieval.types import SearchRequest

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ROLES = {"anonymous": frozenset(), "employee": frozenset({"employee"}), "analyst": frozenset({"analyst"}),
         "people-partner": frozenset({"people-partner"}), "support-agent": frozenset({"support-agent"}),
         "finance-analyst": frozenset({"finance-analyst"})}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load([SAMPLE_MESH])


@pytest.fixture(scope="module")
def facts(catalog: Catalog) -> CatalogFacts:
    return CatalogFacts.of(catalog)


def who(role: str) -> Principal:
    return Principal(id=f"test-{role}", roles=ROLES[role])


def _recognise(catalog, facts, question, role="analyst", retrieved=(), evidence=None):
    principal = who(role)
    visible = [p for p in catalog if principal.can_discover(p)]
    return recognise(question, visible, principal, facts, retrieved, evidence)


@pytest.mark.parametrize("question,role,ask,product", [
    # a word in a cue's gap ("where … kept") names the product
    ("where are the support macros and scripts kept?", "analyst", "which", "customer.support-knowledge"),
    # whom to contact about a topic: no product noun needed
    ("who do I bug about refund approvals?", "analyst", "contact", "customer.support-knowledge"),
    ("who should we talk to about gross margin?", "analyst", "contact", "finance.revenue-reporting"),
    ("who should I chase about pay bands?", "employee", "contact", "people.compensation-handbook"),
    ("which team is the roasting stuff part of?", "analyst", "owner", "operations.fulfilment-ops"),
    ("who runs the mesh handbook?", "anonymous", "owner", "platform.mesh-handbook"),
    ("who gets to look at the churn definitions?", "employee", "access", "customer.subscription-metrics"),
    ("which part of the business does the revenue reporting product fall under?", "analyst", "domain",
     "finance.revenue-reporting"),
    ("what release number is the support KB on?", "support-agent", "version", "customer.support-knowledge"),
    ("is anything in the fulfilment docs stale?", "analyst", "freshness", "operations.fulfilment-ops"),
    # wider wording (dev set 2)
    ("who's the go-to person for the coffee shipping side of things?", "analyst", "contact",
     "operations.fulfilment-ops"),
    # "current" said of a product asks how fresh it is; "gone off" too
    ("is the roasting and packing info still current or has it gone off?", "employee", "freshness",
     "operations.fulfilment-ops"),
    ("has anyone looked at the bonus plan docs recently?", "employee", "freshness", "people.compensation-handbook"),
    ("how long do old copies of the subscriber metrics stick around?", "analyst", "retention",
     "customer.subscription-metrics"),
    ("is the mesh rulebook public or locked down?", "anonymous", "classification", "platform.mesh-handbook"),
    ("what versions of the churn definitions do we have?", "analyst", "version", "customer.subscription-metrics"),
    # a typo in a long word still links; "handles" is no form of "handbook"
    ("how old is the fulfillment documentation", "analyst", "freshness", "operations.fulfilment-ops"),
    ("what team handles the bean roasting docs?", "analyst", "owner", "operations.fulfilment-ops"),
    # other users' wording (dev set 3)
    # a chat fragment: the fact asked and a topic word, no question word
    ("churn owner?", "analyst", "owner", "customer.subscription-metrics"),
    ("churn defs owner?", "analyst", "owner", "customer.subscription-metrics"),
    # whether a product can still be relied on is its freshness
    ("fulfilment docs - still valid or expired?", "employee", "freshness", "operations.fulfilment-ops"),
    # how open a product is, said as a non-native speaker might
    ("is the comp handbook open for everybody or it is secret?", "employee", "classification",
     "people.compensation-handbook"),
])
def test_one_product_in_other_words(catalog, facts, question, role, ask, product):
    found = _recognise(catalog, facts, question, role)
    assert found is not None, question
    assert not found.aggregate and ask in found.asks and found.products == (product,), found


@pytest.mark.parametrize("question,role,filters", [
    ("anything out of date?", "analyst", {"freshness": "stale"}),
    ("what restricted stuff is there?", "people-partner", {"classification": "restricted"}),
    ("what can I see here?", "anonymous", {"readable": "yes"}),
    ("is any of the data I may read stale?", "employee", {"freshness": "stale", "readable": "yes"}),
    ("what's in the people domain?", "people-partner", {"domain": "people"}),
    # wider wording (dev set 2)
    # a word of one team's name, or a domain, as the one who owns
    ("show me what finance owns", "employee", {"team": "Finance Analytics"}),
    ("what does support look after?", "analyst", {"team": "Support Operations"}),
    ("which stuff am i allowed to open?", "employee", {"readable": "yes"}),
    ("which ones can i get into?", "finance-analyst", {"readable": "yes"}),
    ("what's overdue?", "employee", {"freshness": "stale"}),  # a filter alone
])
def test_aggregations_said_without_a_plural(catalog, facts, question, role, filters):
    found = _recognise(catalog, facts, question, role)
    assert found is not None and found.aggregate, question
    assert found.filters == filters


def test_a_domain_only_a_hidden_product_has_is_no_oracle(catalog, facts):
    # An analyst may not discover the compensation handbook, the only product of the people domain.
    assert _recognise(catalog, facts, "what's in the people domain?", "analyst") is None


@pytest.mark.parametrize("question", [
    "what can I read about churn definitions?",  # "what can I read" asks for products only on its own
    "what confidential data is in the support knowledge base?",  # a product named: its classification
])
def test_filter_words_beside_a_named_topic_are_no_aggregation(catalog, facts, question):
    found = _recognise(catalog, facts, question)
    assert found is None or not found.aggregate


def test_a_fact_question_about_an_uncatalogued_topic_is_left_to_the_answerer(catalog, facts):
    # Retrieval ranks some product first for any question; that does not make it the product meant.
    for question in ("who owns the loyalty points dataset?", "is the espresso grinder data up to date?"):
        assert _recognise(catalog, facts, question, retrieved=("customer.subscription-metrics",),
                          evidence={"customer.subscription-metrics": "loyalty points espresso grinder"}) is None


def test_which_product_by_retrieval_alone_needs_every_topic_word_in_its_hits(catalog, facts):
    question = "which dataset has carton sealing tape?"
    retrieved = ("operations.fulfilment-ops", "platform.mesh-handbook")
    assert _recognise(catalog, facts, question, retrieved=retrieved,
                      evidence={"operations.fulfilment-ops": "pallets are wrapped and sealed"}) is None
    found = _recognise(catalog, facts, question, retrieved=retrieved,
                       evidence={"operations.fulfilment-ops": "each carton gets sealing tape at pack-out"})
    assert found is not None and found.products == ("operations.fulfilment-ops",) and found.linked_by == "retrieval"


def test_a_search_pinned_to_an_older_version_is_not_answered_with_todays_facts(catalog, sample_chunks, make_hits):
    stage = DiscoveryAnswerer(lambda: catalog)
    product = catalog.products["customer.subscription-metrics"]
    chunks = sample_chunks(product.id, "metrics/churn-rate.md")[:3]
    req = SearchRequest(query="who owns the churn definitions?", principal=who("analyst"))
    old = [replace(h, product_version="1.0.0") for h in make_hits(chunks)]
    assert stage.answer(req, old, "rel-test", now=NOW) is None
    current = [replace(h, product_version=product.version) for h in old]
    answer = stage.answer(req, current, "rel-test", now=NOW)
    assert answer is not None and product.owner.name in answer.text


# ------------------------------------------------------------------- wider wording (dev set 2)
def test_members_of_a_team_named_in_short_ties_broken_by_retrieval(catalog, facts):
    # "support" links the support knowledge base, "ops" the fulfilment-ops id, equally: retrieval decides
    found = _recognise(catalog, facts, "who's on the support ops team?", "analyst",
                       retrieved=("customer.support-knowledge", "operations.fulfilment-ops"))
    assert found is not None and found.asks == ("members",) and found.products == ("customer.support-knowledge",)


@pytest.mark.parametrize("question", [
    # wider wording (dev set 2)
    "what does the runbook say about late pickups?",  # what a document says is content, not what it is for
    "what does the faq say about shipping to Canada?",
    "who is on call for the fulfilment team this weekend?",
    "what is the go-to carrier for Reno?",
    "is the current bonus target still 10%?",
    # other users' wording (dev set 3)
    "is the refund voucher still valid after 30 days?",  # validity of a thing in a document: content
    "what's the secret to a good roast profile?",
    "refund window for damaged bags?",  # a fragment that asks no catalog fact
    "dunning window length?",
])
def test_wider_wording_leaves_content_questions_alone(catalog, facts, question):
    assert _recognise(catalog, facts, question, "analyst") is None


def test_the_versions_a_product_keeps_are_listed(catalog):
    stage = DiscoveryAnswerer(lambda: catalog)
    req = SearchRequest(query="which versions of the churn definitions are there?", principal=who("analyst"))
    answer = stage.answer(req, [], "rel-test", now=NOW)
    assert answer is not None and answer.decision["asks"] == ["version"]
    assert "current version of customer.subscription-metrics is 2.0.0" in answer.text
    assert "1.0.0" in answer.text and "in effect from 2026-07-01" in answer.text
    # a product with one version says so; one the principal may only discover hides its versions
    one = stage.answer(replace(req, query="what versions of the mesh handbook exist?"), [], "rel-test", now=NOW)
    assert one is not None and "No older version of platform.mesh-handbook is kept" in one.text
    hidden = stage.answer(replace(req, query="what versions of the pay band handbook exist?", principal=who("employee")),
                          [], "rel-test", now=NOW)
    assert hidden is not None and "not its versions" in hidden.text and "2026.1.0" not in hidden.text


@pytest.mark.parametrize("a,b,same", [
    ("roasting", "roasted", True), ("defined", "definition", True), ("cancelled", "cancels", True),
    ("comp", "compensation", True), ("refunds", "refund", True), ("fulfillment", "fulfilment", True),
    ("classified", "classification", True), ("handles", "handbook", False), ("owner", "owns", False),
    ("months", "mouths", False),
])
def test_word_forms(a, b, same):
    from retrieval.discovery.words import same_word

    assert same_word(a, b) is same and same_word(b, a) is same


def test_a_kept_contract_that_does_not_parse_is_reported_without_server_paths(tmp_path):
    folder = tmp_path / "customer" / "subscription-metrics"
    shutil.copytree(SAMPLE_MESH / "customer" / "subscription-metrics", folder)
    (folder / "history" / "1.0.0" / "contract.yaml").write_text("version: [\n")
    kept = KeptVersions.of(Catalog.load([tmp_path]).products["customer.subscription-metrics"])
    assert kept.versions == () and kept.problem is not None
    assert kept.problem.startswith("history/1.0.0/contract.yaml: the kept version's contract does not parse")
    assert str(tmp_path) not in kept.problem


# ------------------------------------------------------------------- typos and other wording (dev set 4)
@pytest.mark.parametrize("question,respelt", [
    ("who mantains the fulfilment docs", "who maintains the fulfilment docs"),
    ("how is the revenue data clasified?", "how is the revenue data classified?"),
    # known words and other forms of a cue word stay as written
    ("which of our datasets are confidential?", "which of our datasets are confidential?"),
    ("fulfilment contract, when does it expire?", "fulfilment contract, when does it expire?"),
    ("who is the contact for the contract?", "who is the contact for the contract?"),
])
def test_a_misspelt_cue_word_is_read_as_the_cue(question, respelt):
    from retrieval.discovery.recognise import respell

    assert respell(question) == respelt


def test_a_misspelt_question_is_answered_like_a_spelt_one(catalog, facts):
    found = _recognise(catalog, facts, "who mantains the fulfilment docs?", "analyst")
    assert found is not None and found.asks == ("owner",) and found.products == ("operations.fulfilment-ops",)


@pytest.mark.parametrize("question,ask", [
    ("besides support agents, who else can read the support articles?", "access"),
    ("the fulfilment docs look dated to me, are they?", "freshness"),
    ("has the fulfilment documentation lapsed?", "freshness"),
])
def test_more_cue_wordings(catalog, facts, question, ask):
    found = _recognise(catalog, facts, question, "analyst")
    assert found is not None and found.asks[0] == ask


@pytest.mark.parametrize("question,catalog_version", [
    ("what version of the refund escalation policy applies now?", False),  # a policy the documents describe
    ("which version of the carrier API do we call?", False),
    ("which version of fulfilment ops is current?", True),  # a product's id words
    ("what version of the support KB are we on?", True),  # a product noun
])
def test_a_version_asked_of_a_thing_in_the_documents_is_content(catalog, facts, question, catalog_version):
    found = _recognise(catalog, facts, question, "analyst")
    assert (found is not None and "version" in found.asks) == catalog_version
