"""Releases and the `current` alias in PostgreSQL: the same behaviour as the file registry (one contract,
both backends), every move in one transaction with a NOTIFY, and the merge an index run publishes with."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import psycopg
import pytest

from indexing.artefacts import ArtefactStore, chunk_prefix, embedding_path
from indexing.releases import CURRENT, ProductEntry, ReleaseRegistry, new_release, release_registry
from indexing.settings import IndexSettings
from indexing.shared_db import ALIAS_CHANNEL, SharedDb
from indexing.shared_releases import PgReleaseRegistry, RunChanges
from knowledge.errors import ConfigError, ReleaseNotFound, StoreUnavailable
from tests.conftest import PgSchema


def entry(pid: str, n: int) -> ProductEntry:
    return ProductEntry(product_id=pid, product_version="1.0.0", domain=pid.split(".")[0], classification="public",
                        chunk_version=f"cv-{pid}-{n}", embedding_version=f"ev-{pid}-{n}",
                        documents={"a.md": f"rev{n}"}, n_chunks=n)


def shared_settings(tmp_path: Path, pg: PgSchema) -> IndexSettings:
    return IndexSettings(data_dir=tmp_path / "data", store="pgvector", dsn=pg.dsn, pg_schema=pg.schema)


@pytest.fixture(params=["files", pytest.param("postgres", marks=pytest.mark.pg)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ReleaseRegistry | PgReleaseRegistry:
    if request.param == "files":
        made = release_registry(IndexSettings(data_dir=tmp_path / "data"))
        assert isinstance(made, ReleaseRegistry)
        return made
    made = release_registry(shared_settings(tmp_path, request.getfixturevalue("shared_schema")))
    assert isinstance(made, PgReleaseRegistry)
    return made


def make(registry: ReleaseRegistry | PgReleaseRegistry, **products: int):
    return registry.create({f"{p}.x": entry(f"{p}.x", n) for p, n in products.items()}, store="pgvector",
                           model_id="m", parent=None)


# --------------------------------------------------------------------------------- both registries
def test_create_is_idempotent_and_get_list_diff_agree(registry):
    assert registry.current_id() is None and registry.current() is None and registry.list() == []
    with pytest.raises(ReleaseNotFound, match="no release is current yet"):
        registry.get(CURRENT)
    r1 = make(registry, a=1, b=1)
    again = make(registry, a=1, b=1)
    assert again == r1 and [r.id for r in registry.list()] == [r1.id]
    r2 = make(registry, a=2, c=1)
    assert registry.get(r2.id) == r2 and {r.id for r in registry.list()} == {r1.id, r2.id}
    d = registry.diff(r1.id, r2.id)
    assert d.products_added == ["c.x"] and d.products_removed == ["b.x"] and d.changed == [("a.x", "a.md")]
    with pytest.raises(ReleaseNotFound, match="no release 'rel-missing'"):
        registry.get("rel-missing")


def test_publish_and_rollback_walk_the_alias_log(registry):
    r1, r2, r3 = make(registry, a=1), make(registry, a=2), make(registry, a=3)
    with pytest.raises(ReleaseNotFound, match="nothing to roll back"):
        registry.rollback()
    registry.publish(r1.id)
    with pytest.raises(ReleaseNotFound, match="no earlier current release"):
        registry.rollback()
    for r in (r2, r3):
        assert registry.publish(r.id).id == r.id
    assert registry.current_id() == r3.id and registry.get(CURRENT) == r3
    assert registry.rollback().id == r2.id and registry.current_id() == r2.id
    assert registry.rollback().id == r3.id  # the release current before r2 came back: r3
    assert registry.rollback(r1.id).id == r1.id
    with pytest.raises(ReleaseNotFound):
        registry.publish("rel-missing")
    with pytest.raises(ReleaseNotFound):
        registry.rollback("rel-missing")
    assert registry.current_id() == r1.id  # a refused move leaves the alias alone
    log = registry.alias_log()
    assert [(e["from"], e["to"], e["reason"]) for e in log] == [
        (None, r1.id, "publish"), (r1.id, r2.id, "publish"), (r2.id, r3.id, "publish"),
        (r3.id, r2.id, "rollback"), (r2.id, r3.id, "rollback"), (r3.id, r1.id, "rollback")]
    assert all(e["at"].endswith("+00:00") for e in log)


# ------------------------------------------------------------------------------------ PostgreSQL only
@pytest.mark.pg
def test_a_publish_notifies_listeners_when_it_commits(tmp_path: Path, shared_schema: PgSchema):
    registry = release_registry(shared_settings(tmp_path, shared_schema))
    r1 = make(registry, a=1)
    with psycopg.connect(shared_schema.dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {ALIAS_CHANNEL}")
        registry.publish(r1.id)
        registry.rollback(r1.id)
        got = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=2)]
    assert [(n["release_id"], n["reason"]) for n in got] == [(r1.id, "publish"), (r1.id, "rollback")]
    assert all(n["schema"] == shared_schema.schema and n["alias"] == CURRENT for n in got)


@pytest.mark.pg
def test_concurrent_moves_never_lose_a_log_entry(tmp_path: Path, shared_schema: PgSchema):
    """Each move locks the alias row: the log is one chain (every move starts where the previous ended)."""
    registry = release_registry(shared_settings(tmp_path, shared_schema))
    releases = [make(registry, a=n) for n in range(1, 5)]
    registry.publish(releases[0].id)
    errors: list[BaseException] = []

    def mover(i: int) -> None:
        try:
            for n in range(10):
                registry.publish(releases[(i + n) % len(releases)].id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log = registry.alias_log()
    assert len(log) == 41
    assert all(b["from"] == a["to"] for a, b in itertools.pairwise(log))
    assert registry.current_id() == log[-1]["to"]


def test_a_run_replaces_only_the_products_it_indexed():
    """The merge is a pure function of the release current at publish time and what the run built."""
    now = new_release({"a.x": entry("a.x", 2), "b.x": entry("b.x", 1), "c.x": entry("c.x", 1)}, store="pgvector",
                      model_id="m", parent=None, kept={"b.x": {"0.9": entry("b.x", 0)}})
    # The run started from a release where a.x was at 1 and indexed b.x (new version) and d.x (gone now).
    run = RunChanges(products={"a.x": entry("a.x", 1), "b.x": entry("b.x", 2)}, kept={},
                     indexed=frozenset({"b.x", "d.x"}), whole_mesh=False)
    products, kept = run.merged(now)
    assert products == {"a.x": entry("a.x", 2), "b.x": entry("b.x", 2), "c.x": entry("c.x", 1)}
    assert kept == {}  # b.x's kept version went with the run's view of b.x
    assert run.merged(None) == ({"b.x": entry("b.x", 2)}, {})
    whole = RunChanges(products={"a.x": entry("a.x", 3)}, kept={}, indexed=frozenset({"a.x"}), whole_mesh=True)
    assert whole.merged(now) == ({"a.x": entry("a.x", 3)}, {})


@pytest.mark.pg
def test_commit_refuses_a_release_whose_files_are_not_uploaded(tmp_path: Path, shared_schema: PgSchema):
    settings = shared_settings(tmp_path, shared_schema)
    db = SharedDb(settings)
    registry = PgReleaseRegistry(db)
    changes = RunChanges(products={"a.x": entry("a.x", 1)}, kept={}, indexed=frozenset({"a.x"}), whole_mesh=False)
    with pytest.raises(ConfigError, match="would serve files PostgreSQL lacks.*a.x"):
        registry.commit_run(changes, publish=True)
    assert registry.current_id() is None and registry.list() == []
    artefacts = ArtefactStore(db)
    artefacts.put(chunk_prefix("cv-a.x-1") + "manifest.json", b"{}")
    artefacts.put(embedding_path("ev-a.x-1"), b"{}")
    done = registry.commit_run(changes, publish=True)
    assert done.published and done.previous is None and registry.current_id() == done.release.id
    again = registry.commit_run(changes, publish=True)
    assert not again.published and again.release.id == done.release.id and len(registry.alias_log()) == 1


@pytest.mark.pg
def test_an_unreachable_server_is_store_unavailable(tmp_path: Path):
    settings = IndexSettings(data_dir=tmp_path / "data", store="pgvector", pg_schema="meshrag",
                             dsn=f"host={tmp_path / 'no-server'} port=5 user=postgres dbname=postgres")
    registry = release_registry(settings)
    with pytest.raises(StoreUnavailable, match="unavailable.*retry"):
        registry.current_id()
