"""Hybrid search over a release: dense (vector store) + keyword (BM25), fused, optionally reranked.

Access is decided before anything is fetched: the dense search gets a SearchFilter naming only the
readable products' collections, and the keyword side queries only the readable products' own BM25
indexes (one per chunk version, never one spanning products), so a restricted product's text, scores
or term statistics cannot reach a principal without its role.

Everything heavy is loaded once per process: the embedder, the store, the catalog, and per chunk
version its chunks and keyword index (immutable, cached by version id). The `current` alias and the
catalog contracts are re-checked per request by file stat (microseconds), so a publish, a rollback or a
changed contract takes effect without a restart.

Ranking: the dense list (query embedding vs chunk embeddings, breadcrumb included) and the keyword list
(BM25 over breadcrumb + text, question words removed from the query), `candidates` each, are fused by
a weighted sum of their standardised scores (`fusion="convex"`, the default) or by
RRF(chunk) = Σ w_list / (rrf_k + rank_list) (`fusion="rrf"`); a document's later chunks are then decayed so the top
spreads over documents; an optional CrossEncoder reorders the best `rerank_candidates`. The defaults
and what each step measured are in retrieval/settings.py (`python -m eval_sets.retrieval_check`).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexing.embedder import create_embedder
from indexing.keyword import KeywordIndex
from indexing.releases import CURRENT, ProductEntry, Release, ReleaseRegistry
from indexing.stores.factory import create_store
from indexing.types import Chunk, Embedder, SearchFilter, VectorStore
from indexing.versions import VersionStore
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError
from retrieval.access import readable_entries
from retrieval.fusion import convex_fusion, reciprocal_rank_fusion
from retrieval.settings import RetrievalSettings
from retrieval.types import RetrievedChunk, SearchRequest, SearchResult

_WORD = re.compile(r"\w+")
MAX_CACHED_VERSIONS = 512  # chunk versions kept in memory (a release holds one per product)

# Closed-class words of questions (interrogatives, auxiliaries, pronouns, determiners) that Lucene's
# 33-word stoplist keeps. Left in a BM25 query they match FAQ and runbook chunks phrased as questions
# ("How do I…", "What does…") rather than the answer; removed from the keyword query only.
QUESTION_WORDS = frozenset([
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
    "does", "do", "did", "is", "are", "was", "were", "am", "been", "being", "can", "could", "should", "would",
    "will", "shall", "may", "might", "must",
    "i", "me", "my", "we", "us", "our", "you", "your", "it", "its", "this", "that", "these", "those", "there",
    "their", "them", "they", "he", "she", "his", "her",
    "any", "much", "many",
])


@dataclass(frozen=True)
class LoadedChunkVersion:
    """One chunk product version in memory: its chunks by id and its own BM25 index."""

    id: str
    chunks: dict[str, Chunk]
    keyword: KeywordIndex


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder scoring (query, chunk) pairs; loaded in warm_up()."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._encoder: Any = None

    @property
    def model_id(self) -> str:
        return self.model

    def warm_up(self) -> None:
        if self._encoder is not None:
            return
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import CrossEncoder

        try:
            self._encoder = CrossEncoder(self.model, device=self.device)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load reranker {self.model!r} ({exc}); set MESHRAG_RERANKER_MODEL to a "
                              "local sentence-transformers CrossEncoder folder, or unset it") from exc

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if self._encoder is None:
            raise RuntimeError("CrossEncoderReranker is not warmed up: call warm_up() first")
        if not texts:
            return []
        scores = self._encoder.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                       convert_to_numpy=True, show_progress_bar=False)
        return [float(s) for s in scores.reshape(len(texts), -1)[:, -1]]


class MeshSearcher:
    """Hybrid retrieval for one data directory. Construct cheaply, `warm_up()` once, then `search()`."""

    NAME = "meshrag.hybrid-search"
    VERSION = "1"

    def __init__(self, settings: RetrievalSettings, *, store: VectorStore | None = None,
                 embedder: Embedder | None = None, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.resolved_data_dir()
        self.releases = ReleaseRegistry(self.data_dir)
        self.versions = VersionStore(self.data_dir)
        self._store = store
        self._embedder = embedder
        self._catalog = catalog
        self._catalog_pinned = catalog is not None  # a catalog passed in is the caller's to refresh
        self._catalog_stamp: tuple[Any, ...] | None = None
        self._catalog_seen: set[str] = set()  # releases whose products were looked up in the catalog
        self._reranker: CrossEncoderReranker | None = None
        self._alias_stamp: tuple[int, int, int] | None = None
        self._alias_id: str | None = None
        self._releases: dict[str, Release] = {}
        self._loaded: OrderedDict[str, LoadedChunkVersion] = OrderedDict()
        self._lock = threading.RLock()
        self._model_id = ""
        self._warm = False

    # ----------------------------------------------------------------------------------- lifecycle
    def warm_up(self) -> None:
        """Load the embedder, the store, the catalog (and the reranker when configured), then the
        chunks and keyword indexes of the current release, if there is one."""
        with self._lock:
            if self._warm:
                return
            if self._embedder is None:
                minilm = self.settings.embedder == "minilm"
                options = {"batch_size": self.settings.embed_batch_size, "query_runtime": self.settings.query_runtime,
                           "cache_dir": self.settings.resolved_cache_dir(),
                           "onnx_threads": self.settings.query_threads} if minilm else {}
                self._embedder = create_embedder(self.settings.embedder, **options)
            self._embedder.warm_up()
            self._model_id = self._embedder.model_id  # MiniLM hashes its weights file the first time
            if self.settings.torch_threads is not None and "torch" in sys.modules:
                # Process-wide; see RetrievalSettings.torch_threads for why one thread serves faster.
                sys.modules["torch"].set_num_threads(self.settings.torch_threads)
            if self.settings.torch_threads is not None and "faiss" in sys.modules:
                # FAISS's OpenMP pool the same way: a single query waiting for two busy cores took 48 ms
                # instead of 2.2 ms for a 20k exact search (benchmarks/scale.py).
                sys.modules["faiss"].omp_set_num_threads(self.settings.torch_threads)
            if self._store is None:
                self._store = create_store(self.settings.store, self.data_dir, self.settings.dsn,
                                           self.settings.pg_schema)
            self._store.warm_up()
            if self._catalog is None:
                self._catalog = Catalog.load(self.settings.mesh_roots)
            self._catalog_stamp = self._stamp_of(self._catalog)
            if self.settings.reranker_model:
                self._reranker = CrossEncoderReranker(self.settings.reranker_model)
                self._reranker.warm_up()
            current = self._resolve_release(CURRENT) if self.releases.current_id() else None
            if current is not None:
                for entry in current.products.values():
                    self._chunk_version(entry.chunk_version)
            self._warm = True

    @property
    def embedder(self) -> Embedder:
        self._require_warm()
        assert self._embedder is not None
        return self._embedder

    @property
    def store(self) -> VectorStore:
        self._require_warm()
        assert self._store is not None
        return self._store

    @property
    def catalog(self) -> Catalog:
        """The catalog as of now: reloaded when a known contract or descriptor file changed."""
        self._require_warm()
        if not self._catalog_pinned and self._stamp_of(self._catalog) != self._catalog_stamp:
            self._reload_catalog()
        assert self._catalog is not None
        return self._catalog

    def _catalog_for(self, release: Release) -> Catalog:
        """The current catalog, reloaded once per release that serves a product it does not know yet
        (a product added to the mesh since this process loaded the catalog)."""
        catalog = self.catalog
        if (not self._catalog_pinned and release.id not in self._catalog_seen
                and any(pid not in catalog.products for pid in release.products)):
            catalog = self._reload_catalog()
        self._catalog_seen.add(release.id)
        return catalog

    def _reload_catalog(self) -> Catalog:
        with self._lock:
            self._catalog = Catalog.load(self.settings.mesh_roots)
            self._catalog_stamp = self._stamp_of(self._catalog)
            return self._catalog

    def _require_warm(self) -> None:
        if not self._warm:
            raise RuntimeError("MeshSearcher is not warmed up: call warm_up() first")

    # -------------------------------------------------------------------------------------- search
    def search(self, req: SearchRequest) -> SearchResult:
        """The best `req.k` chunks the principal may read, best first, with scores and parameters."""
        self._require_warm()
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        query = req.query.strip()
        if not query:
            raise ConfigError("the query is empty; ask something")
        if isinstance(req.k, bool) or not isinstance(req.k, int) or req.k < 1:
            raise ConfigError(f"k must be a positive integer, got {req.k!r}")
        rerank = self._wants_rerank(req)

        t = time.perf_counter()
        release = self._resolve_release(req.release)
        self._check_compatible(release)
        catalog = self._catalog_for(release)
        entries = readable_entries(release, catalog, req.principal, products=req.products,
                                   domains=req.domains, classifications=req.classifications)
        loaded = {pid: self._chunk_version(e.chunk_version) for pid, e in entries.items()}
        timings["resolve"] = _ms(t)

        n = max(self.settings.candidates, req.k)
        params = self._params(req, release, entries, n, rerank)
        if not entries:
            timings["total"] = _ms(t_start)
            return SearchResult(release_id=release.id, hits=(), params=params, timings_ms=timings)

        dense = self._dense(query, entries, n, req.documents, timings)
        keyword = self._keyword(query, loaded, n, req.documents, timings)

        t = time.perf_counter()
        if self.settings.fusion == "convex":
            fused = convex_fusion({"dense": [(cid, s) for cid, s, _ in dense],
                                   "keyword": [(cid, s) for cid, s, _ in keyword]}, weights=self._weights())
        else:
            rankings = {"dense": [cid for cid, _, _ in dense], "keyword": [cid for cid, _, _ in keyword]}
            fused = reciprocal_rank_fusion(rankings, k=self.settings.rrf_k, weights=self._weights())
        owner = {cid: pid for cid, _, pid in dense} | {cid: pid for cid, _, pid in keyword}
        chunk_of = {cid: (owner[cid], loaded[owner[cid]].chunks[cid]) for cid, _ in fused}
        fused = self._diversify(fused, chunk_of)
        timings["fuse"] = _ms(t)
        rerank_scores: dict[str, float] = {}
        if rerank:
            t = time.perf_counter()
            head = fused[:max(self.settings.rerank_candidates, req.k)]
            assert self._reranker is not None
            scores = self._reranker.score(query, [chunk_of[cid][1].embedding_text for cid, _ in head])
            rerank_scores = dict(zip((cid for cid, _ in head), scores))
            fused = sorted(((cid, rerank_scores[cid]) for cid, _ in head), key=lambda kv: (-kv[1], kv[0]))
            timings["rerank"] = _ms(t)

        dense_at = {cid: (rank, score) for rank, (cid, score, _) in enumerate(dense, start=1)}
        keyword_at = {cid: (rank, score) for rank, (cid, score, _) in enumerate(keyword, start=1)}
        hits = []
        for rank, (cid, score) in enumerate(fused[:req.k], start=1):
            pid, chunk = chunk_of[cid]
            entry, product = entries[pid], catalog.products[pid]
            d_rank, d_score = dense_at.get(cid, (None, None))
            k_rank, k_score = keyword_at.get(cid, (None, None))
            hits.append(RetrievedChunk(
                chunk=chunk, release_id=release.id, product_version=entry.product_version,
                chunk_version=entry.chunk_version, embedding_version=entry.embedding_version,
                domain=product.domain, classification=product.classification, score=score, rank=rank,
                dense_score=d_score, dense_rank=d_rank, keyword_score=k_score, keyword_rank=k_rank,
                rerank_score=rerank_scores.get(cid)))
        timings["total"] = _ms(t_start)
        return SearchResult(release_id=release.id, hits=tuple(hits), params=params, timings_ms=timings)

    def _dense(self, query: str, entries: dict[str, ProductEntry], n: int,
               documents: tuple[str, ...] | None, timings: dict[str, float]) -> list[tuple[str, float, str]]:
        """(chunk id, cosine, product id), best first."""
        if self.settings.dense_weight == 0:
            return []
        t = time.perf_counter()
        vector = self.embedder.embed_query(query)
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        # The access filter is applied inside the store: only readable collections and products.
        flt = SearchFilter(collections=tuple(e.embedding_version for e in entries.values()),
                           products=tuple(entries), documents=documents)
        hits = self.store.search(vector, n, flt)
        timings["dense"] = _ms(t)
        product_of = {e.embedding_version: pid for pid, e in entries.items()}
        return [(h.id, h.score, product_of[h.collection]) for h in hits]

    def _keyword(self, query: str, loaded: dict[str, LoadedChunkVersion], n: int,
                 documents: tuple[str, ...] | None, timings: dict[str, float]
                 ) -> list[tuple[str, float, str]]:
        """(chunk id, BM25 score, product id), best first, merged over the products' own indexes."""
        if self.settings.keyword_weight == 0:
            return []
        t = time.perf_counter()
        query = self._keyword_query(query)
        found: list[tuple[str, float, str]] = []
        for pid, lv in loaded.items():
            # Each product is scored by its own index only: term statistics never cross products.
            if documents is None:
                found += [(cid, s, pid) for cid, s in lv.keyword.search(query, n)]
            else:
                wanted = set(documents)
                found += [(cid, s, pid) for cid, s in lv.keyword.search(query, len(lv.keyword))
                          if lv.chunks[cid].document in wanted][:n]
        timings["keyword"] = _ms(t)
        return sorted(found, key=lambda hit: (-hit[1], hit[0]))[:n]

    def _keyword_query(self, query: str) -> str:
        """The query BM25 sees: without question words (unless nothing else is left)."""
        if not self.settings.strip_question_words:
            return query
        kept = [w for w in _WORD.findall(query) if w.lower() not in QUESTION_WORDS]
        return " ".join(kept) if kept else query

    def _diversify(self, fused: list[tuple[str, float]],
                   chunk_of: dict[str, tuple[str, Chunk]]) -> list[tuple[str, float]]:
        """Multiply the score of a document's n-th chunk (n = 0, 1, …, in fused order) by decay**n, so
        the first chunks of other documents can move up instead of a document's near-duplicate
        neighbours (the catalog cards of different products are different documents)."""
        decay = self.settings.same_document_decay
        if decay == 1.0:
            return fused
        seen: dict[tuple[str, str], int] = {}
        out = []
        for cid, score in fused:
            pid, chunk = chunk_of[cid]
            key = (pid, chunk.document)
            out.append((cid, score * decay ** seen.get(key, 0)))
            seen[key] = seen.get(key, 0) + 1
        return sorted(out, key=lambda kv: (-kv[1], kv[0]))

    # ------------------------------------------------------------------------------------- helpers
    def _weights(self) -> dict[str, float]:
        return {"dense": self.settings.dense_weight, "keyword": self.settings.keyword_weight}

    def _wants_rerank(self, req: SearchRequest) -> bool:
        if req.rerank and self._reranker is None:
            raise ConfigError("reranking was requested but no reranker is configured; "
                              "set MESHRAG_RERANKER_MODEL")
        return self._reranker is not None and req.rerank is not False

    def _params(self, req: SearchRequest, release: Release, entries: dict[str, ProductEntry], n: int,
                rerank: bool) -> dict[str, Any]:
        """Everything needed to replay the search against the same release."""
        def listed(values: tuple[str, ...] | None) -> list[str] | None:
            return None if values is None else sorted(values)

        return {
            "searcher": f"{self.NAME}@{self.VERSION}",
            "release": release.id,
            "requested_release": req.release,
            "k": req.k,
            "candidates": n,
            "fusion": self.settings.fusion,
            "rrf_k": self.settings.rrf_k,
            "weights": self._weights(),
            "same_document_decay": self.settings.same_document_decay,
            "strip_question_words": self.settings.strip_question_words,
            "filters": {"products": listed(req.products), "domains": listed(req.domains),
                        "classifications": listed(req.classifications), "documents": listed(req.documents)},
            "products_searched": sorted(entries),
            "reranker": self._reranker.model_id if rerank and self._reranker else None,
            "rerank_candidates": self.settings.rerank_candidates if rerank else None,
            "embedder": self._model_id,
            "keyword": {"name": KeywordIndex.NAME, "version": KeywordIndex.VERSION},
            "store": self.store.name,
        }

    def _check_compatible(self, release: Release) -> None:
        if release.model_id != self._model_id:
            raise ConfigError(f"release {release.id} was embedded with {release.model_id} but this searcher "
                              f"embeds queries with {self._model_id}; set MESHRAG_EMBEDDER to match")
        if release.store != self.store.name:
            raise ConfigError(f"release {release.id} lives in the {release.store} store but this searcher "
                              f"reads {self.store.name}; set MESHRAG_STORE={release.store}")

    def release(self, ref: str = CURRENT) -> Release:
        """A release by id or alias (no access check: for the service's own housekeeping)."""
        self._require_warm()
        return self._resolve_release(ref)

    def chunks_of(self, chunk_version: str) -> list[Chunk]:
        """All chunks of one chunk product version (loaded once, shared with search; no access check)."""
        self._require_warm()
        return list(self._chunk_version(chunk_version).chunks.values())

    def _resolve_release(self, ref: str) -> Release:
        """A release by id (cached: releases are immutable) or the `current` alias (re-checked by stat)."""
        rid = self._current_id() if ref == CURRENT else ref
        if rid is None:
            return self.releases.get(CURRENT)  # raises ReleaseNotFound with the "run meshrag index" hint
        release = self._releases.get(rid)
        if release is None:
            release = self.releases.get(rid)
            with self._lock:
                self._releases[rid] = release
        return release

    def _current_id(self) -> str | None:
        path = self.releases.dir / f"{CURRENT}.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        # The alias is replaced by rename, so a publish always changes the inode.
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._alias_stamp:
            with self._lock:
                self._alias_id = self.releases.current_id()
                self._alias_stamp = stamp
        return self._alias_id

    def _chunk_version(self, version_id: str) -> LoadedChunkVersion:
        loaded = self._loaded.get(version_id)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(version_id)
            if loaded is None:
                chunks = {c.chunk_id: c for c in self.versions.read_chunks(version_id)}
                keyword = KeywordIndex.load(self.versions.chunk_dir(version_id) / "keyword")
                loaded = LoadedChunkVersion(version_id, chunks, keyword)
                self._loaded[version_id] = loaded
                while len(self._loaded) > MAX_CACHED_VERSIONS:
                    self._loaded.popitem(last=False)
            return loaded

    @staticmethod
    def _stamp_of(catalog: Catalog | None) -> tuple[Any, ...]:
        """Modification stamps of every contract and descriptor file the catalog was loaded from."""
        if catalog is None:
            return ()
        stamps = []
        for product in catalog:
            for path in (product.descriptor_path, product.contract_path):
                stamps.append((str(path), _mtime(path)))
        return tuple(stamps)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def hit_as_dict(hit: RetrievedChunk) -> dict[str, Any]:
    """A hit as plain JSON-ready data: provenance fields, text and scores."""
    c = hit.chunk
    return {"rank": hit.rank, "score": hit.score, "chunk_id": c.chunk_id, "product_id": c.product_id,
            "product_version": hit.product_version, "release_id": hit.release_id,
            "chunk_version": hit.chunk_version, "embedding_version": hit.embedding_version,
            "domain": hit.domain, "classification": hit.classification, "document": c.document,
            "doc_revision": c.doc_revision, "start": c.start, "end": c.end,
            "heading_path": list(c.heading_path), "flags": list(c.flags), "text": c.text,
            "scores": hit.scores()}


def result_as_dict(result: SearchResult) -> dict[str, Any]:
    return {"release_id": result.release_id, "hits": [hit_as_dict(h) for h in result.hits],
            "params": result.params, "timings_ms": result.timings_ms}
