"""The golden set is data the gates trust, so it is checked like code."""

from __future__ import annotations

from collections import Counter

import pytest

from eval_sets.golden import CATALOG_DOCUMENT, load_golden
from indexing.sources import load_document
from knowledge.catalog import Catalog
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
        elif restricted:
            assert "people-partner" in q.roles, q.id
