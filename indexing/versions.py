"""Chunk and embedding product versions: content-derived ids, manifests, and the on-disk chunk store.

Layout under the data directory:
    chunks/<chunk-version-id>/{manifest.json, chunks.jsonl, keyword/}
    embeddings/<embedding-version-id>.json        (manifest; vectors live in the vector store)
A version is visible only once its manifest exists (written last, atomically).

In shared mode (`version_store(settings)`) the data directory is a cache of the `artefacts` table
(indexing/artefacts.py): a version missing here is fetched from PostgreSQL on first use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexing.atomic import publish_dir_atomic, staging_dir, write_json_atomic
from indexing.types import Chunk
from knowledge.errors import ReleaseNotFound

if TYPE_CHECKING:
    from indexing.artefacts import ArtefactStore
    from indexing.settings import IndexSettings
    from indexing.shared_db import SharedDb

TRACKED_LIBRARIES = ("meshrag", "sentence-transformers", "transformers", "torch", "tiktoken", "presidio-analyzer",
                     "spacy", "faiss-cpu", "bm25s", "psycopg", "pgvector", "numpy")


def content_id(prefix: str, payload: Any, length: int = 20) -> str:
    """A stable id: prefix + sha256 of the canonical JSON of what defines the thing."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return f"{prefix}-{hashlib.sha256(blob).hexdigest()[:length]}"


def chunk_version_id(product_id: str, documents: Mapping[str, str], pipeline: Mapping[str, Any]) -> str:
    """Hash of the source document hashes and every step that shapes chunk text (chunker name, version,
    config; PII scanner and policy; injection detector)."""
    return content_id("cv", {"product": product_id, "documents": sorted(documents.items()), "pipeline": pipeline})


def embedding_version_id(chunk_version: str, model_id: str, dim: int, normalize: bool) -> str:
    """Hash of the chunk version and the model (name + weights hash in `model_id`), dimension, normalisation."""
    return content_id("ev", {"chunks": chunk_version, "model": model_id, "dim": dim, "normalize": normalize})


@cache
def library_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def chunk_to_json(chunk: Chunk) -> dict[str, Any]:
    d = asdict(chunk)
    d["heading_path"] = list(chunk.heading_path)
    d["flags"] = list(chunk.flags)
    return d


def chunk_from_json(d: Mapping[str, Any]) -> Chunk:
    data = dict(d)
    data["heading_path"] = tuple(data.get("heading_path", ()))
    data["flags"] = tuple(data.get("flags", ()))
    return Chunk(**data)


def version_store(settings: IndexSettings, db: SharedDb | None = None) -> VersionStore:
    """The data directory's versions; in shared mode backed by PostgreSQL's `artefacts` (fetched on a miss)."""
    from indexing.stores.pg_shared import is_shared

    if not is_shared(settings):
        return VersionStore(settings.resolved_data_dir())
    from indexing.artefacts import ArtefactStore
    from indexing.shared_db import SharedDb

    return VersionStore(settings.resolved_data_dir(), remote=ArtefactStore(db or SharedDb(settings)))


class VersionStore:
    """Chunk versions and embedding-version manifests under a data directory; with `remote`, a version
    missing there is fetched from PostgreSQL first."""

    def __init__(self, data_dir: Path, remote: ArtefactStore | None = None):
        self.data_dir = Path(data_dir)
        self.chunks_dir = self.data_dir / "chunks"
        self.embeddings_dir = self.data_dir / "embeddings"
        self.remote = remote

    # chunk versions -------------------------------------------------------------------------
    def has_chunk_version(self, version_id: str) -> bool:
        if (self.chunks_dir / version_id / "manifest.json").is_file():
            return True
        return self.remote is not None and self.remote.fetch_chunk_version(self.data_dir, version_id)

    def chunk_dir(self, version_id: str) -> Path:
        return self.chunks_dir / version_id

    def write_chunk_version(self, version_id: str, chunks: Sequence[Chunk], manifest: Mapping[str, Any],
                            extra_writer=None) -> Path:
        """Write chunks + manifest into a staging folder, let `extra_writer(folder)` add files (the
        keyword index), then publish the folder with one rename."""
        stage = staging_dir(self.chunks_dir, version_id)
        with (stage / "chunks.jsonl").open("w", encoding="utf-8") as fh:
            for c in chunks:
                fh.write(json.dumps(chunk_to_json(c), ensure_ascii=False) + "\n")
        if extra_writer is not None:
            extra_writer(stage)
        write_json_atomic(stage / "manifest.json", dict(manifest, id=version_id))
        publish_dir_atomic(stage, self.chunk_dir(version_id))
        return self.chunk_dir(version_id)

    def read_chunks(self, version_id: str) -> list[Chunk]:
        path = self.chunk_dir(version_id) / "chunks.jsonl"
        if not self.has_chunk_version(version_id) or not path.is_file():
            raise ReleaseNotFound(f"chunk version {version_id} is not in {self.chunks_dir}; re-run `meshrag index`")
        with path.open(encoding="utf-8") as fh:
            return [chunk_from_json(json.loads(line)) for line in fh if line.strip()]

    def chunk_manifest(self, version_id: str) -> dict[str, Any]:
        path = self.chunk_dir(version_id) / "manifest.json"
        if not self.has_chunk_version(version_id):
            raise ReleaseNotFound(f"chunk version {version_id} is not in {self.chunks_dir}")
        return json.loads(path.read_text("utf-8"))

    def chunk_versions(self) -> list[str]:
        if not self.chunks_dir.is_dir():
            return []
        return sorted(p.name for p in self.chunks_dir.iterdir() if not p.name.startswith(".") and
                      (p / "manifest.json").is_file())

    # embedding versions ---------------------------------------------------------------------
    def has_embedding_version(self, version_id: str) -> bool:
        if (self.embeddings_dir / f"{version_id}.json").is_file():
            return True
        return self.remote is not None and self.remote.fetch_file(self.data_dir, f"embeddings/{version_id}.json")

    def write_embedding_manifest(self, version_id: str, manifest: Mapping[str, Any]) -> None:
        write_json_atomic(self.embeddings_dir / f"{version_id}.json", dict(manifest, id=version_id))

    def embedding_manifest(self, version_id: str) -> dict[str, Any]:
        path = self.embeddings_dir / f"{version_id}.json"
        if not self.has_embedding_version(version_id):
            raise ReleaseNotFound(f"embedding version {version_id} is not in {self.embeddings_dir}")
        return json.loads(path.read_text("utf-8"))

    def embedding_versions(self) -> list[str]:
        if not self.embeddings_dir.is_dir():
            return []
        return sorted(p.stem for p in self.embeddings_dir.glob("*.json") if not p.name.startswith("."))


def documents_of(chunks: Iterable[Chunk]) -> dict[str, str]:
    """document id → revision for the documents that produced these chunks."""
    return {c.document: c.doc_revision for c in chunks}
