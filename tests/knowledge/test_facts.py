"""Catalog facts with spans: every fact's span in its file holds the value, and freshness is stated in words
from the catalog's one freshness rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from knowledge.catalog import Catalog, freshness
from knowledge.facts import DISCOVERABLE_FACTS, freshness_words, iter_facts, read_facts, status_of
from knowledge.settings import SAMPLE_MESH

# Facts whose span holds a scalar written as the value (quotes stripped, folded lines joined).
SCALAR = {"id", "title", "domain", "owner", "contact", "team", "members", "classification", "read_roles",
          "pii_policy", "status", "version", "purpose", "usage", "limitations", "tags"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load([SAMPLE_MESH])


def _flat(text: str) -> str:
    return " ".join(text.replace("''", "'").split())


def test_every_fact_span_holds_its_value(catalog: Catalog):
    for product in catalog:
        sheet = read_facts(product)
        for fact in iter_facts(sheet):
            written = (product.root / fact.file).read_text("utf-8")[fact.start:fact.end]
            assert sheet.files[fact.file].text[fact.start:fact.end] == written
            if fact.name in SCALAR:
                assert _flat(written) == _flat(fact.value), (product.id, fact)
            elif fact.name == "last_update":
                assert written.startswith(fact.value)
            else:  # an SLA: its value and unit
                number, unit = fact.value.split()
                assert written.split()[0] == number and f"unit: {unit[0]}" in written, (product.id, fact)


def test_facts_name_the_contract_fields(catalog: Catalog):
    sheet = read_facts(catalog.products["operations.fulfilment-ops"])
    owner, contact = sheet.get("owner"), sheet.get("contact")
    assert owner is not None and contact is not None
    assert (owner.value, owner.file, owner.field) == ("Kenji Watanabe", "contract.yaml", "team.members[0].name")
    assert contact.value == "k.watanabe"
    assert [f.value for f in sheet.all("read_roles")] == ["employee", "analyst"]
    assert sheet.get("last_update").value == "2026-05-29"  # type: ignore[union-attr]
    assert sheet.get("freshness_sla").value == "30 days"  # type: ignore[union-attr]
    assert sheet.get("retention_sla").value == "3 years"  # type: ignore[union-attr]
    assert {f.value for f in sheet.all("tags")} == set(catalog.products["operations.fulfilment-ops"].tags)
    # Every product has every fact a discover-only principal may see.
    for product in catalog:
        names = set(read_facts(product).facts)
        assert DISCOVERABLE_FACTS - {"last_update"} <= names, product.id


def test_status_in_words_uses_the_catalogs_freshness(catalog: Catalog):
    ops = catalog.products["operations.fulfilment-ops"]  # declares 2026-05-29T17:00Z, 30-day SLA
    now = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)
    state, words = status_of(ops, now)
    assert state == freshness(ops, now)
    assert words == ("stale: last updated 2026-05-29 (declared in its contract), 190 days ago, against a "
                     "freshness SLA of 30 days")
    fresh_now = datetime(2026, 6, 10, tzinfo=UTC)
    assert status_of(ops, fresh_now)[1].startswith("fresh: last updated 2026-05-29 (declared in its contract), "
                                                   "11 days ago, within its freshness SLA of 30 days")
    handbook = replace(catalog.products["platform.mesh-handbook"], declared_last_update=None)
    undated = status_of(handbook, now, source_update=lambda p: None)
    assert undated[0].status == "unknown" and undated[1].startswith("freshness unknown")
    hourly = freshness_words(freshness(replace(ops, freshness_sla=timedelta(hours=12)), now), timedelta(hours=12))
    assert hourly.endswith("freshness SLA of 12 hours")
