"""Discoverability as contract policy: `customProperties: discoverableBy` lets principals who cannot read a
product see its catalog facts (never more); absent, the product stays hidden; a wrong value is a problem
that names file, field and fix."""

from __future__ import annotations

from typing import Any

import pytest

from knowledge.catalog import Catalog, product_facts, product_summary
from knowledge.catalog_search import fact_words, metadata_words, search_catalog
from knowledge.contracts import load_product
from knowledge.errors import ProductNotFound
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH

ANONYMOUS = Principal.anonymous()
EMPLOYEE = Principal("emp", frozenset({"employee"}))
ANALYST = Principal("ana", frozenset({"analyst"}))
PEOPLE_PARTNER = Principal("pat", frozenset({"people-partner"}))
RESTRICTED = "people.compensation-handbook"
CONFIDENTIAL = ("customer.support-knowledge", "finance.revenue-reporting")
FACT_KEYS = {"id", "domain", "name", "purpose", "owner", "owner_username", "team", "contact", "classification",
             "freshness"}


def _restricted(value: Any):
    def edit(d: dict[str, Any], c: dict[str, Any]) -> None:
        c["customProperties"] = [p for p in c["customProperties"] if p["property"] != "classification"] + [
            {"property": "classification", "value": "restricted"}]
        c["roles"] = [{"role": "people-partner", "access": "read"}]
        if value is not None:
            c["customProperties"].append({"property": "discoverableBy", "value": value})
    return edit


@pytest.mark.parametrize(("value", "expected"), [
    (None, ()),
    (["employee"], ("employee",)),
    (["employee", "analyst", "employee"], ("employee", "analyst")),
    ("*", ("*",)),
    (["*"], ("*",)),
])
def test_discoverable_by_is_read_from_the_contract(product_factory, value, expected):
    product, problems = load_product(product_factory(edit=_restricted(value)))
    assert problems == [] and product is not None
    assert product.discoverable_by == expected


@pytest.mark.parametrize("value", ["employee", [], ["employee", 3], [""], ["TODO: roles"], {"role": "employee"}, 7])
def test_a_wrong_discoverable_by_is_a_problem_with_file_field_and_fix(product_factory, value):
    product, problems = load_product(product_factory(edit=_restricted(value)))
    assert product is None
    [problem] = problems
    assert problem.file.endswith("contract.yaml")
    assert problem.field.startswith("customProperties[") and problem.field.endswith("].value")
    assert "discoverableBy" in problem.message
    assert "[employee]" in problem.hint and "'*'" in problem.hint


def test_discoverable_products_are_a_superset_of_readable_ones_per_principal(product_factory):
    hidden = Catalog.load([product_factory(edit=_restricted(None)).parent.parent])
    [product] = hidden
    for who in (ANONYMOUS, EMPLOYEE, ANALYST):
        assert not who.can_discover(product) and hidden.discoverable(who) == []
    assert PEOPLE_PARTNER.can_discover(product)


def test_everyone_means_anonymous_too(product_factory):
    catalog = Catalog.load([product_factory(edit=_restricted("*")).parent.parent])
    [product] = catalog
    for who in (ANONYMOUS, EMPLOYEE, ANALYST):
        assert who.can_discover(product) and not who.can_read(product)
        assert catalog.discover(product.id, who) is product


def test_the_sample_mesh_makes_every_non_public_product_discoverable_to_employees():
    catalog = Catalog.load([SAMPLE_MESH])
    for product in catalog:
        if product.classification != "public":
            assert EMPLOYEE.can_discover(product), product.id
        if not EMPLOYEE.can_read(product):
            assert product.discoverable_by == ("employee",), product.id
    only_discovered = {p.id for p in catalog.discoverable(EMPLOYEE)} - {p.id for p in catalog.readable(EMPLOYEE)}
    assert only_discovered == {RESTRICTED, *CONFIDENTIAL}
    # Roles without `employee` discover nothing beyond what they read.
    for who in (ANONYMOUS, ANALYST, PEOPLE_PARTNER):
        assert catalog.discoverable(who) == catalog.readable(who)


def test_a_product_neither_readable_nor_discoverable_is_reported_like_a_missing_one():
    catalog = Catalog.load([SAMPLE_MESH])
    for who in (ANONYMOUS, ANALYST):
        with pytest.raises(ProductNotFound) as hidden:
            catalog.discover(RESTRICTED, who)
        with pytest.raises(ProductNotFound) as missing:
            catalog.discover("people.no-such-handbook", who)
        assert str(hidden.value).replace(RESTRICTED, "X") == str(missing.value).replace("people.no-such-handbook", "X")
    assert catalog.discover(RESTRICTED, EMPLOYEE).id == RESTRICTED
    with pytest.raises(ProductNotFound):  # discoverable is not readable
        catalog.get(RESTRICTED, EMPLOYEE)


def test_the_facts_are_exactly_the_listed_fields_and_the_summary_extends_them():
    product = Catalog.load([SAMPLE_MESH]).products[RESTRICTED]
    facts = product_facts(product)
    assert set(facts) == FACT_KEYS
    assert facts["owner"] == "Amara Nwosu" and facts["team"] == "People Operations"
    assert facts["contact"] == "Amara Nwosu (a.nwosu) of People Operations"
    summary = product_summary(product)
    assert {k: summary[k] for k in FACT_KEYS} == facts
    assert {"tags", "read_roles", "documents", "version"} <= set(summary) - FACT_KEYS


def test_filters_and_search_match_discover_only_products_on_their_facts_alone():
    catalog = Catalog.load([SAMPLE_MESH])
    product = catalog.products[RESTRICTED]
    only_metadata = {"hr", "forward", "quote"}  # a tag and limitations text: not facts
    assert "compensation" in fact_words(product) and not only_metadata & fact_words(product)
    assert only_metadata <= metadata_words(product)

    def ids(**kwargs: Any) -> set[str]:
        return {p.id for p in catalog.filter(principal=EMPLOYEE, discoverable=True, **kwargs)}

    assert RESTRICTED in ids(domain="people") and RESTRICTED in ids(owner="a.nwosu")
    assert RESTRICTED in ids(classification="restricted")
    assert ids(tag="compensation") == set()  # tags are not facts
    assert RESTRICTED not in {p.id for p in catalog.filter(principal=EMPLOYEE, domain="people")}  # reading only
    visible = catalog.filter(principal=EMPLOYEE, discoverable=True)
    assert RESTRICTED not in [p.id for _, p in search_catalog(visible, "hr forward quote", EMPLOYEE)]
    assert RESTRICTED in [p.id for _, p in search_catalog(visible, "pay bands", EMPLOYEE)]  # in the purpose
    # The reader matches on the whole metadata.
    readable = catalog.filter(principal=PEOPLE_PARTNER)
    assert RESTRICTED in [p.id for _, p in search_catalog(readable, "hr forward quote", PEOPLE_PARTNER)]
