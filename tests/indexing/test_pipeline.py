"""The index run end to end, on small copies of sample products, with the real pipeline parts.

The deterministic "hash" embedder (registered through the same factory as MiniLM) keeps these fast;
tests/indexing/test_pipeline_minilm.py covers the real model."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

import indexing.pipeline as pipeline_module
from indexing.embedder import create_embedder
from indexing.pipeline import IndexPipeline
from indexing.releases import ReleaseRegistry
from indexing.settings import IndexSettings
from indexing.stores.factory import create_store
from indexing.types import SearchFilter
from indexing.versions import VersionStore
from knowledge.settings import SAMPLE_MESH
from tests.indexing.conftest import pg_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def copy_product(mesh: Path, product: str) -> Path:
    dest = mesh / product
    shutil.copytree(SAMPLE_MESH / product, dest)
    return dest


def settings_for(tmp_path: Path, mesh: Path, **kw) -> IndexSettings:
    return IndexSettings(data_dir=tmp_path / "data", mesh_roots=[mesh], embedder="hash", **kw)


@pytest.fixture
def mesh(tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    copy_product(root, "platform/mesh-handbook")
    return root


def test_second_run_embeds_nothing_and_keeps_the_release(tmp_path, mesh):
    s = settings_for(tmp_path, mesh)
    cold = IndexPipeline(s).run()
    warm = IndexPipeline(s).run()
    assert cold.published and cold.release_id
    (p,) = cold.products
    assert p.embedded == p.chunks > 20 and p.reused == 0 and p.truncated == 0
    (w,) = warm.products
    assert (w.embedded, w.reused, w.chunks) == (0, p.chunks, p.chunks)
    assert (w.added, w.changed, w.removed) == (0, 0, 0)
    assert warm.release_id == cold.release_id and not warm.published


def test_edit_delete_add_reembeds_only_new_chunks_and_diff_lists_them(tmp_path, mesh):
    s = settings_for(tmp_path, mesh)
    docs = mesh / "platform/mesh-handbook/docs"
    first = IndexPipeline(s).run()
    versions = VersionStore(s.resolved_data_dir())
    old_entry = ReleaseRegistry(s.resolved_data_dir()).get(first.release_id).products["platform.mesh-handbook"]
    old_hashes = {c.text_hash for c in versions.read_chunks(old_entry.chunk_version)}

    with (docs / "principles.md").open("a") as fh:
        fh.write("\n\n## Addendum\n\nFrom 2026-12-01 every product review also checks the glossary links.\n")
    (docs / "governance-faq.md").unlink()
    (docs / "new-policy.md").write_text("# Retention exceptions\n\nLegal holds extend retention past the SLA "
                                        "until the hold is lifted by the General Counsel.\n")
    second = IndexPipeline(s).run()
    (p,) = second.products
    assert (p.added, p.changed, p.removed) == (1, 1, 1)
    reg = ReleaseRegistry(s.resolved_data_dir())
    new_entry = reg.get(second.release_id).products["platform.mesh-handbook"]
    new_chunks = versions.read_chunks(new_entry.chunk_version)
    expected_new = {c.text_hash for c in new_chunks} - old_hashes
    assert 0 < p.embedded == len(expected_new) < len(new_chunks)
    assert p.reused == len(new_chunks) - p.embedded

    diff = reg.diff(first.release_id, second.release_id)
    assert diff.added == [("platform.mesh-handbook", "new-policy.md")]
    assert diff.changed == [("platform.mesh-handbook", "principles.md")]
    assert diff.removed == [("platform.mesh-handbook", "governance-faq.md")]

    store = create_store("faiss", s.resolved_data_dir())
    store.warm_up()
    query = np.zeros(384, dtype=np.float32)
    query[0] = 1.0
    only_faq = {"documents": ("governance-faq.md",)}
    assert store.count(SearchFilter(collections=(new_entry.embedding_version,), **only_faq)) == 0
    assert store.count(SearchFilter(collections=(old_entry.embedding_version,), **only_faq)) > 0
    assert store.search(query, 5, SearchFilter(collections=(new_entry.embedding_version,), **only_faq)) == []

    assert reg.current_id() == second.release_id
    reg.rollback()
    assert reg.current_id() == first.release_id


def _add_reject_product(mesh: Path, with_pii: bool) -> Path:
    folder = copy_product(mesh, "people/compensation-handbook")
    if with_pii:
        (folder / "docs" / "contacts.md").write_text(
            "# Contacts\n\nEscalations go to payroll.lead@example.com or (503) 555-0147.\n")
    return folder


def test_reject_policy_blocks_only_that_product_and_keeps_its_previous_version(tmp_path, mesh):
    s = settings_for(tmp_path, mesh)
    folder = _add_reject_product(mesh, with_pii=False)
    first = IndexPipeline(s).run()
    assert all(p.gate == "passed" for p in first.products)

    (folder / "docs" / "contacts.md").write_text("# Contacts\n\nWrite to payroll.lead@example.com.\n")
    with (mesh / "platform/mesh-handbook/docs/principles.md").open("a") as fh:
        fh.write("\n\nA new closing paragraph about domain ownership.\n")
    second = IndexPipeline(s).run()
    by_id = {p.product_id: p for p in second.products}
    blocked = by_id["people.compensation-handbook"]
    assert blocked.gate == "blocked"
    assert "contacts.md" in blocked.reason and "reject" in blocked.reason and "EMAIL_ADDRESS" in blocked.reason
    assert by_id["platform.mesh-handbook"].gate == "passed" and by_id["platform.mesh-handbook"].changed == 1
    assert second.published
    reg = ReleaseRegistry(s.resolved_data_dir())
    old, new = reg.get(first.release_id), reg.get(second.release_id)
    assert new.products["people.compensation-handbook"] == old.products["people.compensation-handbook"]
    assert new.products["platform.mesh-handbook"] != old.products["platform.mesh-handbook"]


def test_reject_product_with_pii_is_never_published_and_others_are(tmp_path, mesh):
    s = settings_for(tmp_path, mesh)
    _add_reject_product(mesh, with_pii=True)
    report = IndexPipeline(s).run()
    by_id = {p.product_id: p for p in report.products}
    assert by_id["people.compensation-handbook"].gate == "blocked"
    rel = ReleaseRegistry(s.resolved_data_dir()).get("current")
    assert list(rel.products) == ["platform.mesh-handbook"]


def test_invalid_contract_blocks_its_product_only(tmp_path, mesh):
    s = settings_for(tmp_path, mesh)
    broken = copy_product(mesh, "finance/revenue-reporting")
    contract = yaml.safe_load((broken / "contract.yaml").read_text())
    contract["roles"] = []
    (broken / "contract.yaml").write_text(yaml.safe_dump(contract))
    report = IndexPipeline(s).run()
    by_id = {p.product_id: p for p in report.products}
    assert by_id["finance.revenue-reporting"].gate == "blocked"
    assert "contract invalid" in by_id["finance.revenue-reporting"].reason
    assert "roles" in by_id["finance.revenue-reporting"].reason
    assert by_id["platform.mesh-handbook"].gate == "passed" and report.published


def _assert_no_planted_pii(blobs: list[tuple[str, bytes]]) -> None:
    planted = json.loads((FIXTURES / "planted_pii.json").read_text())
    needles = planted["emails"] + planted["phones"] + planted["cards"] + planted["cards_digits"]
    for name, blob in blobs:
        for needle in needles:
            assert needle.encode() not in blob, f"planted PII {needle!r} stored in {name}"


@pytest.mark.parametrize("store", ["faiss", pytest.param("pgvector", marks=pytest.mark.pg)])
def test_redacted_product_stores_no_planted_pii(tmp_path, store, request):
    mesh = tmp_path / "mesh"
    copy_product(mesh, "customer/support-knowledge")
    extra = {}
    if store == "pgvector":
        pg = request.getfixturevalue("pg_dsn_schema")
        extra = {"store": "pgvector", "dsn": pg.dsn, "pg_schema": pg.schema}
    s = settings_for(tmp_path, mesh, **extra)
    report = IndexPipeline(s).run()
    (p,) = report.products
    assert p.gate == "passed"
    assert p.pii_findings.get("EMAIL_ADDRESS", 0) >= 7 and p.pii_findings.get("CREDIT_CARD", 0) >= 5
    assert p.pii_findings.get("PHONE_NUMBER", 0) >= 7

    data = s.resolved_data_dir()
    files = [(str(f), f.read_bytes()) for f in data.rglob("*") if f.is_file() and "postgres" not in f.parts]
    assert any(name.endswith("chunks.jsonl") for name, _ in files)
    _assert_no_planted_pii(files)
    chunks_text = b"".join(blob for name, blob in files if name.endswith("chunks.jsonl")).decode()
    assert "<EMAIL_ADDRESS>" in chunks_text and "<CREDIT_CARD>" in chunks_text and "<PHONE_NUMBER>" in chunks_text

    if store == "pgvector":
        rows = pg_rows(extra["dsn"], extra["pg_schema"])
        assert rows
        _assert_no_planted_pii(rows)


def test_manifests_record_what_defines_each_version(tmp_path, mesh):
    s = settings_for(tmp_path, mesh)
    report = IndexPipeline(s).run()
    (p,) = report.products
    versions = VersionStore(s.resolved_data_dir())
    cm = versions.chunk_manifest(p.chunk_version)
    assert cm["pipeline"]["chunker"]["name"] and cm["pipeline"]["chunker"]["max_tokens"] == 200
    assert cm["truncated"] == 0 and cm["n_chunks"] == p.chunks and "tiktoken" in cm["libraries"]
    assert set(cm["documents"]) >= {"principles.md", "_catalog"}
    em = versions.embedding_manifest(p.embedding_version)
    assert em["chunk_version"] == p.chunk_version and em["dim"] == 384 and em["model_id"].startswith("hash-")

    # A different chunker config or model gives different version ids; the old ones stay intact.
    other = IndexPipeline(settings_for(tmp_path, mesh, chunk_max_tokens=120)).run()
    assert other.products[0].chunk_version != p.chunk_version
    assert versions.has_chunk_version(p.chunk_version)


def test_lineage_events_name_inputs_and_outputs(tmp_path, mesh):
    s = settings_for(tmp_path, mesh)
    report = IndexPipeline(s).run()
    events = [json.loads(line) for line in (s.resolved_data_dir() / "lineage/events.jsonl").read_text().splitlines()]
    run_events = [e for e in events if e["job"]["name"] == "meshrag.index"]
    assert [e["eventType"] for e in run_events] == ["START", "COMPLETE"]
    assert run_events[0]["inputs"][0]["name"] == "platform.mesh-handbook"
    (step,) = [e for e in events if e["job"]["name"] == "meshrag.index.platform.mesh-handbook"]
    outputs = {o["namespace"]: o for o in step["outputs"]}
    p = report.products[0]
    assert outputs["meshrag://chunks"]["facets"]["version"]["datasetVersion"] == p.chunk_version
    assert outputs["meshrag://embeddings"]["facets"]["version"]["datasetVersion"] == p.embedding_version
    assert step["run"]["facets"]["parent"]["run"]["runId"] == report.run_id


def test_unknown_product_selection_is_a_clear_error(tmp_path, mesh):
    from knowledge.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown product"):
        IndexPipeline(settings_for(tmp_path, mesh)).run(["nope.nothing"])


class _GatedProgress:
    """Records progress events; the chunking bar's second-to-last step waits until the embedding bar
    has moved, which it can only do if embedding runs while chunking is unfinished."""

    def __init__(self, product_id: str, documents: int) -> None:
        self.events: list[tuple[str, str]] = []
        self.embedding_started = threading.Event()
        self._chunk, self._embed = f"chunk:{product_id}", f"embed:{product_id}"
        self._gate_at, self._chunked = documents - 1, 0
        self.waited = False

    def begin(self, key: str, description: str, total: int) -> None:
        self.events.append(("begin", key))

    def expect(self, key: str, total: int) -> None:
        self.events.append(("expect", key))

    def advance(self, key: str, n: int = 1) -> None:
        self.events.append(("advance", key))
        if key == self._embed:
            self.embedding_started.set()
        elif key == self._chunk:
            self._chunked += 1
            if self._chunked == self._gate_at:
                self.waited = self.embedding_started.wait(timeout=60)

    def end(self, key: str) -> None:
        self.events.append(("end", key))


def test_embedding_starts_while_chunking_runs_and_vectors_stay_with_their_chunks(tmp_path, mesh, monkeypatch):
    monkeypatch.setattr(pipeline_module, "EMBED_WINDOW", 8)
    s = settings_for(tmp_path, mesh)
    pid = "platform.mesh-handbook"
    documents = len(list((mesh / "platform/mesh-handbook/docs").iterdir())) + 1  # + the catalog card
    progress = _GatedProgress(pid, documents)
    report = IndexPipeline(s, progress=progress).run()
    (p,) = report.products
    assert p.chunks > 8 * 2 and p.embedded == p.chunks

    assert progress.waited, "embedding did not start before chunking finished"
    first_embed = progress.events.index(("advance", f"embed:{pid}"))
    assert first_embed < progress.events.index(("end", f"chunk:{pid}"))

    # Every stored vector is its own chunk's: search with each chunk's vector finds that chunk first.
    entry = ReleaseRegistry(s.resolved_data_dir()).get(report.release_id).products[pid]
    chunks = VersionStore(s.resolved_data_dir()).read_chunks(entry.chunk_version)
    embedder = create_embedder("hash")
    embedder.warm_up()
    store = create_store("faiss", s.resolved_data_dir())
    store.warm_up()
    vectors = embedder.embed_documents([c.embedding_text for c in chunks])
    for chunk, vector in zip(chunks, vectors):
        (hit,) = store.search(vector, 1, SearchFilter(collections=(entry.embedding_version,)))
        same_text = {c.chunk_id for c in chunks if c.embedding_text == chunk.embedding_text}
        assert hit.id in same_text and hit.score == pytest.approx(1.0, abs=1e-5)


def test_a_failed_embedding_while_chunking_fails_the_run_and_stores_nothing(tmp_path, mesh, monkeypatch):
    monkeypatch.setattr(pipeline_module, "EMBED_WINDOW", 8)
    s = settings_for(tmp_path, mesh)
    pipe = IndexPipeline(s)
    embedder = pipe.embedder

    def broken(texts):
        raise RuntimeError("the model ran out of memory")

    monkeypatch.setattr(embedder, "embed_documents", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        pipe.run()
    data = s.resolved_data_dir()
    assert ReleaseRegistry(data).current() is None
    assert list(VersionStore(data).chunks_dir.glob("*")) == []
    store = create_store("faiss", data)
    store.warm_up()
    assert store.collections() == []
