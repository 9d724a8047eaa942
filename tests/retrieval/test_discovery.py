"""Discovery questions answered from catalog facts: the recogniser on paraphrased wording (written before
the recogniser was run on them), questions it must leave to the answerer, and per-role aggregations whose
expected products are computed from the catalog and `Principal.can_read` / `can_discover`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from knowledge.catalog import Catalog, freshness
from knowledge.facts import DISCOVERABLE_FACTS
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from retrieval.discovery import CatalogFacts, DiscoveryAnswerer, cites_discoverable_fact, recognise
from retrieval.types import SearchRequest

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ROLES = {
    "anonymous": frozenset(),
    "employee": frozenset({"employee"}),
    "analyst": frozenset({"analyst"}),
    "people-partner": frozenset({"people-partner"}),
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load([SAMPLE_MESH])


@pytest.fixture(scope="module")
def stage(catalog: Catalog) -> DiscoveryAnswerer:
    return DiscoveryAnswerer(lambda: catalog)


def who(role: str) -> Principal:
    return Principal(id=f"test-{role}", roles=ROLES[role])


def _recognise(catalog: Catalog, question: str, role: str = "analyst", retrieved: tuple[str, ...] = ()):
    principal = who(role)
    visible = [p for p in catalog if principal.can_discover(p)]
    return recognise(question, visible, principal, CatalogFacts.of(catalog), retrieved)


@pytest.mark.parametrize("question,role,asks,product", [
    ("who do I ping about the fulfilment numbers?", "analyst", "contact", "operations.fulfilment-ops"),
    ("is the shipping data up to date?", "analyst", "freshness", "operations.fulfilment-ops"),
    ("who looks after the subscriber KPI docs?", "analyst", "owner", "customer.subscription-metrics"),
    ("how long do we keep old versions of the comp handbook around?", "people-partner", "retention",
     "people.compensation-handbook"),
    ("is the support KB classified as confidential?", "analyst", "classification", "customer.support-knowledge"),
    ("does the support knowledge base scrub personal details?", "analyst", "pii", "customer.support-knowledge"),
    ("which domain is the revenue stuff in?", "analyst", "domain", "finance.revenue-reporting"),
    ("is Priya's product fresh?", "analyst", "freshness", "customer.subscription-metrics"),
    ("who may read the mesh rulebook?", "analyst", "access", "platform.mesh-handbook"),
    ("can I see the pay bands product?", "people-partner", "access", "people.compensation-handbook"),
])
def test_single_product_questions_in_other_words(catalog, question, role, asks, product):
    found = _recognise(catalog, question, role)
    assert found is not None, question
    assert not found.aggregate and asks in found.asks and found.products == (product,), found


def test_which_product_links_through_retrieval(catalog):
    found = _recognise(catalog, "which product should I use for churn numbers?",
                       retrieved=("customer.subscription-metrics", "finance.revenue-reporting"))
    assert found is not None and found.asks[0] == "which"
    assert found.products == ("customer.subscription-metrics",) and "retrieval" in found.linked_by


@pytest.mark.parametrize("question,filters", [
    ("what stuff does Finance Analytics look after?", {"team": "Finance Analytics"}),
    ("which of our data is out of date?", {"freshness": "stale"}),
    ("which confidential products can I read?", {"classification": "confidential", "readable": "yes"}),
    ("which products are in the customer domain?", {"domain": "customer"}),
    ("list the products I can read", {"readable": "yes"}),
    ("what does Kenji Watanabe own?", {"owner": "k.watanabe"}),
])
def test_aggregations_in_other_words(catalog, question, filters):
    found = _recognise(catalog, question)
    assert found is not None and found.aggregate, question
    assert found.filters == filters


@pytest.mark.parametrize("question", [
    "how is churn rate defined?",
    "what is the refund window?",
    "Who approves refunds over the agent limit?",
    "how often do we run the nightly DAG?",
    "what changed in the churn definition between versions?",
    "Which carrier handles our Reno pickups?",
    "What is the freshness SLA for wholesale orders?",
    "Who is responsible for the month-end close?",
])
def test_content_questions_are_left_to_the_answerer(catalog, question):
    assert _recognise(catalog, question) is None


def test_a_product_one_may_not_discover_is_never_linked(catalog):
    # An analyst may neither read nor discover the compensation handbook (restricted to people partners).
    analyst = who("analyst")
    assert not analyst.can_discover(catalog.products["people.compensation-handbook"])
    assert _recognise(catalog, "can I see the pay bands product?", "analyst") is None


# ------------------------------------------------------------------------------------------ per role
def _ask(stage: DiscoveryAnswerer, role: str, question: str):
    answer = stage.answer(SearchRequest(query=question, principal=who(role)), (), "rel-test", now=NOW)
    assert answer is not None, question
    assert answer.outcome == "answered" and answer.answerer.startswith("discovery@")
    return answer


def _expected(catalog: Catalog, role: str, keep) -> list[str]:
    principal = who(role)
    return [p.id for p in catalog if principal.can_discover(p) and keep(p, principal)]


AGGREGATIONS = {
    "which products are stale?": lambda p, who_: freshness(p, NOW).status == "stale",
    "what does the Finance Analytics team own?": lambda p, who_: p.team == "Finance Analytics",
    "which confidential products can I read?": lambda p, who_: p.classification == "confidential"
    and who_.can_read(p),
    "list the products I can read": lambda p, who_: who_.can_read(p),
    "which products are in the customer domain?": lambda p, who_: p.domain == "customer",
}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("question", list(AGGREGATIONS))
def test_aggregations_per_role_list_exactly_what_the_role_may_see(stage, catalog, role, question):
    expected = _expected(catalog, role, AGGREGATIONS[question])
    if not expected and ("team" in question or "domain" in question):
        # The team or domain is named only by products the role may not see: the question is answered as
        # for a name that does not exist (left to the answerer), so hidden names are no oracle.
        made_up = question.replace("Finance Analytics", "Widget Logistics").replace("customer", "widgets")
        req = SearchRequest(query=question, principal=who(role))
        assert stage.answer(req, (), "rel-test", now=NOW) is None
        assert stage.answer(SearchRequest(query=made_up, principal=who(role)), (), "rel-test", now=NOW) is None
        return
    answer = _ask(stage, role, question)
    assert answer.decision["products"] == expected
    assert f": {len(expected)}" in answer.sentences[0].text
    principal = who(role)
    hidden = [p for p in catalog if not principal.can_discover(p)]
    cited = {c.product_id for c in answer.citations}
    assert cited == set(expected)
    for p in hidden:  # nothing of a product the role may neither read nor discover
        assert p.id not in answer.text and p.title not in answer.text and p.owner.name not in answer.text
    for p in catalog:
        if principal.can_discover(p) and not principal.can_read(p) and p.id in expected:
            # discover-only: only its catalog facts are cited
            named = {c.heading_path[0] for c in answer.citations if c.product_id == p.id}
            assert named and named <= DISCOVERABLE_FACTS, named
            assert all(cites_discoverable_fact(c) for c in answer.citations if c.product_id == p.id)
            assert not any(c.product_id == p.id and c.heading_path[1].startswith(("roles", "tags"))
                           for c in answer.citations)


def test_single_answer_states_owner_and_status_and_cites_contract_spans(stage, catalog):
    answer = _ask(stage, "analyst", "who owns the shipping data, and is it still fresh?")
    assert "Kenji Watanabe (k.watanabe)" in answer.text and "Fulfilment Operations team" in answer.text
    assert "stale: last updated 2026-05-29" in answer.text and "30 days" in answer.text
    product = catalog.products["operations.fulfilment-ops"]
    for c in answer.citations:
        assert c.document == "contract.yaml" and c.product_id == product.id
        assert (product.root / c.document).read_text("utf-8")[c.start:c.end] == c.text
    assert answer.short is not None and answer.short.text == "Kenji Watanabe"
    assert answer.citations[answer.short.marker - 1].text == "Kenji Watanabe"
    for s in answer.sentences:
        assert s.markers, s.text


def test_discover_only_shows_facts_never_content_terms(stage, catalog):
    principal = who("employee")
    support = catalog.products["customer.support-knowledge"]
    if not (principal.can_discover(support) and not principal.can_read(support)):
        pytest.skip("the sample contract does not make the support knowledge base discoverable to employees")
    answer = _ask(stage, "employee", "who owns the support knowledge base and what is its PII policy?")
    assert "Luis Carvalho" in answer.text
    assert "redact" not in answer.text and "support-agent" not in answer.text
    assert "not its PII policy" in answer.text


def test_facts_are_read_once_per_catalog(catalog):
    loads = []
    current = {"catalog": catalog}
    stage = DiscoveryAnswerer(lambda: loads.append(1) or current["catalog"])
    first = stage.facts()
    assert stage.facts() is first
    current["catalog"] = Catalog.load([SAMPLE_MESH])
    assert stage.facts() is not first and stage.facts().catalog is current["catalog"]


def test_a_product_kept_serving_with_broken_files_keeps_its_fact_spans(tmp_path):
    import shutil

    mesh = tmp_path / "mesh"
    shutil.copytree(SAMPLE_MESH, mesh)
    first = Catalog.load([mesh])
    current = {"catalog": first}
    stage = DiscoveryAnswerer(lambda: current["catalog"])
    before = stage.facts().sheets["operations.fulfilment-ops"]
    contract = mesh / "operations" / "fulfilment-ops" / "contract.yaml"
    contract.write_text("apiVersion: v3.1.0\nteam:\n  name: [unclosed\n", "utf-8")
    current["catalog"] = Catalog.load([mesh], previous=first)
    assert current["catalog"].products["operations.fulfilment-ops"].problem
    after = stage.facts().sheets["operations.fulfilment-ops"]
    assert after.facts == before.facts and after.files == before.files
    answer = stage.answer(SearchRequest(query="who owns the shipping data?", principal=who("analyst")), (),
                          "rel-test", now=NOW)
    assert answer is not None and "Kenji Watanabe" in answer.text and answer.citations
