"""The ask flow in one place: resolve readable products → hybrid retrieval → answer → verify citations
→ write the provenance record → return. The record is durable before `ask` returns."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from indexing.embedding_cache import EmbeddingCache
from indexing.releases import CURRENT
from indexing.stores.embedded_pg import start_postgres
from knowledge.catalog import freshness, newest_source_update
from knowledge.errors import ConfigError
from knowledge.model import KnowledgeProduct, Principal
from retrieval.answer.base import Answerer
from retrieval.answer.extractive import ExtractiveAnswerer
from retrieval.answer.model import load_answer_model
from retrieval.answer.support import SupportScorer
from retrieval.provenance import (
    ProvenanceLog,
    ProvenanceRecord,
    create_provenance_log,
    not_found,
    record_from,
)
from retrieval.searcher import MeshSearcher
from retrieval.settings import RetrievalSettings
from retrieval.types import Answer, SearchRequest, SearchResult

# How long an answer's freshness facts reuse a product's newest source time before scanning again.
SOURCE_SCAN_TTL_S = 60.0

@dataclass(frozen=True)
class AskResult:
    request_id: str
    answer: Answer
    search: SearchResult
    record: ProvenanceRecord
    products: tuple[dict[str, Any], ...] = ()  # catalog facts (owner, freshness) of the cited products
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplayReport:
    request_id: str
    release_id: str
    same: bool
    original: tuple[str, ...]
    replayed: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "release_id": self.release_id, "same": self.same,
                "original": list(self.original), "replayed": list(self.replayed),
                "missing": [c for c in self.original if c not in self.replayed],
                "extra": [c for c in self.replayed if c not in self.original]}


def new_request_id() -> str:
    return uuid.uuid4().hex


class MeshService:
    """Search, ask and replay over one data directory. Construct cheaply, `warm_up()` once."""

    def __init__(self, settings: RetrievalSettings, *, searcher: MeshSearcher | None = None,
                 answerer: Answerer | None = None, provenance: ProvenanceLog | None = None) -> None:
        self.settings = settings
        self.searcher = searcher or MeshSearcher(settings)
        self._answerer = answerer
        self._provenance = provenance
        self._source_scans: dict[str, tuple[float, datetime | None]] = {}
        self._scan_lock = threading.Lock()

    def warm_up(self) -> None:
        self.searcher.warm_up()
        if self._answerer is None:
            self._answerer = self._create_answerer()
        self._answerer.warm_up()
        if self._provenance is None:
            self._provenance = self._create_provenance()
        self._provenance.warm_up()

    def _create_answerer(self) -> Answerer:
        # Passage vectors persist beside the indexer's embedding cache (same keys: model id + text hash).
        store = EmbeddingCache(self.settings.resolved_cache_dir() / "embeddings.sqlite")
        scorer = SupportScorer(self.searcher.embedder, store=store)
        model = load_answer_model(self.settings.answer_model)
        if self.settings.answerer == "extractive":
            return ExtractiveAnswerer(scorer, model)
        from retrieval.answer.llm import LLMAnswerer, create_chat_model

        chat_model = create_chat_model(self.settings)
        if chat_model is None:
            raise ConfigError("answerer=llm needs MESHRAG_LLM_MODEL (and MESHRAG_LLM_BASE_URL / MESHRAG_LLM_API_KEY "
                              "for an OpenAI-compatible endpoint); or use MESHRAG_ANSWERER=extractive")
        return LLMAnswerer(chat_model, scorer, model)

    def _create_provenance(self) -> ProvenanceLog:
        kind = self.settings.provenance_backend or ("postgres" if self.settings.store == "pgvector" else "sqlite")
        dsn = self.settings.dsn
        if kind == "postgres" and dsn is None:
            if self.settings.store != "pgvector":
                raise ConfigError("provenance_backend=postgres needs MESHRAG_DSN (or store=pgvector with the embedded server)")
            dsn = start_postgres(self.settings.resolved_data_dir() / "postgres")
        return create_provenance_log(kind, self.settings.resolved_data_dir(), dsn, self.settings.pg_schema)

    @property
    def answerer(self) -> Answerer:
        if self._answerer is None:
            raise RuntimeError("MeshService is not warmed up: call warm_up() first")
        return self._answerer

    @property
    def provenance(self) -> ProvenanceLog:
        if self._provenance is None:
            raise RuntimeError("MeshService is not warmed up: call warm_up() first")
        return self._provenance

    def prepare_answer_vectors(self, release: str = CURRENT, *, batch: int = 256,
                               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Embed ahead every passage the answerer may compare a question with, for all chunks of
        `release`, into the persistent store and (when they fit the scorer's LRU) memory: answering then
        embeds only the question. Idempotent and
        incremental (a second call, or a new release sharing chunks, embeds only what is new).
        `progress(done, total)` is called after each batch. Returns counts and seconds."""
        t0 = time.perf_counter()
        answerer, scorer = self.answerer, getattr(self.answerer, "scorer", None)
        if not isinstance(scorer, SupportScorer):
            return {"release_id": None, "passages": 0, "embedded": 0, "seconds": 0.0}
        resolved = self.searcher.release(release)
        texts: list[str] = []
        for entry in resolved.products.values():
            for chunk in self.searcher.chunks_of(entry.chunk_version):
                texts.extend(answerer.passages(chunk))
        distinct = list(dict.fromkeys(texts))
        todo = scorer.missing(distinct)
        for first in range(0, len(todo), batch):
            scorer.embed(todo[first:first + batch])
            if progress is not None:
                progress(min(first + batch, len(todo)), len(todo))
        # The rest into memory too (the sample mesh's 6,921 passages: 10.6 MB), so answers read no
        # SQLite: under 8 concurrent first-time questions those reads were 11 % of the process's time.
        in_memory = len(distinct) <= scorer.cache_size
        if in_memory:
            for first in range(0, len(distinct), 1024):
                scorer.embed(distinct[first:first + 1024])
        return {"release_id": resolved.id, "passages": len(distinct), "embedded": len(todo),
                "in_memory": in_memory, "seconds": round(time.perf_counter() - t0, 3)}

    # ------------------------------------------------------------------------------------------ flows
    def search(self, req: SearchRequest) -> SearchResult:
        return self.searcher.search(req)

    def ask(self, req: SearchRequest, *, request_id: str | None = None) -> AskResult:
        """Answer from what the principal may read; the provenance record is written before returning."""
        t0 = time.perf_counter()
        request_id = request_id or new_request_id()
        result = self.searcher.search(req)
        t1 = time.perf_counter()
        answer = self.answerer.answer(req.query, result.hits)
        t2 = time.perf_counter()
        timings = {"search": round((t1 - t0) * 1000, 3), "answer": round((t2 - t1) * 1000, 3)}
        record = self.provenance.append(record_from(request_id, req.principal, req.query, result, answer, timings))
        timings["provenance"] = round((time.perf_counter() - t2) * 1000, 3)
        timings["total"] = round((time.perf_counter() - t0) * 1000, 3)
        return AskResult(request_id=request_id, answer=answer, search=result, record=record,
                         products=self.cited_products(answer, req.principal), timings_ms=timings)

    def cited_products(self, answer: Answer, principal: Principal) -> tuple[dict[str, Any], ...]:
        """Catalog facts of the products an answer cites (all readable: citations come from trimmed hits)."""
        catalog = self.searcher.catalog
        out = []
        for pid in dict.fromkeys(c.product_id for c in answer.citations):
            product = catalog.products.get(pid)
            if product is None or not principal.can_read(product):
                continue
            out.append({"id": pid, "name": product.title, "owner": product.owner.name, "team": product.team,
                        "classification": product.classification,
                        "freshness": freshness(product, source_update=self._source_update).as_dict()})
        return tuple(out)

    def _source_update(self, product: KnowledgeProduct) -> datetime | None:
        """`newest_source_update`, remembered for SOURCE_SCAN_TTL_S: it walks the product's folders and
        stats every file, which an answer should not do each time (ages are still computed per call)."""
        now = time.monotonic()
        with self._scan_lock:
            seen = self._source_scans.get(product.id)
        if seen is None or now - seen[0] > SOURCE_SCAN_TTL_S:
            seen = (now, newest_source_update(product))
            with self._scan_lock:
                self._source_scans[product.id] = seen
        return seen[1]

    def own_record(self, request_id: str, principal: Principal) -> ProvenanceRecord:
        """The caller's record, while the caller's current roles can read every product it retrieved or
        cites; otherwise exactly like a missing record. Records are owned by principal name, and a later
        key under that name with fewer roles must not read an earlier key's confidential citations."""
        record = self.provenance.get(request_id, principal)
        catalog = self.searcher.catalog
        if not all((product := catalog.products.get(pid)) is not None and principal.can_read(product)
                   for pid in record.product_ids):
            raise not_found(request_id)
        return record

    def replay(self, request_id: str) -> ReplayReport:
        """Re-run the recorded retrieval against the recorded release; same chunks in the same order?"""
        record = self.provenance.get(request_id, admin=True)
        params = record.retrieval_params
        filters = params.get("filters", {})

        def tup(v: list[str] | None) -> tuple[str, ...] | None:
            return None if v is None else tuple(v)

        req = SearchRequest(query=record.question, principal=record.principal, k=int(params["k"]),
                            release=record.release_id, products=tup(filters.get("products")),
                            domains=tup(filters.get("domains")), classifications=tup(filters.get("classifications")),
                            documents=tup(filters.get("documents")), rerank=params.get("reranker") is not None)
        replayed = tuple(h.chunk_id for h in self.searcher.search(req).hits)
        original = tuple(record.chunk_ids)
        return ReplayReport(request_id, record.release_id, replayed == original, original, replayed)
