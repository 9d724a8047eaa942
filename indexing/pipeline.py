"""The index run: catalog → contracts → snapshot → diff → load → PII → chunk → embed → store → release.

One product's failure (invalid contract, PII under a `reject` policy) blocks only that product's new
version; its previous version, if any, stays in the release. Nothing is visible until complete: chunk
versions and vector collections are published by rename, the release record is written atomically,
and `current` moves last.

In shared mode (store = pgvector) a run locks only the products it indexes (so runs of different products
proceed side by side, from any host), uploads what it built, and publishes by merging its products into
whatever release is current at that moment: indexing/shared_index.py.

One product's sources, fingerprint and chunks: indexing/product_chunks.py (ProductBlocked, catalog_document
and sha256_file stay importable from here); its vectors' records and embedding manifest:
indexing/product_vectors.py; the run's lock: indexing/run_lock.py.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from openlineage.client.event_v2 import RunState

from indexing.chunking import PROMPT_INJECTION_FLAG, Chunker, ChunkerConfig
from indexing.embedder import create_embedder
from indexing.embedding_cache import embed_with_cache, open_embedding_cache
from indexing.index_report import IndexReport, NoProgress, ProductReport, Progress
from indexing.lineage import DatasetRef, LineageEmitter
from indexing.pii import PiiScanner, ner_model_problem, policy_entities
from indexing.product_chunks import (
    ProductBlocked,
    catalog_document,
    chunk_fingerprint,
    chunk_product,
    product_sources,
    sha256_file,
    write_keyword_index,
)
from indexing.product_vectors import EmbeddedVectors, embedding_manifest, vector_records
from indexing.releases import ProductEntry, Release, release_registry
from indexing.run_lock import index_run_lock
from indexing.settings import IndexSettings
from indexing.shared_db import SharedDb, process_label
from indexing.shared_index import SharedIndexRun
from indexing.shared_releases import RunChanges
from indexing.stores.factory import create_store
from indexing.stores.pg_shared import is_shared
from indexing.types import Chunk, Embedder, VectorStore
from indexing.versions import chunk_version_id, embedding_version_id, library_versions, version_store
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError, ContractError
from knowledge.model import KnowledgeProduct
from knowledge.versions import kept_versions

__all__ = ["EMBED_BATCH", "EMBED_WINDOW", "IndexPipeline", "IndexReport", "ProductBlocked", "ProductReport",
           "catalog_document", "sha256_file"]

EMBED_BATCH = 256  # chunks per embedding call (and progress step)
# While chunking runs, chunks are embedded in windows of this many, longest first within a window: big
# enough that batches carry little padding, small enough that embedding starts early.
EMBED_WINDOW = 1024

log = logging.getLogger(__name__)


class IndexPipeline:
    """Builds chunk and embedding product versions and a release. Construct cheaply, then `run()`."""

    def __init__(self, settings: IndexSettings, *, store: VectorStore | None = None,
                 embedder: Embedder | None = None, progress: Progress | None = None,
                 notice: Callable[[str], None] | None = None):
        self.settings = settings
        self.data_dir = settings.resolved_data_dir()
        self.progress = progress or NoProgress()
        self._store = store
        self._embedder = embedder
        self._embedder_warm = False
        db = SharedDb(settings, application_name=process_label("meshrag index")) if is_shared(settings) else None
        self.versions = version_store(settings, db)
        self.releases = release_registry(settings, db)
        # Shared mode only: per-product locks, uploads, the merged publish (`notice` hears of waits).
        self.shared = SharedIndexRun(db, self.releases, self.data_dir, notice or log.warning) \
            if db is not None else None  # type: ignore[arg-type]
        self.pii = PiiScanner()
        self.chunker: Chunker | None = None
        self.cache = open_embedding_cache(settings)

    # --------------------------------------------------------------------------------- parts
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            # Indexing embeds documents only: no ONNX query encoder to export or verify.
            self._embedder = create_embedder(self.settings.embedder, batch_size=self.settings.embed_batch_size,
                                             query_runtime="torch") \
                if self.settings.embedder == "minilm" else create_embedder(self.settings.embedder)
        return self._embedder

    def _warm_embedder(self) -> Embedder:
        if not self._embedder_warm:
            self.embedder.warm_up()
            self._embedder_warm = True
        return self.embedder

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = create_store(self.settings.store, self.data_dir, self.settings.dsn, self.settings.pg_schema)
            self._store.warm_up()
        return self._store

    def _chunker(self) -> Chunker:
        if self.chunker is None:
            # The chunker needs the model's tokenizer to keep every chunk inside the model's window.
            emb = self._warm_embedder()
            cfg = ChunkerConfig(max_tokens=self.settings.chunk_max_tokens,
                                overlap_tokens=self.settings.chunk_overlap_tokens)
            self.chunker = Chunker(cfg, emb.count_tokens, emb.max_seq_length)
            self.chunker.warm_up()
        return self.chunker

    def pipeline_fingerprint(self, policy: str) -> dict[str, Any]:
        """Everything besides the sources that shapes a product's chunks (goes into chunk version ids)."""
        cfg = ChunkerConfig(max_tokens=self.settings.chunk_max_tokens, overlap_tokens=self.settings.chunk_overlap_tokens)
        return chunk_fingerprint(cfg, policy, self.pii.model_id, self.embedder.model_id)

    # ----------------------------------------------------------------------------------- run
    def run(self, product_ids: Sequence[str] | None = None, *, publish: bool = True, wait: bool = True) -> IndexReport:
        """Index the selected products (default: all), build a release and (by default) publish it. In shared
        mode a product another run is indexing is waited for, or with `wait=False` refused (ConfigError)."""
        t0 = time.perf_counter()
        catalog = Catalog.load(self.settings.mesh_roots)
        selected = self._select(catalog, product_ids)
        with index_run_lock(self.data_dir, (self.versions.chunks_dir, self.data_dir / "faiss"), self.shared,
                            selected, wait):
            previous = self.releases.current()
            lineage = LineageEmitter(self.data_dir / "lineage" / "events.jsonl")
            run_id = lineage.new_run_id()
            lineage.emit(RunState.START, "meshrag.index", run_id,
                         inputs=[DatasetRef("meshrag://products", pid, catalog.products[pid].version)
                                 for pid in selected if pid in catalog.products])
            try:
                reports, entries = [], dict(previous.products) if previous else {}
                kept = {pid: dict(vs) for pid, vs in previous.kept.items()} if previous else {}
                kept_reports: list[ProductReport] = []
                for pid in selected:
                    report, entry = self._index_product(pid, catalog, previous, lineage, run_id)
                    reports.append(report)
                    if entry is not None:
                        entries[pid] = entry
                    if report.gate == "passed":
                        kept[pid] = self._index_kept(catalog.products[pid], previous, kept_reports)
                # Products that no longer exist in the mesh leave the release.
                for pid in list(entries):
                    if pid not in catalog.products and pid not in {r.product_id for r in reports if r.gate == "blocked"}:
                        del entries[pid]
                kept = {pid: vs for pid, vs in kept.items() if pid in entries and vs}
                release, published, before = self._commit(catalog, selected, not product_ids, entries, kept,
                                                           previous, publish)
                lineage.emit(RunState.COMPLETE, "meshrag.index", run_id)
            except BaseException as exc:
                lineage.emit(RunState.FAIL, "meshrag.index", run_id, error=f"{type(exc).__name__}: {exc}")
                raise
        return IndexReport(run_id=run_id, release_id=release.id if release else None,
                           previous_release=before, published=published,
                           store=self.settings.store, elapsed_s=time.perf_counter() - t0, products=reports,
                           kept=kept_reports)

    def _select(self, catalog: Catalog, product_ids: Sequence[str] | None) -> list[str]:
        invalid_ids = {f"{folder.parent.name}.{folder.name}": folder for folder in catalog.invalid}
        known = set(catalog.products) | set(invalid_ids)
        if product_ids:
            unknown = [p for p in product_ids if p not in known]
            if unknown:
                raise ConfigError(f"unknown product(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            return list(dict.fromkeys(product_ids))
        return sorted(known)

    def _commit(self, catalog: Catalog, selected: Sequence[str], whole_mesh: bool, entries: dict[str, ProductEntry],
                kept: dict[str, dict[str, ProductEntry]], previous: Release | None, publish: bool
                ) -> tuple[Release | None, bool, str | None]:
        """Record the run's release and (with `publish`) make it current: (release, published, the release
        current before). Shared mode merges into the release current at that moment."""
        if self.shared is not None:
            done = self.shared.commit(catalog, RunChanges(
                entries, kept, frozenset(selected), whole_mesh, store=self.settings.store,
                model_id=self.embedder.model_id, notes={"libraries": library_versions()}), publish=publish)
            return done.release, done.published, done.previous
        release = self._release(entries, previous, kept) if entries else None
        published = release is not None and publish and (previous is None or previous.id != release.id)
        if published:
            self.releases.publish(release.id)  # type: ignore[union-attr]
        return release, published, previous.id if previous else None

    def _release(self, entries: dict[str, ProductEntry], previous: Release | None,
                 kept: dict[str, dict[str, ProductEntry]] | None = None) -> Release:
        return self.releases.create(entries, store=self.settings.store, model_id=self.embedder.model_id,
                                    parent=previous.id if previous else None,
                                    notes={"libraries": library_versions()}, kept=kept)

    def _index_kept(self, product: KnowledgeProduct, previous: Release | None,
                    reports: list[ProductReport]) -> dict[str, ProductEntry]:
        """Each kept older version of `product` (`history/<version>/`) as its own chunk and embedding
        version, content-addressed like the current one. A kept version that fails a gate keeps its
        previous entry, as a product does."""
        before = previous.kept.get(product.id, {}) if previous else {}
        try:
            versions = kept_versions(product)
        except ContractError as exc:
            reports.append(ProductReport(product_id=f"{product.id}@history", gate="blocked", reason=str(exc)))
            return dict(before)
        out: dict[str, ProductEntry] = {}
        for version in versions:
            t0 = time.perf_counter()
            report = ProductReport(product_id=f"{product.id}@{version.version}")
            try:
                out[version.version] = self._build(version, before.get(version.version), report)
            except ProductBlocked as exc:
                report.gate, report.reason = "blocked", str(exc)
                if version.version in before:
                    out[version.version] = before[version.version]
            report.seconds = round(time.perf_counter() - t0, 3)
            reports.append(report)
        return out

    # ------------------------------------------------------------------------------ per product
    def _index_product(self, pid: str, catalog: Catalog, previous: Release | None,
                       lineage: LineageEmitter, run_id: str) -> tuple[ProductReport, ProductEntry | None]:
        t0 = time.perf_counter()
        report = ProductReport(product_id=pid)
        prev_entry = previous.products.get(pid) if previous else None
        product = catalog.products.get(pid)
        try:
            if product is None:
                folder = next(f for f in catalog.invalid if f"{f.parent.name}.{f.name}" == pid)
                first = catalog.invalid[folder][0]
                raise ProductBlocked(f"contract invalid: {first.file}: {first.field}: {first.message}")
            entry = self._build(product, prev_entry, report)
            lineage.emit(RunState.COMPLETE, f"meshrag.index.{pid}", lineage.new_run_id(), parent=("meshrag.index", run_id),
                         inputs=[DatasetRef("meshrag://products", pid, product.version)],
                         outputs=[DatasetRef("meshrag://chunks", f"{pid}/{entry.chunk_version}", entry.chunk_version,
                                             rows=entry.n_chunks),
                                  DatasetRef("meshrag://embeddings", f"{pid}/{entry.embedding_version}",
                                             entry.embedding_version, rows=entry.n_chunks)])
        except ProductBlocked as exc:
            report.gate, report.reason = "blocked", str(exc)
            lineage.emit(RunState.FAIL, f"meshrag.index.{pid}", lineage.new_run_id(), parent=("meshrag.index", run_id),
                         error=str(exc))
            entry = prev_entry  # the previous version keeps serving
        report.seconds = round(time.perf_counter() - t0, 3)
        return report, entry

    def _build(self, product: KnowledgeProduct, prev: ProductEntry | None, report: ProductReport) -> ProductEntry:
        if "PERSON" in policy_entities(product.pii_policy) and (problem := ner_model_problem()):
            raise ProductBlocked(f"piiPolicy '{product.pii_policy}' covers person names, which cannot be detected "
                                 f"here: {problem}")
        paths, revisions = product_sources(product)
        before = prev.documents if prev else {}
        report.added = sum(1 for d in revisions if d not in before)
        report.changed = sum(1 for d in revisions if d in before and before[d] != revisions[d])
        report.removed = sum(1 for d in before if d not in revisions)
        report.unchanged = len(revisions) - report.added - report.changed
        report.documents = len(revisions)

        fingerprint = self.pipeline_fingerprint(product.pii_policy)
        cv = chunk_version_id(product.id, revisions, fingerprint)
        embedded: EmbeddedVectors | None = None
        if self.versions.has_chunk_version(cv):
            chunks = self.versions.read_chunks(cv)
            manifest = self.versions.chunk_manifest(cv)
            report.pii_findings = dict(manifest.get("pii", {}).get("by_type", {}))
        else:
            chunks, manifest, embedded = self._chunk_and_embed(product, paths, revisions, prev, fingerprint, report)
            self.versions.write_chunk_version(cv, chunks, manifest,
                                              extra_writer=lambda d: write_keyword_index(chunks, d))
        report.chunk_version = cv
        report.chunks = len(chunks)
        report.tokens = sum(c.n_tokens for c in chunks)
        report.truncated = int(manifest.get("truncated", 0))
        report.injection_flags = sum(1 for c in chunks if PROMPT_INJECTION_FLAG in c.flags)

        ev = embedding_version_id(cv, self.embedder.model_id, self.embedder.dim, self.embedder.normalize)
        if self.versions.has_embedding_version(ev) and ev in self.store.collections():
            report.reused = len(chunks)
        else:
            self._embed(product, ev, cv, chunks, report, embedded)
        report.embedding_version = ev
        return ProductEntry(product_id=product.id, product_version=product.version, domain=product.domain,
                            classification=product.classification, chunk_version=cv, embedding_version=ev,
                            documents=revisions, n_chunks=len(chunks),
                            since=product.version_since.isoformat() if product.version_since else None)

    def _chunk_and_embed(self, product: KnowledgeProduct, paths: dict[str, Path | str], revisions: dict[str, str],
                         prev: ProductEntry | None, fingerprint: dict[str, Any], report: ProductReport
                         ) -> tuple[list[Chunk], dict[str, Any], EmbeddedVectors]:
        """Chunk a product in a worker thread while this thread embeds the chunks it hands over.

        Loading, PII scanning and chunking are Python; the forward pass runs in torch's own threads
        without the GIL, so the two overlap and the pass, the bulk of a cold run, starts early. Chunks
        are embedded in windows of EMBED_WINDOW, longest first within each. If chunking fails (PII
        under `reject`), the error is raised here and nothing is stored: vectors already computed only
        sit in the embedding cache, keyed by the hash of text that passed the PII step.
        """
        handoff: queue.Queue[list[Chunk] | None] = queue.Queue()
        stop = threading.Event()

        def hand_over(new: list[Chunk]) -> None:
            if stop.is_set():
                raise _Stopped()
            handoff.put(new)

        def produce() -> tuple[list[Chunk], dict[str, Any]]:
            try:
                return chunk_product(product, paths, revisions, prev, fingerprint, report, versions=self.versions,
                                     pii=self.pii, chunker=self._chunker, progress=self.progress,
                                     hand_over=hand_over)
            finally:
                handoff.put(None)

        key = f"embed:{product.id}"
        self.progress.begin(key, f"{product.id}: embed", 0)
        arrived: list[Chunk] = []
        parts: list[EmbeddedVectors] = []
        window: list[Chunk] = []
        with ThreadPoolExecutor(1, thread_name_prefix="meshrag-chunk") as pool:
            chunking = pool.submit(produce)
            try:
                while (new := handoff.get()) is not None:
                    arrived.extend(new)
                    window.extend(new)
                    self.progress.expect(key, len(arrived))
                    if len(window) >= EMBED_WINDOW:
                        parts.append(self._embed_batches(window, key))
                        window = []
                chunks, manifest = chunking.result()  # raises what chunking raised
                if window:
                    parts.append(self._embed_batches(window, key))
            except BaseException:
                stop.set()
                raise
            finally:
                self.progress.end(key)
        if [c.chunk_id for c in arrived] != [c.chunk_id for c in chunks]:
            raise RuntimeError(f"{product.id}: chunks handed over differ from the chunks made (a pipeline bug)")
        return chunks, manifest, EmbeddedVectors.concat(parts, self.embedder.dim)

    def _embed_batches(self, chunks: Sequence[Chunk], key: str) -> EmbeddedVectors:
        """Vectors for `chunks` (their order), from the embedding cache where it has them."""
        t0 = time.perf_counter()
        self.cache.warm_up()
        vectors = np.zeros((len(chunks), self.embedder.dim), dtype=np.float32)
        embedded = reused = 0
        # Longest first, so each batch holds chunks of about one length and little padding is computed
        # (a batch is padded to its longest member).
        order = sorted(range(len(chunks)), key=lambda i: (-chunks[i].n_model_tokens, i))
        for i in range(0, len(order), EMBED_BATCH):
            rows = order[i:i + EMBED_BATCH]
            batch = [chunks[r] for r in rows]
            if not self._embedder_warm:  # load the model only once something is not cached
                known = self.cache.get_many(self.embedder.model_id, [c.text_hash for c in batch])
                if len(known) < len({c.text_hash for c in batch}):
                    self._warm_embedder()
            got, e, r = embed_with_cache(self.embedder, self.cache, [c.embedding_text for c in batch])
            vectors[rows] = got
            embedded += e
            reused += r
            self.progress.advance(key, len(batch))
        return EmbeddedVectors(vectors, embedded, reused, time.perf_counter() - t0)

    def _embed(self, product: KnowledgeProduct, ev: str, cv: str, chunks: Sequence[Chunk], report: ProductReport,
               done: EmbeddedVectors | None = None) -> None:
        """Store the product's vectors as collection `ev` (embedding them now unless `done` has them)."""
        if done is None:
            key = f"embed:{product.id}"
            self.progress.begin(key, f"{product.id}: embed", len(chunks))
            done = self._embed_batches(chunks, key)
            self.progress.end(key)
        if len(done.vectors) != len(chunks):
            raise RuntimeError(f"{product.id}: {len(done.vectors)} vectors for {len(chunks)} chunks (a pipeline bug)")
        t0 = time.perf_counter()
        store = self.store
        if ev in store.collections():
            store.drop_collection(ev)  # a collection without a manifest is a leftover of a killed run
        store.create_collection(ev, self.embedder.dim)
        # One bulk write: FAISS rewrites a collection per add, pgvector COPYs once.
        store.add(ev, vector_records(product, chunks, done.vectors))
        report.embedded, report.reused = done.embedded, done.reused
        self.versions.write_embedding_manifest(ev, embedding_manifest(
            product, cv, self.embedder, self.settings.store, done, time.perf_counter() - t0))


class _Stopped(Exception):
    """Raised in the chunking thread once the embedding side has failed: no point chunking on."""
