from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from knowledge.catalog import Catalog, freshness, product_summary
from knowledge.errors import ProductNotFound
from knowledge.model import Principal
from tests.knowledge.conftest import write_product


def _restricted(d, c):
    c["customProperties"] = [{"property": "classification", "value": "restricted"},
                             {"property": "piiPolicy", "value": "reject"}]
    c["roles"] = [{"role": "people-partner", "access": "read"}]


def test_loads_from_two_roots_and_reports_invalid(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_product(a, "sales", "playbooks")
    write_product(b, "hr", "handbook", edit=_restricted)
    broken = write_product(b, "hr", "broken")
    (broken / "contract.yaml").write_text("kind: [")
    catalog = Catalog.load([a, b])
    assert sorted(catalog.products) == ["hr.handbook", "sales.playbooks"]
    assert list(catalog.invalid) == [broken.resolve()]


def test_duplicate_id_across_roots_is_a_problem(tmp_path):
    write_product(tmp_path / "a", "sales", "playbooks")
    dup = write_product(tmp_path / "b", "sales", "playbooks")
    catalog = Catalog.load([tmp_path / "a", tmp_path / "b"])
    assert list(catalog.products) == ["sales.playbooks"]
    assert "already used" in catalog.invalid[dup.resolve()][0].message


def test_filters(tmp_path):
    write_product(tmp_path, "sales", "playbooks")
    write_product(tmp_path, "hr", "handbook", edit=_restricted)
    catalog = Catalog.load([tmp_path])
    assert [p.id for p in catalog.filter(domain="hr")] == ["hr.handbook"]
    assert [p.id for p in catalog.filter(classification="public")] == ["sales.playbooks"]
    assert len(catalog.filter(owner="Marguerite Okafor")) == 2
    assert len(catalog.filter(owner="data platform")) == 2
    assert [p.id for p in catalog.filter(tag="onboarding", domain="sales")] == ["sales.playbooks"]
    assert catalog.filter(tag="nope") == []


def test_unreadable_product_looks_missing(tmp_path):
    write_product(tmp_path, "hr", "handbook", edit=_restricted)
    write_product(tmp_path, "sales", "playbooks")
    catalog = Catalog.load([tmp_path])
    anon = Principal.anonymous()
    with pytest.raises(ProductNotFound) as err:
        catalog.get("hr.handbook", anon)
    assert "hr.handbook" not in str(err.value).split("known products:")[1]
    with pytest.raises(ProductNotFound) as missing:
        catalog.get("hr.nothing", anon)
    assert str(err.value).split(";")[1] == str(missing.value).split(";")[1]
    assert catalog.get("hr.handbook", Principal("p", frozenset({"people-partner"}))).id == "hr.handbook"


def test_freshness_from_source_times(tmp_path):
    folder = write_product(tmp_path, "sales", "playbooks")
    product = Catalog.load([tmp_path]).get("sales.playbooks")
    assert freshness(product).status == "fresh"
    old = time.time() - 200 * 86400
    os.utime(folder / "docs" / "guide.md", (old, old))
    f = freshness(product)
    assert (f.status, f.source) == ("stale", "sources")
    assert 199 < f.age_days < 201


def test_declared_last_update_wins_over_file_times(tmp_path):
    def declare(d, c):
        c["customProperties"].append({"property": "lastUpdated", "value": "2026-01-10T00:00:00Z"})

    write_product(tmp_path, "sales", "playbooks", edit=declare)
    product = Catalog.load([tmp_path]).get("sales.playbooks")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    assert freshness(product, at).status == "fresh"  # 50 days old, SLA 90
    f = freshness(product, at + timedelta(days=60))
    assert (f.status, f.source) == ("stale", "declared")


def test_summary_has_catalog_fields(tmp_path):
    write_product(tmp_path, "sales", "playbooks")
    s = product_summary(Catalog.load([tmp_path]).get("sales.playbooks"))
    for key in ("id", "domain", "name", "owner", "classification", "version", "documents", "freshness"):
        assert key in s
    assert s["documents"] == 1
    assert s["freshness"]["status"] in ("fresh", "stale", "unknown")
