"""The golden set is data the gates trust, so it is checked like code."""

from __future__ import annotations

from collections import Counter

import pytest

from eval_sets.golden import CATALOG_DOCUMENT, load_golden
from indexing.sources import load_document
from knowledge.catalog import Catalog
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH


@pytest.fixture(scope="module")
def golden():
    return load_golden()


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load([SAMPLE_MESH])


def test_counts(golden):
    kinds = Counter(q.kind for q in golden)
    assert len(golden) >= 120
    assert kinds["unanswerable"] >= 20
    assert kinds["discovery"] >= 20
    assert kinds["cross_domain"] >= 10
    assert kinds["restricted"] >= 10


def test_ids_unique(golden):
    dupes = [i for i, n in Counter(q.id for q in golden).items() if n > 1]
    assert dupes == []


def test_gold_documents_exist_and_quotes_are_verbatim(golden, catalog):
    for q in golden:
        if q.expected_products is not None:
            # An aggregation's evidence is the catalog as a whole, not a passage to retrieve: no gold, so
            # it counts in the discovery section and the answer metrics, not in the retrieval metrics.
            assert not q.gold and q.answerable, q.id
            continue
        assert bool(q.gold) == q.answerable, q.id
        assert set(q.products) == {e.product for e in q.gold}, q.id
        if q.kind == "cross_domain":
            assert len({catalog.products[p].domain for p in q.products}) >= 2, q.id
        for e in q.gold:
            product = catalog.products.get(e.product)
            assert product is not None, f"{q.id}: unknown product {e.product}"
            if e.document == CATALOG_DOCUMENT:
                continue
            paths = {product.document_id(p): p for p in product.documents()}
            assert e.document in paths, f"{q.id}: {e.product} has no document {e.document}"
            if e.quote:
                doc = load_document(e.product, paths[e.document], e.document)
                raw = paths[e.document].read_text("utf-8")
                assert e.quote in raw or e.quote in doc.text, f"{q.id}: quote not found in {e.document}"


def test_restricted_questions_need_the_restricted_role(golden, catalog):
    for q in golden:
        restricted = [p for p in q.products if catalog.products[p].classification == "restricted"]
        if q.kind == "restricted":
            assert restricted and q.roles == ("people-partner",), q.id
        elif restricted and q.kind == "discovery":
            # Catalog facts of a product the roles may only discover (its contract's discoverableBy).
            principal = Principal("golden", frozenset(q.roles))
            assert all(principal.can_discover(catalog.products[p]) for p in restricted), q.id
        elif restricted:
            assert "people-partner" in q.roles, q.id


def test_discovery_and_version_questions_are_consistent(golden, catalog):
    """Aggregations expect only products their roles may see; version questions name versions that exist
    (the current one, or a kept `history/<version>/`)."""
    for q in golden:
        principal = Principal("golden", frozenset(q.roles))
        if q.expected_products is not None:
            assert q.kind == "discovery" and set(q.expected_products) == set(q.products), q.id
            assert all(principal.can_discover(catalog.products[p]) for p in q.expected_products), q.id
        if q.kind == "version":
            (pid,) = q.products
            product = catalog.products[pid]
            kept = {d.name for d in (product.root / "history").iterdir() if d.is_dir()}
            assert q.versions and set(q.versions) <= kept | {product.version}, q.id
            assert q.expected and principal.can_read(product), q.id
