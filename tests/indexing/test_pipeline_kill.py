"""A SIGKILL in the middle of an index run leaves the previous release serving and nothing half-made
visible; the next run completes. Runs the real CLI in a subprocess with the real MiniLM model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing.releases import ReleaseRegistry
from indexing.stores.factory import create_store
from indexing.types import SearchFilter
from indexing.versions import VersionStore
from knowledge.settings import SAMPLE_MESH

pytestmark = pytest.mark.slow


def _meshrag(data: Path, mesh: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, MESHRAG_MESH_ROOTS=json.dumps([str(mesh)]), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "api.cli.main", "index", "--data-dir", str(data), "--json", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_keeps_previous_release(tmp_path):
    mesh, data = tmp_path / "mesh", tmp_path / "data"
    shutil.copytree(SAMPLE_MESH / "finance/revenue-reporting", mesh / "finance/revenue-reporting")
    first = _meshrag(data, mesh)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    release_a = json.loads(out)["release_id"]

    for product in ("people/compensation-handbook", "platform/mesh-handbook", "operations/fulfilment-ops"):
        shutil.copytree(SAMPLE_MESH / product, mesh / product)
    versions = VersionStore(data)
    before = set(versions.chunk_versions())
    victim = _meshrag(data, mesh)
    deadline = time.monotonic() + 300
    while set(versions.chunk_versions()) == before:  # a new chunk version: the run is now embedding
        assert victim.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL

    registry = ReleaseRegistry(data)
    assert registry.current_id() == release_a
    assert [r.id for r in registry.list()] == [release_a]
    store = create_store("faiss", data)
    store.warm_up()
    for ev in versions.embedding_versions():  # every listed embedding version is complete in the store
        manifest = versions.embedding_manifest(ev)
        assert store.count(SearchFilter(collections=(ev,))) == manifest["n_vectors"]
    # A collection the killed run was filling has no manifest: no version lists it, no release uses it.
    orphans = set(store.collections()) - set(versions.embedding_versions())
    assert len(orphans) <= 1
    assert not orphans & {e.embedding_version for r in registry.list() for e in r.products.values()}
    for cv in versions.chunk_versions():
        assert len(versions.read_chunks(cv)) == versions.chunk_manifest(cv)["n_chunks"]

    rerun = _meshrag(data, mesh)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["published"] and report["release_id"] != release_a
    assert registry.current_id() == report["release_id"]
    store = create_store("faiss", data)
    store.warm_up()
    assert set(store.collections()) == set(versions.embedding_versions())  # the orphan was rebuilt in full
    assert set(registry.get("current").products) == {"finance.revenue-reporting", "people.compensation-handbook",
                                                      "platform.mesh-handbook", "operations.fulfilment-ops"}
