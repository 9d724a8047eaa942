"""A replica's data directory is a cache of PostgreSQL: a ServingContext started on an empty scratch dir
(and no mesh sources) serves what another data dir indexed, follows publishes, rollbacks and contract
changes within seconds, and reports a lost server as StoreUnavailable (real MiniLM, embedded PostgreSQL)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from indexing.embedder import create_embedder
from indexing.index_report import IndexReport
from indexing.pipeline import IndexPipeline
from indexing.release_evals import ReleaseEval
from indexing.releases import release_registry
from indexing.settings import IndexSettings
from indexing.shared_evals import release_eval_store
from indexing.stores.embedded_pg import start_postgres, stop_postgres
from indexing.types import Embedder
from knowledge.catalog import product_summary
from knowledge.errors import ConfigError, StoreUnavailable
from knowledge.model import Principal
from retrieval.searcher import MeshSearcher
from retrieval.serving import ALIAS_RECHECK_S, ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import SearchRequest
from tests.conftest import PgSchema
from tests.polling import poll_until
from tests.retrieval.conftest import INTERNAL, PUBLIC, RESTRICTED
from tests.shared.conftest import SharedPg, append_to_doc, write_tiny_mesh

pytestmark = [pytest.mark.pg, pytest.mark.slow]

BOUND_S = 5.0  # the bound for a publish to reach a replica
READS_ALL = Principal("auditor", frozenset({"everyone", "employee", "people-partner"}))
QUERIES = ("What do I do when the carrier misses the pickup?", "Who answers reader questions?",
           "How is the bonus pool funded?")


def view(searcher: MeshSearcher, query: str, **kw: Any) -> tuple[Any, ...]:
    result = searcher.search(SearchRequest(query=query, principal=READS_ALL, k=5, **kw))
    return result.release_id, tuple((h.chunk_id, h.product_id, h.chunk.document, round(h.score, 6))
                                    for h in result.hits)


@dataclass
class Deployment:
    """One indexer data dir and mesh, PostgreSQL, and replicas made on empty scratch dirs."""

    tmp: Path
    pg: PgSchema
    mesh: Path
    embedder: Embedder

    def common(self) -> dict[str, Any]:
        return {"store": "pgvector", "dsn": self.pg.dsn, "pg_schema": self.pg.schema, "query_runtime": "torch"}

    def index(self, *products: str) -> IndexReport:
        settings = IndexSettings(data_dir=self.tmp / "indexer", mesh_roots=[self.mesh],
                                 **{k: v for k, v in self.common().items() if k != "query_runtime"})
        return IndexPipeline(settings, embedder=self.embedder).run(list(products) or None)

    def replica(self, name: str) -> MeshSearcher:
        """A searcher on an empty scratch dir whose mesh roots hold nothing: all it knows is the DSN."""
        (self.tmp / "no-mesh").mkdir(exist_ok=True)
        settings = RetrievalSettings(data_dir=self.tmp / name, mesh_roots=[self.tmp / "no-mesh"], **self.common())
        searcher = MeshSearcher(ServingContext(settings, embedder=self.embedder))
        searcher.warm_up()
        return searcher


@pytest.fixture
def deployment(tmp_path: Path, shared_schema: PgSchema, minilm: Embedder) -> Deployment:
    dep = Deployment(tmp_path, shared_schema, write_tiny_mesh(tmp_path / "mesh"), minilm)
    report = dep.index()
    assert report.published and not report.blocked, report.as_dict()
    return dep


def test_a_replica_on_an_empty_scratch_dir_serves_what_another_data_dir_indexed(deployment: Deployment):
    indexer_side = deployment.replica("indexer")  # the indexing host's own data dir, shared mode
    replica = deployment.replica("scratch-a")
    for query in QUERIES:
        theirs, ours = view(indexer_side, query), view(replica, query)
        assert ours[1], f"no hits for {query!r}"
        assert ours == theirs
    context = replica.context
    release = context.release()
    assert release.id == release_registry(context.settings).current_id()
    scratch = deployment.tmp / "scratch-a"
    # Only a cache was written: the chunk versions it serves and the catalog snapshot's files.
    assert sorted(p.name for p in scratch.iterdir() if p.name != "cache") == ["chunks", "shared"]
    assert {p.name for p in (scratch / "chunks").iterdir()} == {e.chunk_version for e in release.products.values()}
    # The catalog came from the snapshot, not from the (empty) mesh roots, and tells the same facts.
    mesh_side, now = indexer_side.context.catalog, datetime.now(UTC)
    assert sorted(context.catalog.products) == sorted(mesh_side.products) == sorted([PUBLIC, INTERNAL, RESTRICTED])
    for pid in mesh_side.products:
        here, there = context.catalog.products[pid], mesh_side.products[pid]
        assert here.contract_path.read_bytes() == (deployment.mesh / pid.replace(".", "/") / "contract.yaml").read_bytes()
        assert (here.read_roles, here.classification) == (there.read_roles, there.classification)
        assert product_summary(here, now) == product_summary(there, now)  # document count, freshness from source times

    # Eval results recorded on one host are shown by every replica.
    result = ReleaseEval(release_id=release.id, recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
                         sets=("golden",), sets_digest="d", overall={"recall@5": 0.9},
                         per_product={PUBLIC: {"recall@5": 1.0}})
    release_eval_store(indexer_side.context.settings).save(result)
    assert context.evals.get(release.id) == result


def test_a_publish_and_a_rollback_reach_a_running_replica_within_seconds(deployment: Deployment):
    replica = deployment.replica("scratch-b")
    before = replica.context.release().id
    old_view = view(replica, "When does the ocelot freeze window start?")
    append_to_doc(deployment.mesh, PUBLIC, "glossary.md", "The ocelot freeze window starts on the first Monday of May.")
    report = deployment.index(PUBLIC)
    assert report.published and report.release_id != before and report.previous_release == before

    assert poll_until(lambda: replica.context.release().id == report.release_id, BOUND_S)
    now = replica.search(SearchRequest(query="When does the ocelot freeze window start?", principal=READS_ALL, k=3))
    assert "ocelot" in now.hits[0].chunk.text and now.release_id == report.release_id
    # A request may still pin the earlier release.
    assert view(replica, "When does the ocelot freeze window start?", release=before) == old_view

    release_registry(replica.context.settings).rollback()
    assert poll_until(lambda: replica.context.release().id == before, BOUND_S)
    assert view(replica, "When does the ocelot freeze window start?") == old_view


def test_contract_changes_reach_replicas_by_running_index(deployment: Deployment):
    replica = deployment.replica("scratch-c")
    folder = deployment.mesh / "ops" / "runbooks"
    contract = yaml.safe_load((folder / "contract.yaml").read_text())
    contract["roles"].append({"role": "contractor", "access": "read"})
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    assert "contractor" not in replica.context.catalog.products[INTERNAL].read_roles
    deployment.index(INTERNAL)
    assert poll_until(lambda: "contractor" in replica.context.catalog.products[INTERNAL].read_roles, BOUND_S)

    # A contract that stops validating: its product is blocked at indexing, and replicas keep serving the
    # last valid version, marked with the problem (as a FAISS-mode server does with its mesh roots).
    public = deployment.mesh / "platform" / "handbook" / "contract.yaml"
    public.write_text(public.read_text().replace("apiVersion: v3.1.0", "apiVersion: v9"))
    report = deployment.index(PUBLIC)
    assert [p.product_id for p in report.blocked] == [PUBLIC]
    assert poll_until(lambda: replica.context.catalog.products[PUBLIC].problem is not None, BOUND_S)
    assert "apiVersion" in (replica.context.catalog.products[PUBLIC].problem or "")
    assert view(replica, "Who answers reader questions?")[1][0][1] == PUBLIC


def test_a_tampered_artefact_is_refused_by_a_fresh_replica(deployment: Deployment):
    with psycopg.connect(deployment.pg.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("UPDATE {}.artefacts SET content = content || '\\x0a'::bytea "
                             "WHERE path LIKE 'chunks/%%/chunks.jsonl'").format(sql.Identifier(deployment.pg.schema)))
    with pytest.raises(ConfigError, match="does not match its sha256"):
        deployment.replica("scratch-d")


def test_a_lost_server_is_store_unavailable_until_it_is_back(deployment: Deployment, shared_pg: SharedPg):
    replica = deployment.replica("scratch-e")
    release = replica.context.release().id
    stop_postgres(shared_pg.pgdata)
    try:
        time.sleep(ALIAS_RECHECK_S * 1.2)  # let the alias be due for its re-check
        with pytest.raises(StoreUnavailable, match="retry"):
            replica.context.release()
    finally:
        assert start_postgres(shared_pg.pgdata) == shared_pg.dsn
    assert replica.context.release().id == release
    assert view(replica, QUERIES[0])[1]


def test_faiss_mode_keeps_its_files(tmp_path: Path):
    """FAISS mode is untouched: releases and the alias stay files, the catalog is read from the mesh."""
    mesh = write_tiny_mesh(tmp_path / "mesh", (PUBLIC,))
    settings = IndexSettings(data_dir=tmp_path / "data", mesh_roots=[mesh], embedder="hash")
    report = IndexPipeline(settings, embedder=create_embedder("hash")).run()
    assert (tmp_path / "data" / "releases" / "current.json").is_file() and not (tmp_path / "data" / "shared").exists()
    context = ServingContext(RetrievalSettings(data_dir=tmp_path / "data", mesh_roots=[mesh], embedder="hash"))
    context.warm_up()
    assert context.release().id == report.release_id and context.catalog.roots == (mesh.resolve(),)
