from knowledge.cards import render_card
from knowledge.catalog import Catalog
from knowledge.settings import SAMPLE_MESH


def test_card_states_the_catalog_facts_discovery_questions_ask_for():
    product = Catalog.load([SAMPLE_MESH]).get("operations.fulfilment-ops")
    card = render_card(product)
    assert card == render_card(product)  # deterministic: the card's hash is its revision
    for fact in ("operations.fulfilment-ops", "Kenji Watanabe", "Fulfilment Operations team", "classified internal",
                 "employee, analyst", "freshness SLA of Fulfilment Operations is 30 days", "2026-05-29", "3 years",
                 "fulfilment, runbooks, incidents"):
        assert fact in card, fact
    assert card.count("\n## ") == 2
