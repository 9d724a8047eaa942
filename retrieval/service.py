"""The ask flow in one place: resolve readable products → hybrid retrieval → answer → verify citations
→ write the provenance record → return. The record is durable before `ask` returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from indexing.embedding_cache import open_embedding_cache
from indexing.pii import PiiScanner
from indexing.releases import CURRENT
from indexing.stores.embedded_pg import start_postgres
from knowledge.catalog import freshness, newest_source_update
from knowledge.errors import ConfigError, ProvenanceNotFound
from knowledge.model import KnowledgeProduct, Principal
from retrieval.answer.base import Answerer
from retrieval.answer.extractive import ExtractiveAnswerer
from retrieval.answer.model import load_answer_model
from retrieval.answer.support import SupportScorer
from retrieval.discovery import DiscoveryAnswerer, cites_discoverable_fact
from retrieval.discovery.meaning import ProductCards
from retrieval.pipeline import QUESTION_DIGEST, AskPipeline, AskResult, ProductFacts
from retrieval.provenance import ProvenanceLog, ProvenanceRecord, create_provenance_log, not_found
from retrieval.requests import CLIENT_ID, RequestLimits, new_request_id, scoped_request_id
from retrieval.searcher import MeshSearcher
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import Answer, SearchRequest, SearchResult
from retrieval.version_questions import VersionRouter

__all__ = ["AskResult", "MeshService", "ReplayReport"]

# How long an answer's freshness facts reuse a product's newest source time before scanning again.
SOURCE_SCAN_TTL_S = 60.0
QUESTION_FILTER_CACHE = 4096  # questions whose stored (PII-redacted) form is remembered


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


class MeshService:
    """Search, ask and replay over one data directory. Construct cheaply, `warm_up()` once.

    `context` holds what is loaded (models, store, catalog, releases); pass one to share it."""

    def __init__(self, settings: RetrievalSettings, *, context: ServingContext | None = None,
                 answerer: Answerer | None = None, provenance: ProvenanceLog | None = None) -> None:
        self.settings = settings
        self.context = context or ServingContext(settings)
        self._searcher = MeshSearcher(self.context)
        self._versions = VersionRouter(self.context, self._searcher.search, embed_passages=self._passage_vectors)
        self._discovery = DiscoveryAnswerer(lambda: self.context.catalog, source_update=self._source_update,
                                            cards=ProductCards(self._passage_vectors,
                                                               lambda q: self.context.embedder.embed_query(q)))
        self._answerer = answerer
        self._provenance = provenance
        self._source_scans: dict[str, tuple[float, datetime | None]] = {}
        self._scan_lock = threading.Lock()
        # A question asked again (a retry, a shared link, a benchmark's repeat pass) is not scanned again.
        self._redacted = lru_cache(maxsize=QUESTION_FILTER_CACHE)(self._redact)
        self._public_names: tuple[object, tuple[str, ...]] | None = None  # (catalog, its published names)

    def warm_up(self) -> None:
        self.context.warm_up()
        if self._answerer is None:
            self._answerer = self._create_answerer()
        self._answerer.warm_up()
        self._discovery.warm_up()  # the catalog's facts and card vectors now rather than in the first answer
        if self._provenance is None:
            self._provenance = self._create_provenance()
        self._provenance.warm_up()
        self._pii  # noqa: B018 - builds the scanner now rather than in the first answer

    def _create_answerer(self) -> Answerer:
        # Passage vectors persist beside the indexer's embedding cache (same keys: model id + text hash);
        # in shared mode that is PostgreSQL, so a replica on an empty scratch dir embeds nothing again.
        store = open_embedding_cache(self.settings)
        scorer = SupportScorer(self.context.embedder, store=store)
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
        resolved = self.context.release(release)
        texts: list[str] = []
        kept = (e for versions in resolved.kept.values() for e in versions.values())
        for entry in (*resolved.products.values(), *kept):
            for chunk in self.context.chunks_of(entry.chunk_version):
                texts.extend(answerer.passages(chunk))
        texts.extend(self._versions.passages(resolved))  # what answers about older versions compare with
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

    def _passage_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors through the answerer's scorer (cached in memory and in the embedding cache that
        `prepare_answer_vectors` fills), or straight from the embedder when the answerer has none."""
        scorer = getattr(self._answerer, "scorer", None)
        if isinstance(scorer, SupportScorer):
            return scorer.embed(texts)
        return self.context.embedder.embed_documents(list(texts))

    # ------------------------------------------------------------------------------------------ flows
    @cached_property
    def limits(self) -> RequestLimits:
        return RequestLimits.of(self.settings)

    @cached_property
    def pipeline(self) -> AskPipeline:
        return AskPipeline(search=self._versions.search, answer=lambda q, hits: self.answerer.answer(q, hits),
                           provenance=lambda: self.provenance, products_of=self.cited_products,
                           question_filter=self._question_filter, anonymous=self.settings.record_anonymous,
                           answer_versions=self._versions.answer,
                           discover=lambda req, found: self._discovery.answer(req, found.hits, found.release_id))

    def search(self, req: SearchRequest) -> SearchResult:
        return self._searcher.search(req)

    def ask(self, req: SearchRequest, *, request_id: str | None = None) -> AskResult:
        """Answer from what the principal may read; the provenance record is written before returning."""
        return self.pipeline.run(req, request_id or new_request_id())

    @cached_property
    def _pii(self) -> PiiScanner:
        scanner = PiiScanner()
        scanner.warm_up()
        return scanner

    def _question_filter(self, question: str) -> str:
        """The question as it may be stored: personal data a caller typed is replaced by typed placeholders
        (the indexer's scanner with every recognizer, whatever a product's policy: a question belongs to
        no product). Names the catalog publishes (owners, team members) stay as written."""
        catalog = self.context.catalog
        seen = self._public_names
        if seen is None or seen[0] is not catalog:
            names = tuple(n for p in catalog.products.values() for n in (p.owner.name, *(m.name for m in p.members)))
            seen = self._public_names = (catalog, names)
        return self._redacted(question, seen[1])

    def _redact(self, question: str, public_names: tuple[str, ...]) -> str:
        return self._pii.redact_text(question, public_names=public_names)[0]

    def cited_products(self, answer: Answer, principal: Principal) -> tuple[ProductFacts, ...]:
        """Catalog facts of the products an answer cites (all readable: citations come from trimmed hits)."""
        catalog = self.context.catalog
        out = []
        for pid in dict.fromkeys(c.product_id for c in answer.citations):
            product = catalog.products.get(pid)
            if product is None or not principal.can_read(product):
                continue
            out.append(ProductFacts(id=pid, name=product.title, owner=product.owner.name, team=product.team,
                                    classification=product.classification,
                                    freshness=freshness(product, source_update=self._source_update)))
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

    def own_record(self, request_id: str, principal: Principal, scope: str | None = None) -> ProvenanceRecord:
        """The caller's record, while the caller's current roles can read every product it retrieved or
        cites (or, for one cited only for catalog facts, may discover it); otherwise exactly like a missing record. Records are owned by principal name, and a later
        key under that name with fewer roles must not read an earlier key's confidential citations.
        `scope` (the caller's key id): an id the caller chose names its record inside that scope."""
        record = None
        if scope is not None and CLIENT_ID.match(request_id):
            try:
                record = self.provenance.get(scoped_request_id(request_id, scope), principal)
            except ProvenanceNotFound:
                record = None
        if record is None:
            record = self.provenance.get(request_id, principal)
        catalog = self.context.catalog
        retrieved = {r.product_id for r in record.retrieved}

        def may_see(pid: str) -> bool:
            product = catalog.products.get(pid)
            if product is None or principal.can_read(product):
                return product is not None
            # A product cited only for catalog facts its contract lets this principal discover.
            return (principal.can_discover(product) and pid not in retrieved
                    and all(cites_discoverable_fact(c) for c in record.citations if c.product_id == pid))

        if not all(may_see(pid) for pid in record.product_ids):
            raise not_found(request_id)
        return record

    def replay(self, request_id: str) -> ReplayReport:
        """Re-run the recorded retrieval against the recorded release; same chunks in the same order?"""
        record = self.provenance.get(request_id, admin=True)
        if record.principal.id == Principal.anonymous().id and record.question.startswith(QUESTION_DIGEST):
            raise ConfigError(f"record {request_id!r} was kept without its question (MESHRAG_RECORD_ANONYMOUS=refs), "
                              "so its retrieval cannot be replayed; its chunk ids and scores are in the record")
        params = record.retrieval_params
        filters = params.get("filters", {})

        def tup(v: list[str] | None) -> tuple[str, ...] | None:
            return None if v is None else tuple(v)

        as_of = params.get("as_of")
        req = SearchRequest(query=record.question, principal=record.principal, k=int(params["k"]),
                            release=record.release_id, products=tup(filters.get("products")),
                            domains=tup(filters.get("domains")), classifications=tup(filters.get("classifications")),
                            documents=tup(filters.get("documents")), rerank=params.get("reranker") is not None,
                            as_of=date.fromisoformat(as_of) if as_of else None)
        # The recorded pins (`<id>@<version>`, as_of) serve the same product versions; a diff is recomputed.
        replayed = tuple(h.chunk_id for h in self._versions.replay(req, params).hits)
        original = tuple(record.chunk_ids)
        return ReplayReport(request_id, record.release_id, replayed == original, original, replayed)
