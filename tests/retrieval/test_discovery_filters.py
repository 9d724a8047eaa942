"""Across-products questions that filter by comparison (retrieval/discovery/filters.py): classification
above / below / the top tier, SLA periods against a length, and products one may find but not read —
per role, on the sample catalog, in words of our own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from knowledge.catalog import Catalog
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from retrieval.discovery import DiscoveryAnswerer
from retrieval.discovery.filters import class_matches, comparisons, period_matches
from retrieval.types import SearchRequest

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SUB, SUPPORT, FIN = "customer.subscription-metrics", "customer.support-knowledge", "finance.revenue-reporting"
OPS, PAY, MESH = "operations.fulfilment-ops", "people.compensation-handbook", "platform.mesh-handbook"


@pytest.fixture(scope="module")
def stage() -> DiscoveryAnswerer:
    catalog = Catalog.load([SAMPLE_MESH])
    return DiscoveryAnswerer(lambda: catalog)


def listed(stage: DiscoveryAnswerer, question: str, *roles: str) -> set[str]:
    answer = stage.answer(SearchRequest(query=question, principal=Principal(id="t", roles=frozenset(roles))), [],
                          "rel-test", now=NOW)
    assert answer is not None and answer.decision["scope"] == "aggregate", question
    return set(answer.decision["products"])


@pytest.mark.parametrize("question,roles,expected", [
    # classification by comparison; only what the role may discover
    ("anything classified above internal?", ("analyst",), {SUPPORT, FIN}),
    ("anything classified above internal?", ("support-agent",), {SUPPORT}),
    ("which products are internal or below?", ("analyst",), {SUB, OPS, MESH}),
    ("which products sit in the most sensitive tier?", ("people-partner",), {PAY}),
    ("which products sit in the most sensitive tier?", ("analyst",), {SUPPORT, FIN}),  # none restricted visible
    ("which products are the least sensitive?", ("analyst",), {MESH}),
    # SLA periods
    ("which products are refreshed at least weekly?", ("analyst",), {SUB, FIN}),
    ("which products are refreshed at least weekly?", ("support-agent",), set()),
    ("which products go more than 60 days between reviews?", ("employee",), {MESH, PAY}),
    ("which products keep versions for more than three years?", ("analyst",), {FIN}),
    # found in the catalog, not readable
    ("which products can I see in the catalog but not open?", ("employee",), {SUPPORT, FIN, PAY}),
    ("which products can I see in the catalog but not open?", ("analyst",), set()),
])
def test_comparison_filters_per_role(stage, question, roles, expected):
    assert listed(stage, question, *roles) == expected


def test_comparisons_read_from_the_wording():
    assert comparisons("is anything stricter than internal?", []) == {"classification": ">internal"}
    assert comparisons("which ones are confidential or higher", []) == {"classification": ">=confidential"}
    assert comparisons("products updated more often than monthly", []) == {"freshness_sla": "<30"}
    assert comparisons("products we hang on to for at least a year", []) == {"retention": ">=365"}
    assert comparisons("which products are reviewed daily", []) == {"freshness_sla": "==1"}
    assert comparisons("which products are there", []) == {}
    assert comparisons("which products did we update 3 years ago", []) == {}  # a bare length is no filter


def test_matching():
    assert class_matches("confidential", ">internal") and not class_matches("internal", ">internal")
    assert class_matches("internal", "internal") and class_matches("public", "<=internal")
    assert period_matches(timedelta(days=7), "<=7") and not period_matches(timedelta(days=14), "<=7")
    assert period_matches(timedelta(days=365 * 7), ">1095") and not period_matches(timedelta(days=1095), ">1095")
