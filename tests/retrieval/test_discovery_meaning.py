"""Linking a product by meaning (retrieval/discovery/meaning.py) with the real MiniLM and the sample catalog:
a product called by a word that is in no catalog field, a weak purpose-word link overruled, a product we do
not have left unlinked, and only what the asker may discover taking part. Questions in words of our own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from knowledge.catalog import Catalog
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from retrieval.discovery import CatalogFacts, DiscoveryAnswerer, recognise
from retrieval.discovery.meaning import MIN_COSINE, MIN_MARGIN, ProductCards, card, meaning_link
from retrieval.types import SearchRequest

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load([SAMPLE_MESH])


@pytest.fixture(scope="module")
def stage(catalog: Catalog, minilm) -> DiscoveryAnswerer:
    answerer = DiscoveryAnswerer(lambda: catalog, cards=ProductCards(minilm.embed_documents, minilm.embed_query))
    answerer.warm_up()
    return answerer


def who(*roles: str) -> Principal:
    return Principal(id="test", roles=frozenset(roles))


def ask(stage: DiscoveryAnswerer, question: str, *roles: str):
    return stage.answer(SearchRequest(query=question, principal=who(*roles)), [], "rel-test", now=NOW)


@pytest.mark.parametrize("question,roles,product,fact", [
    # no word of these questions is in the product's catalog fields
    ("who maintains the help desk playbook?", ("analyst",), "customer.support-knowledge", "Luis Carvalho"),
    ("who is responsible for the parcel dispatch guidance?", ("analyst",), "operations.fulfilment-ops",
     "Kenji Watanabe"),
    # a product the asker may only discover: linked by its title and purpose, its catalog facts alone
    ("how is the salary guidance classified?", ("employee",), "people.compensation-handbook", "restricted"),
])
def test_a_product_called_by_another_word_is_linked_by_meaning(stage, question, roles, product, fact):
    answer = ask(stage, question, *roles)
    assert answer is not None, question
    assert answer.decision["linked_by"] == "meaning" and answer.decision["products"] == [product]
    assert fact in answer.text


def test_without_cards_the_same_question_is_no_discovery_question(catalog):
    plain = DiscoveryAnswerer(lambda: catalog)
    answer = plain.answer(SearchRequest(query="who maintains the help desk playbook?", principal=who("analyst")),
                          [], "rel-test", now=NOW)
    assert answer is None


def test_a_link_by_one_purpose_word_gives_way_to_a_clear_meaning(catalog, stage):
    question = "how often is the cancellation stats stuff refreshed?"
    principal = who("analyst")
    visible = [p for p in catalog if principal.can_discover(p)]
    words_only = recognise(question, visible, principal, CatalogFacts.of(catalog))
    assert words_only is not None and "customer.subscription-metrics" not in words_only.products  # "stats"
    answer = ask(stage, question, "analyst")
    assert answer is not None and answer.decision["products"] == ["customer.subscription-metrics"]
    assert answer.decision["linked_by"] == "meaning" and "fresh" in answer.text


@pytest.mark.parametrize("question", [
    "who owns the wholesale pricing dataset?",  # no such product: no card is clearly nearest
    "who is in charge of the loyalty programme data?",
])
def test_a_product_the_catalog_does_not_have_is_not_pinned_on_the_nearest(stage, question):
    assert ask(stage, question, "analyst") is None


def test_a_product_the_asker_may_not_discover_takes_no_part(catalog, stage, minilm):
    hidden = catalog.products["people.compensation-handbook"]
    principal = who("analyst")
    assert not principal.can_discover(hidden)
    visible = [p for p in catalog if principal.can_discover(p)]
    ranking = stage._cards.ranking("how is the salary guidance classified?", visible, principal, catalog)
    assert hidden.id not in {pid for _, pid in ranking} and len(ranking) == len(visible)
    answer = ask(stage, "how is the salary guidance classified?", "analyst")
    assert answer is None or (hidden.id not in answer.text and hidden.title not in answer.text
                              and hidden.owner.name not in answer.text)


def test_a_discover_only_card_holds_catalog_facts_alone(catalog):
    product = catalog.products["people.compensation-handbook"]
    assert product.usage and product.usage not in card(product, readable=False)
    assert card(product, readable=False).startswith(product.title)
    assert product.usage in card(product, readable=True)


def test_the_link_needs_a_clear_best():
    assert meaning_link([(MIN_COSINE + 0.1, "a"), (MIN_COSINE + 0.1 - MIN_MARGIN / 2, "b")]) is None
    assert meaning_link([(MIN_COSINE - 0.01, "a")]) is None
    assert meaning_link([(MIN_COSINE + 0.1, "a"), (MIN_COSINE, "b")]) == "a"
    assert meaning_link([]) is None
