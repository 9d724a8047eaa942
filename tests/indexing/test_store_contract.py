"""One contract, two backends: FAISS files and PostgreSQL + pgvector must behave the same."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexing.stores.embedded_pg import start_postgres, stop_postgres
from indexing.stores.faiss_store import FaissStore
from indexing.stores.pgvector_store import PgVectorStore
from indexing.types import SearchFilter, VectorRecord, VectorStore
from knowledge.errors import CollectionNotFound, ConfigError, StoreUnavailable

DIM = 8
PRODUCTS = {"finance.revenue": "finance", "sales.pipeline": "sales", "platform.handbook": "platform"}


def make_records(n: int = 24, seed: int = 7, prefix: str = "r") -> list[VectorRecord]:
    """Deterministic records, added in a shuffled order so row order never equals id order."""
    rng = np.random.default_rng(seed)
    products = list(PRODUCTS)
    records = [
        VectorRecord(
            id=f"{prefix}{i:02d}",
            vector=rng.normal(size=DIM).astype(np.float32),
            metadata={
                "product_id": products[i % 3],
                "domain": PRODUCTS[products[i % 3]],
                "classification": ("public", "internal")[i % 2],
                "document": f"doc{i % 4}.md",
            },
        )
        for i in range(n)
    ]
    order = rng.permutation(n)
    return [records[i] for i in order]


def expected(
    records: list[VectorRecord],
    query: np.ndarray,
    k: int,
    keep: Callable[[Mapping[str, Any]], bool] = lambda m: True,
) -> list[tuple[str, float]]:
    """Brute-force cosine ranking, ties broken by id."""
    q = query / np.linalg.norm(query)
    scored = [
        (r.id, float(np.asarray(r.vector, dtype=np.float64) @ q / np.linalg.norm(r.vector)))
        for r in records
        if keep(r.metadata)
    ]
    return sorted(scored, key=lambda t: (-t[1], t[0]))[:k]


def assert_hits(hits: list, want: list[tuple[str, float]]) -> None:
    assert [h.id for h in hits] == [i for i, _ in want]
    assert [h.score for h in hits] == pytest.approx([s for _, s in want], abs=1e-5)


def query_vector(seed: int = 99) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


@pytest.fixture(params=["faiss", pytest.param("pgvector", marks=pytest.mark.pg)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], VectorStore]]:
    """Opens a new, warmed-up store object over the same backing data each time it is called."""
    opened: list[VectorStore] = []

    def open_() -> VectorStore:
        if request.param == "faiss":
            store: VectorStore = FaissStore(tmp_path / "faiss")
        else:
            target = request.getfixturevalue("pg_dsn_schema")
            store = PgVectorStore(target.dsn, target.schema)
        store.warm_up()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        if isinstance(store, PgVectorStore):
            store.close()


@pytest.fixture
def store(open_store: Callable[[], VectorStore]) -> VectorStore:
    return open_store()


@pytest.fixture
def loaded(store: VectorStore) -> list[VectorRecord]:
    """Collection "v1" holding make_records()."""
    records = make_records()
    store.create_collection("v1", DIM)
    store.add("v1", records)
    return records


def test_store_satisfies_protocol(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)


def test_search_orders_by_cosine_score(store: VectorStore, loaded: list[VectorRecord]) -> None:
    q = query_vector()
    assert_hits(store.search(q, 5, SearchFilter(("v1",))), expected(loaded, q, 5))


def test_ties_are_broken_by_id(store: VectorStore) -> None:
    same = np.arange(1, DIM + 1, dtype=np.float32)
    ties = [VectorRecord(id=i, vector=same, metadata={"product_id": "p"}) for i in ("m", "c", "x", "a")]
    store.create_collection("v1", DIM)
    store.add("v1", [*make_records(6), *ties])
    hits = store.search(same, 3, SearchFilter(("v1",)))
    assert [h.id for h in hits] == ["a", "c", "m"]  # k cuts through the tie: the lowest ids win
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert [h.id for h in store.search(same, 4, SearchFilter(("v1",), products=("p",)))] == [
        "a",
        "c",
        "m",
        "x",
    ]


FILTERS: dict[str, tuple[dict[str, tuple[str, ...]], Callable[[Mapping[str, Any]], bool]]] = {
    "product": ({"products": ("sales.pipeline",)}, lambda m: m["product_id"] == "sales.pipeline"),
    "two products": (
        {"products": ("sales.pipeline", "finance.revenue")},
        lambda m: m["product_id"] in ("sales.pipeline", "finance.revenue"),
    ),
    "domain": ({"domains": ("platform",)}, lambda m: m["domain"] == "platform"),
    "classification": ({"classifications": ("public",)}, lambda m: m["classification"] == "public"),
    "document": ({"documents": ("doc1.md", "doc2.md")}, lambda m: m["document"] in ("doc1.md", "doc2.md")),
    "product and classification": (
        {"products": ("finance.revenue",), "classifications": ("internal",)},
        lambda m: m["product_id"] == "finance.revenue" and m["classification"] == "internal",
    ),
    "domain, classification and document": (
        {
            "domains": ("finance", "sales"),
            "classifications": ("public",),
            "documents": ("doc0.md", "doc3.md"),
        },
        lambda m: (
            m["domain"] in ("finance", "sales")
            and m["classification"] == "public"
            and m["document"] in ("doc0.md", "doc3.md")
        ),
    ),
}


@pytest.mark.parametrize("case", list(FILTERS))
def test_filters_restrict_search_and_count(store: VectorStore, loaded: list[VectorRecord], case: str) -> None:
    fields, keep = FILTERS[case]
    flt = SearchFilter(("v1",), **fields)
    q = query_vector()
    want = expected(loaded, q, 100, keep)
    assert want, "the case should match something"
    assert_hits(store.search(q, 3, flt), want[:3])
    assert_hits(store.search(q, 100, flt), want)
    assert store.count(flt) == len(want)


def test_search_across_collections_merges_by_score(store: VectorStore, loaded: list[VectorRecord]) -> None:
    other = make_records(10, seed=11, prefix="s")
    store.create_collection("v2", DIM)
    store.add("v2", other)
    q = query_vector()
    flt = SearchFilter(("v1", "v2"), domains=("finance",))
    hits = store.search(q, 6, flt)
    finance = lambda m: m["domain"] == "finance"
    assert_hits(hits, expected([*loaded, *other], q, 6, finance))
    by_id = {r.id: c for c, recs in (("v1", loaded), ("v2", other)) for r in recs}
    assert [h.collection for h in hits] == [by_id[h.id] for h in hits]
    assert store.count(flt) == sum(finance(r.metadata) for r in [*loaded, *other])


def test_ties_across_collections_are_broken_by_id_then_collection(store: VectorStore) -> None:
    same = np.ones(DIM, dtype=np.float32)
    for name in ("v2", "v1"):
        store.create_collection(name, DIM)
        store.add(name, [VectorRecord(id="b", vector=same), VectorRecord(id="a", vector=same)])
    hits = store.search(same, 3, SearchFilter(("v2", "v1")))
    assert [(h.id, h.collection) for h in hits] == [("a", "v1"), ("a", "v2"), ("b", "v1")]


def test_k_larger_than_available_returns_what_exists(store: VectorStore, loaded: list[VectorRecord]) -> None:
    q = query_vector()
    assert_hits(store.search(q, 1000, SearchFilter(("v1",))), expected(loaded, q, 1000))
    assert len(store.search(q, 50, SearchFilter(("v1",), products=("finance.revenue",)))) == 8


def test_empty_results(store: VectorStore, loaded: list[VectorRecord]) -> None:
    store.create_collection("empty", DIM)
    q = query_vector()
    assert store.search(q, 5, SearchFilter(("empty",))) == []
    assert store.count(SearchFilter(("empty",))) == 0
    assert store.search(q, 5, SearchFilter(("v1",), products=("no.such-product",))) == []
    assert store.search(q, 5, SearchFilter(("v1",), documents=())) == []
    assert store.count(SearchFilter(("v1",), products=("finance.revenue",), domains=("sales",))) == 0
    assert store.search(q, 5, SearchFilter(())) == []
    assert store.count(SearchFilter(())) == 0


def test_count(store: VectorStore, loaded: list[VectorRecord]) -> None:
    assert store.count(SearchFilter(("v1",))) == len(loaded)
    assert store.count(SearchFilter(("v1",), classifications=("public", "internal", "restricted"))) == len(
        loaded
    )


def test_delete_then_search_and_count(store: VectorStore, loaded: list[VectorRecord]) -> None:
    q = query_vector()
    top = [h.id for h in store.search(q, 3, SearchFilter(("v1",)))]
    assert store.delete("v1", [*top, "no-such-id"]) == 3
    assert store.delete("v1", top) == 0
    remaining = [r for r in loaded if r.id not in top]
    assert_hits(store.search(q, 5, SearchFilter(("v1",))), expected(remaining, q, 5))
    assert store.count(SearchFilter(("v1",))) == len(loaded) - 3
    finance = SearchFilter(("v1",), products=("finance.revenue",))
    assert store.count(finance) == sum(r.metadata["product_id"] == "finance.revenue" for r in remaining)


def test_add_replaces_an_existing_id(store: VectorStore, loaded: list[VectorRecord]) -> None:
    target = loaded[0]
    q = query_vector()
    store.add("v1", [VectorRecord(id=target.id, vector=q, metadata={"product_id": "moved", "v": 2})])
    hits = store.search(q, 1, SearchFilter(("v1",)))
    assert (hits[0].id, dict(hits[0].metadata)) == (target.id, {"product_id": "moved", "v": 2})
    assert store.count(SearchFilter(("v1",))) == len(loaded)


def test_drop_collection(store: VectorStore, loaded: list[VectorRecord]) -> None:
    store.create_collection("v2", DIM)
    assert store.collections() == ["v1", "v2"]
    store.drop_collection("v1")
    assert store.collections() == ["v2"]
    with pytest.raises(CollectionNotFound, match="'v1'"):
        store.search(query_vector(), 3, SearchFilter(("v1",)))
    with pytest.raises(CollectionNotFound, match="'v1'"):
        store.drop_collection("v1")
    store.create_collection("v1", DIM)  # the name is free again
    assert store.count(SearchFilter(("v1",))) == 0


def test_unknown_collection_is_named(store: VectorStore, loaded: list[VectorRecord]) -> None:
    q = query_vector()
    with pytest.raises(CollectionNotFound, match="'ghost'"):
        store.search(q, 3, SearchFilter(("v1", "ghost")))
    with pytest.raises(CollectionNotFound, match="'ghost'"):
        store.count(SearchFilter(("ghost",), products=("finance.revenue",)))
    with pytest.raises(CollectionNotFound, match="'ghost'"):
        store.add("ghost", make_records(2))
    with pytest.raises(CollectionNotFound, match="'ghost'"):
        store.delete("ghost", ["r00"])


def test_dimension_mismatch_names_both_dims(store: VectorStore, loaded: list[VectorRecord]) -> None:
    with pytest.raises(ConfigError, match=f"expected {DIM}, got 5"):
        store.add("v1", [VectorRecord(id="short", vector=np.ones(5, dtype=np.float32))])
    with pytest.raises(ConfigError, match=f"expected {DIM}, got 3"):
        store.search(np.ones(3, dtype=np.float32), 3, SearchFilter(("v1",)))
    with pytest.raises(ConfigError, match="dimension"):
        store.create_collection("v1", DIM + 1)
    store.create_collection("v1", DIM)  # same dimension: a no-op
    assert store.count(SearchFilter(("v1",))) == len(loaded)


def test_invalid_arguments(store: VectorStore, loaded: list[VectorRecord]) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        store.search(query_vector(), 0, SearchFilter(("v1",)))
    with pytest.raises(ConfigError, match="non-zero"):
        store.search(np.zeros(DIM, dtype=np.float32), 3, SearchFilter(("v1",)))
    with pytest.raises(ConfigError, match="twice"):
        store.add(
            "v1", [VectorRecord(id="d", vector=query_vector()), VectorRecord(id="d", vector=query_vector())]
        )
    assert store.count(SearchFilter(("v1",))) == len(loaded)  # a rejected add leaves nothing behind


def test_reopened_store_sees_the_same_data(
    open_store: Callable[[], VectorStore], store: VectorStore, loaded: list[VectorRecord]
) -> None:
    store.create_collection("v2", DIM)
    store.delete("v1", [loaded[0].id])
    flt = SearchFilter(("v1", "v2"), classifications=("internal",))
    q = query_vector()
    reopened = open_store()
    assert reopened.collections() == ["v1", "v2"]
    assert reopened.count(flt) == store.count(flt)
    assert reopened.search(q, 10, flt) == store.search(q, 10, flt)


def test_metadata_round_trips(open_store: Callable[[], VectorStore], store: VectorStore) -> None:
    metadata = {
        "product_id": "finance.revenue",
        "domain": "finance",
        "classification": "internal",
        "document": "docs/net revenue – définition.md",
        "chunk": {"start": 10, "end": 250, "heading_path": ["Net revenue", "Définition"]},
        "score_hint": 0.25,
        "flags": [],
        "draft": False,
        "owner": None,
        "emoji": "📈",
    }
    store.create_collection("v1", DIM)
    store.add("v1", [VectorRecord(id="chunk-1", vector=query_vector(), metadata=metadata)])
    for s in (store, open_store()):
        (hit,) = s.search(query_vector(), 1, SearchFilter(("v1",), documents=(metadata["document"],)))
        assert dict(hit.metadata) == metadata
        assert json.dumps(hit.metadata, sort_keys=True) == json.dumps(metadata, sort_keys=True)


# -- backend-specific behaviour ------------------------------------------------------------------


def test_faiss_switches_to_hnsw_beyond_flat_max(tmp_path: Path) -> None:
    records = make_records(60)
    store = FaissStore(tmp_path, flat_max=40)
    store.warm_up()
    store.create_collection("v1", DIM)
    store.add("v1", records[:30])
    assert store.describe()["collections"]["v1"]["index_type"] == "IndexFlatIP"
    store.add("v1", records[30:])
    assert store.describe()["collections"]["v1"]["index_type"] == "IndexHNSWFlat"
    q = query_vector()
    assert_hits(store.search(q, 5, SearchFilter(("v1",))), expected(records, q, 5))
    public = SearchFilter(("v1",), classifications=("public",))  # 30 rows ≤ flat_max: scored exactly
    assert_hits(
        store.search(q, 5, public), expected(records, q, 5, lambda m: m["classification"] == "public")
    )
    reopened = FaissStore(tmp_path, flat_max=40)
    assert reopened.describe()["collections"]["v1"]["index_type"] == "IndexHNSWFlat"
    store.delete("v1", [r.id for r in records[:25]])
    assert store.describe()["collections"]["v1"]["index_type"] == "IndexFlatIP"


def test_faiss_collection_without_manifest_is_invisible(tmp_path: Path) -> None:
    store = FaissStore(tmp_path)
    store.warm_up()
    store.create_collection("v1", DIM)
    store.add("v1", make_records(4))
    half_written = tmp_path / "v2"
    half_written.mkdir()
    (half_written / "index-abc.faiss").write_bytes(b"partial")
    (tmp_path / "v1" / ".tmp-123-manifest.json").write_text("{")  # an interrupted rewrite
    reopened = FaissStore(tmp_path)
    reopened.warm_up()
    assert reopened.collections() == ["v1"]
    assert reopened.count(SearchFilter(("v1",))) == 4
    with pytest.raises(CollectionNotFound, match="'v2'"):
        reopened.search(query_vector(), 1, SearchFilter(("v2",)))


@pytest.mark.pg
def test_pgvector_hnsw_path_fills_k_under_filters(pg_dsn_schema: Any) -> None:
    store = PgVectorStore(pg_dsn_schema.dsn, pg_dsn_schema.schema, exact_max=0)  # always via HNSW
    records = make_records(200, seed=3)
    store.create_collection("v1", DIM)
    store.add("v1", records)
    assert store.describe()["collections"]["v1"]["index_type"] == "hnsw"
    q = query_vector()
    keep = lambda m: m["product_id"] == "sales.pipeline" and m["classification"] == "public"
    flt = SearchFilter(("v1",), products=("sales.pipeline",), classifications=("public",))
    hits = store.search(q, 10, flt)
    assert len(hits) == 10 and all(keep(h.metadata) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert_hits(hits, expected(records, q, 10, keep))  # a tiny graph is searched exhaustively
    store.close()


@pytest.mark.pg
def test_pgvector_recovers_after_server_restart(pg_dsn_schema: Any, pg_data_dir: Path) -> None:
    store = PgVectorStore(pg_dsn_schema.dsn, pg_dsn_schema.schema)
    store.create_collection("v1", DIM)
    records = make_records()
    store.add("v1", records)
    q = query_vector()
    before = store.search(q, 5, SearchFilter(("v1",)))
    stop_postgres(pg_data_dir)
    try:
        with pytest.raises(StoreUnavailable, match="retry"):
            store.search(q, 5, SearchFilter(("v1",)))
        with pytest.raises(StoreUnavailable, match="retry"):
            store.count(SearchFilter(("v1",)))
    finally:
        assert start_postgres(pg_data_dir) == pg_dsn_schema.dsn
    assert store.search(q, 5, SearchFilter(("v1",))) == before
    assert store.count(SearchFilter(("v1",))) == len(records)
    store.close()
