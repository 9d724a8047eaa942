"""Hybrid search over a release: dense (vector store) + keyword (BM25), fused, optionally reranked.

Access is decided before anything is fetched: the dense search gets a SearchFilter naming only the
readable products' collections, and the keyword side queries only the readable products' own BM25
indexes (one per chunk version, never one spanning products), so a restricted product's text, scores
or term statistics cannot reach a principal without its role.

The models, store, catalog, releases and loaded chunk versions are a ServingContext's
(retrieval/serving.py); the searcher itself holds no state, so any number may share one context.

Ranking: the dense list (query embedding vs chunk embeddings, breadcrumb included) and the keyword list
(BM25 over breadcrumb + text, question words removed from the query), `candidates` each, are fused by
a weighted sum of their standardised scores (`fusion="convex"`, the default) or by
RRF(chunk) = Σ w_list / (rrf_k + rank_list) (`fusion="rrf"`); a document's later chunks are then decayed so the top
spreads over documents; an optional CrossEncoder (retrieval/rerank.py) reorders the best
`rerank_candidates`. The defaults and what each step measured are in retrieval/settings.py
(`python -m eval_sets.retrieval_check`).
"""

from __future__ import annotations

import re
import time
from typing import Any

from indexing.keyword import KeywordIndex
from indexing.releases import ProductEntry, Release
from indexing.types import Chunk, SearchFilter
from knowledge.catalog_search import QUESTION_WORDS
from knowledge.errors import ConfigError
from retrieval.access import readable_entries
from retrieval.fusion import convex_fusion, reciprocal_rank_fusion
from retrieval.serving import LoadedChunkVersion, ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import RetrievedChunk, SearchRequest, SearchResult
from retrieval.versions import pinned

_WORD = re.compile(r"\w+")


class MeshSearcher:
    """Hybrid retrieval over a ServingContext. Construct cheaply, `warm_up()` once, then `search()`."""

    NAME = "meshrag.hybrid-search"
    VERSION = "1"

    def __init__(self, context: ServingContext) -> None:
        self.context = context

    @property
    def settings(self) -> RetrievalSettings:
        return self.context.settings

    def warm_up(self) -> None:
        """Warm the context (models, store, catalog, the current release's chunks); the searcher has none."""
        self.context.warm_up()

    # -------------------------------------------------------------------------------------- search
    def search(self, req: SearchRequest) -> SearchResult:
        """The best `req.k` chunks the principal may read, best first, with scores and parameters."""
        self.context.require_warm()
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        query = req.query.strip()
        if not query:
            raise ConfigError("the query is empty; ask something")
        if isinstance(req.k, bool) or not isinstance(req.k, int) or req.k < 1:
            raise ConfigError(f"k must be a positive integer, got {req.k!r}")
        rerank = self._wants_rerank(req)

        t = time.perf_counter()
        release = self.context.release(req.release)
        self.context.check_compatible(release)
        catalog = self.context.catalog_for(release)
        versioned = req.as_of is not None or pinned(req.products)
        entries = readable_entries(release, catalog, req.principal, products=req.products,
                                   domains=req.domains, classifications=req.classifications,
                                   versions=self.context.product_versions(release) if versioned else None,
                                   as_of=req.as_of)
        loaded = {pid: self.context.chunk_version(e.chunk_version) for pid, e in entries.items()}
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
            reranker = self.context.reranker
            assert reranker is not None
            scores = reranker.score(query, [chunk_of[cid][1].embedding_text for cid, _ in head])
            rerank_scores = dict(zip((cid for cid, _ in head), scores))
            fused = sorted(((cid, rerank_scores[cid]) for cid, _ in head), key=lambda kv: (-kv[1], kv[0]))
            timings["rerank"] = _ms(t)

        dense_at = {cid: (rank, score) for rank, (cid, score, _) in enumerate(dense, start=1)}
        keyword_at = {cid: (rank, score) for rank, (cid, score, _) in enumerate(keyword, start=1)}
        hits = []
        for rank, (cid, score) in enumerate(fused[:req.k], start=1):
            pid, chunk = chunk_of[cid]
            entry = entries[pid]  # pid: the product id, or `<id>@<version>` for another version
            product = catalog.products[entry.product_id]
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
        vector = self.context.embedder.embed_query(query)
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        # The access filter is applied inside the store: only readable collections and products.
        flt = SearchFilter(collections=tuple(e.embedding_version for e in entries.values()),
                           products=tuple(dict.fromkeys(e.product_id for e in entries.values())), documents=documents)
        hits = self.context.store.search(vector, n, flt)
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
        reranker = self.context.reranker
        if req.rerank and reranker is None:
            raise ConfigError("reranking was requested but no reranker is configured; "
                              "set MESHRAG_RERANKER_MODEL")
        return reranker is not None and req.rerank is not False

    def _params(self, req: SearchRequest, release: Release, entries: dict[str, ProductEntry], n: int,
                rerank: bool) -> dict[str, Any]:
        """Everything needed to replay the search against the same release."""
        reranker = self.context.reranker

        def listed(values: tuple[str, ...] | None) -> list[str] | None:
            return None if values is None else sorted(values)

        versions = {}
        if req.as_of is not None or pinned(req.products):
            # What a replay needs to serve the same versions: the date and the version each product had.
            versions = {"as_of": req.as_of.isoformat() if req.as_of else None,
                        "versions_searched": {k: e.product_version for k, e in entries.items()}}
        return versions | {
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
            "reranker": reranker.model_id if rerank and reranker else None,
            "rerank_candidates": self.settings.rerank_candidates if rerank else None,
            "embedder": self.context.model_id,
            "keyword": {"name": KeywordIndex.NAME, "version": KeywordIndex.VERSION},
            "store": self.context.store.name,
        }


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
