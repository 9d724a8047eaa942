"""Request and response models of the /v1 API (what the OpenAPI document shows), and the conversions
from the library's values to them. Product ids in examples are the public sample product only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from indexing.releases import ProductEntry, Release
from knowledge.catalog import product_details, product_summary
from knowledge.model import KnowledgeProduct
from retrieval.answer.answer_types import AnswerType
from retrieval.provenance import ProvenanceRecord
from retrieval.service import AskResult
from retrieval.types import (
    Answer,
    AnswerSentence,
    Citation,
    Outcome,
    RetrievedChunk,
    SearchResult,
    ShortAnswer,
)

Classification = Literal["public", "internal", "confidential", "restricted"]
OUTCOME_DESCRIPTION = (
    "`answered`: sentences that answer, each verified against what it cites; `possibly_relevant`: no "
    "confirmed answer, the best passages quoted and cited under a line saying so; `abstained`: nothing "
    "readable supports an answer (no citations; `closest_products` names where to look)."
)
SNIPPET_CHARS = 240

PUBLIC_PRODUCT = "platform.mesh-handbook"
EXAMPLE_RELEASE = "rel-27887133c919de77"
EXAMPLE_REQUEST_ID = "6d57c70444774d1f9840271d9693dcc0"


class Strict(BaseModel):
    """Request bodies: unknown fields are refused (a typo must not silently widen or narrow a query)."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------- errors
class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where the offending value is, e.g. ["body", "question"].')
    msg: str = Field(description="What is wrong with it and, for limits, the limit.")
    type: str = Field(description="Machine-readable kind, e.g. `string_too_short` or `limit_exceeded`.")


class ErrorDetail(BaseModel):
    type: str = Field(
        description="Machine-readable kind: not_found, validation_error, unauthorized, store_unavailable, …"
    )
    message: str = Field(description="What went wrong and what to do about it. Never a stack trace.")
    status: int = Field(description="The HTTP status code.")
    request_id: str = Field(description="Same as the X-Request-ID response header.")
    fields: list[FieldError] | None = Field(None, description="Field-level problems (422 only).")


class ErrorResponse(BaseModel):
    """Every error has this shape (also what OpenAI clients expect: an `error` object with a `message`)."""

    error: ErrorDetail

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "type": "not_found",
                        "status": 404,
                        "request_id": EXAMPLE_REQUEST_ID,
                        "message": "no product 'finance.nope'; known products: platform.mesh-handbook",
                    }
                }
            ]
        }
    )


# --------------------------------------------------------------------------------------------- pieces
class Freshness(BaseModel):
    status: Literal["fresh", "stale", "unknown"] = Field(description="Against the contract's freshness SLA.")
    last_update: str | None = Field(
        description="ISO 8601; declared in the contract, else newest source file."
    )
    source: Literal["declared", "sources", "none"]
    sla_days: float
    age_days: float | None


class Scores(BaseModel):
    score: float | None = Field(None, description="Final score (fused, or reranked).")
    rank: int | None = None
    dense: float | None = Field(None, description="Cosine similarity of the dense search.")
    dense_rank: int | None = None
    keyword: float | None = Field(None, description="BM25 score of the keyword search.")
    keyword_rank: int | None = None
    rerank: float | None = None
    support: float | None = Field(
        None, description="Citations only: how well the chunk supports the sentence."
    )


class Hit(BaseModel):
    """A retrieved chunk with its provenance, text and scores."""

    rank: int
    score: float
    chunk_id: str
    product_id: str
    product_version: str
    release_id: str
    chunk_version: str
    embedding_version: str
    domain: str
    classification: Classification
    document: str = Field(
        description="Document id within the product (`_catalog` is the product's catalog card)."
    )
    doc_revision: str = Field(description="sha256 of the document's source.")
    start: int = Field(description="Character span of the chunk in the normalised document.")
    end: int
    heading_path: list[str]
    flags: list[str] = Field(description="Index-time flags, e.g. `prompt_injection`.")
    text: str
    scores: Scores

    @classmethod
    def of(cls, hit: RetrievedChunk) -> Hit:
        c = hit.chunk
        return cls(
            rank=hit.rank,
            score=hit.score,
            chunk_id=c.chunk_id,
            product_id=c.product_id,
            product_version=hit.product_version,
            release_id=hit.release_id,
            chunk_version=hit.chunk_version,
            embedding_version=hit.embedding_version,
            domain=hit.domain,
            classification=hit.classification,  # type: ignore[arg-type]
            document=c.document,
            doc_revision=c.doc_revision,
            start=c.start,
            end=c.end,
            heading_path=list(c.heading_path),
            flags=list(c.flags),
            text=c.text,
            scores=Scores(**hit.scores()),
        )


class HitSnippet(BaseModel):
    """A retrieved chunk as an answer reports it: where it is from and a snippet, not the whole text."""

    rank: int
    score: float
    chunk_id: str
    product_id: str
    product_version: str
    document: str
    heading_path: list[str]
    start: int
    end: int
    snippet: str = Field(
        description=f"The first {SNIPPET_CHARS} characters of the chunk, whitespace collapsed."
    )

    @classmethod
    def of(cls, hit: RetrievedChunk) -> HitSnippet:
        c = hit.chunk
        text = " ".join(c.text.split())
        return cls(
            rank=hit.rank,
            score=hit.score,
            chunk_id=c.chunk_id,
            product_id=c.product_id,
            product_version=hit.product_version,
            document=c.document,
            heading_path=list(c.heading_path),
            start=c.start,
            end=c.end,
            snippet=text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else ""),
        )


class CitationOut(BaseModel):
    """What `[marker]` in the answer cites: enough to find and re-check the text."""

    marker: int = Field(description="The n of `[n]` in the answer text.")
    chunk_id: str
    product_id: str
    product_version: str
    release_id: str
    chunk_version: str
    document: str
    doc_revision: str
    start: int
    end: int
    heading_path: list[str]
    text: str = Field(description="The cited chunk text (PII-redacted where the product's policy says so).")
    scores: Scores

    @classmethod
    def of(cls, c: Citation) -> CitationOut:
        return cls(
            marker=c.marker,
            chunk_id=c.chunk_id,
            product_id=c.product_id,
            product_version=c.product_version,
            release_id=c.release_id,
            chunk_version=c.chunk_version,
            document=c.document,
            doc_revision=c.doc_revision,
            start=c.start,
            end=c.end,
            heading_path=list(c.heading_path),
            text=c.text,
            scores=Scores(**c.scores),
        )


class ShortAnswerOut(BaseModel):
    """The phrase that answers a who / when / how many / how much / where question, located in the text
    of the citation it comes from: `citations[marker - 1].text[start:end] == text`."""

    text: str = Field(description="The phrase, e.g. a name, a date or an amount.")
    kind: AnswerType = Field(description="person (or team), date, number, amount or place.")
    marker: int = Field(description="The citation (`[n]`) whose text contains the phrase.")
    start: int = Field(description="Character span of the phrase in that citation's `text`.")
    end: int

    @classmethod
    def of(cls, s: ShortAnswer | None) -> ShortAnswerOut | None:
        if s is None:
            return None
        return cls(text=s.text, kind=s.kind, marker=s.marker, start=s.start, end=s.end)  # type: ignore[arg-type]


class Sentence(BaseModel):
    text: str = Field(description="The sentence without its markers.")
    markers: list[int] = Field(description="Citation markers of the sentence (empty: unsupported).")
    support: float

    @classmethod
    def of(cls, s: AnswerSentence) -> Sentence:
        return cls(text=s.text, markers=list(s.markers), support=s.support)


class AnswerOut(BaseModel):
    text: str = Field(description="The answer with `[n]` citation markers.")
    outcome: Outcome = Field(description=OUTCOME_DESCRIPTION)
    abstained: bool = Field(description="`outcome == \"abstained\"`.")
    short: ShortAnswerOut | None = Field(
        None, description="Answered who / when / how many / how much / where questions: the answering phrase."
    )
    support: float = Field(
        description="Answerability: the fitted answer model's best probability that a retrieved sentence "
        "answers the question."
    )
    answerer: str = Field(description="name@version of the answerer.")
    model: str | None = None
    prompt_version: str | None = None
    sentences: list[Sentence]
    citations: list[CitationOut]
    dropped_citations: int = Field(description="Markers removed because they did not resolve or support.")
    closest_products: list[str] = Field(
        description="On abstention: the readable products nearest the question; when possibly relevant: "
        "the products of the quoted passages."
    )
    decision: dict[str, Any] = Field(
        description="What decided the outcome: answer model id, its thresholds (answer, relevant, "
        "sentence), answerability, retrieval strength."
    )

    @classmethod
    def of(cls, a: Answer) -> AnswerOut:
        return cls(
            text=a.text,
            outcome=a.outcome,
            abstained=a.abstained,
            short=ShortAnswerOut.of(a.short),
            support=a.support,
            answerer=a.answerer,
            model=a.model,
            prompt_version=a.prompt_version,
            sentences=[Sentence.of(s) for s in a.sentences],
            citations=[CitationOut.of(c) for c in a.citations],
            dropped_citations=a.dropped_citations,
            closest_products=list(a.closest_products),
            decision=dict(a.decision),
        )


class CitedProduct(BaseModel):
    """Catalog facts of a product the answer cites."""

    id: str
    name: str
    owner: str
    team: str
    classification: Classification
    freshness: Freshness


# ---------------------------------------------------------------------------------------------- search
class SearchBody(Strict):
    query: str = Field(min_length=1, description="What to look for, in natural language.")
    k: int | None = Field(
        None,
        ge=1,
        description="How many chunks (default MESHRAG_TOP_K, 8; at most MESHRAG_MAX_K, 50 by default).",
    )
    release: str = Field(
        "current", min_length=1, max_length=200, description="A release id to search, or `current`."
    )
    products: list[str] | None = Field(
        None,
        description="Only these products (at most MESHRAG_MAX_PRODUCTS, "
        "20 by default). A product you cannot read is "
        "reported as not found.",
    )
    domains: list[str] | None = Field(None, description="Only these domains.")
    classifications: list[Classification] | None = Field(None, description="Only these classifications.")
    documents: list[str] | None = Field(None, description="Only these document ids.")
    rerank: bool | None = Field(
        None, description="Rerank with the configured cross-encoder (default: as configured)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "How do I publish a knowledge product?", "k": 5}]},
    )


class SearchResponse(BaseModel):
    request_id: str
    release_id: str
    hits: list[Hit]
    params: dict[str, Any] = Field(
        description="Everything needed to replay the search (k, fusion, filters, …)."
    )
    timings_ms: dict[str, float]

    @classmethod
    def of(cls, request_id: str, result: SearchResult) -> SearchResponse:
        return cls(
            request_id=request_id,
            release_id=result.release_id,
            hits=[Hit.of(h) for h in result.hits],
            params=result.params,
            timings_ms=result.timings_ms,
        )


# ------------------------------------------------------------------------------------------------- ask
class AskBody(Strict):
    question: str = Field(
        min_length=1, description="The question (at most MESHRAG_MAX_QUESTION_CHARS, 2000 by default)."
    )
    k: int | None = Field(
        None, ge=1, description="How many chunks the answerer sees (default 8, at most MESHRAG_MAX_K)."
    )
    release: str = Field("current", min_length=1, max_length=200, description="A release id, or `current`.")
    products: list[str] | None = Field(
        None, description="Only these products (at most MESHRAG_MAX_PRODUCTS)."
    )
    domains: list[str] | None = Field(None, description="Only these domains.")
    classifications: list[Classification] | None = Field(None, description="Only these classifications.")
    stream: bool = Field(
        False,
        description="Stream Server-Sent Events: `retrieval`, `sentence` (one per "
        "sentence), `citations`, then `done` (or `error`).",
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "Who owns the mesh handbook and how fresh is it?"},
                {"question": "What is a knowledge product release?", "stream": True},
            ]
        },
    )


class AskResponse(BaseModel):
    request_id: str = Field(description="Names the provenance record: GET /v1/provenance/{request_id}.")
    release_id: str
    question: str
    answer: AnswerOut
    products: list[CitedProduct] = Field(description="Owner, team and freshness of every cited product.")
    retrieval: list[HitSnippet] = Field(
        description="What the answerer saw ([n] in citations is not its rank)."
    )
    timings_ms: dict[str, float]

    @classmethod
    def of(cls, result: AskResult) -> AskResponse:
        a = result.answer
        return cls(
            request_id=result.request_id,
            release_id=result.search.release_id,
            question=a.question,
            answer=AnswerOut.of(a),
            products=[CitedProduct(**p) for p in result.products],
            retrieval=[HitSnippet.of(h) for h in result.search.hits],
            timings_ms=result.timings_ms,
        )


# Payloads of the streamed events (documented in the ask route's description).
class RetrievalEvent(BaseModel):
    request_id: str
    release_id: str
    hits: list[HitSnippet]


class SentenceEvent(Sentence):
    index: int = Field(description="0-based position of the sentence in the answer.")
    rendered: str = Field(description="The sentence with its markers, as in the answer text.")


class CitationsEvent(BaseModel):
    citations: list[CitationOut]
    products: list[CitedProduct]
    outcome: Outcome = Field(description=OUTCOME_DESCRIPTION)
    abstained: bool
    short: ShortAnswerOut | None = Field(None, description="As in the JSON answer's `short`.")
    support: float
    dropped_citations: int
    closest_products: list[str]
    answer: str = Field(description="The whole answer text with markers.")


class DoneEvent(BaseModel):
    request_id: str
    release_id: str
    timings_ms: dict[str, float]


# --------------------------------------------------------------------------------------------- catalog
class ProductSummary(BaseModel):
    id: str
    domain: str
    name: str
    slug: str
    version: str
    status: str
    owner: str
    owner_username: str
    team: str
    classification: Classification
    read_roles: list[str]
    pii_policy: str
    tags: list[str]
    documents: int
    freshness: Freshness
    retention_days: int
    purpose: str
    match: int | None = Field(
        None, description="With `q`: how many of the query's words the metadata contains."
    )

    @classmethod
    def of(cls, product: KnowledgeProduct, match: int | None = None) -> ProductSummary:
        return cls(**product_summary(product), match=match)


class CatalogResponse(BaseModel):
    count: int = Field(description="How many products matched (only products you may read are counted).")
    products: list[ProductSummary]


class Member(BaseModel):
    username: str
    name: str
    role: str


class ProductVersion(BaseModel):
    """The product as one release serves it."""

    release_id: str
    current: bool
    created_at: str
    product_version: str
    chunk_version: str
    embedding_version: str
    chunks: int
    documents: int


class ProductDetail(ProductSummary):
    usage: str
    limitations: str
    members: list[Member]
    document_ids: list[str]
    versions: list[ProductVersion] = Field(description="Releases that serve the product, newest first.")

    @classmethod
    def build(cls, product: KnowledgeProduct, versions: list[ProductVersion]) -> ProductDetail:
        details = product_details(product)
        # Server paths (root, sources, descriptor, contract files) are not the caller's business.
        for key in ("root", "sources", "descriptor", "contract"):
            details.pop(key, None)
        return cls(**details, versions=versions)


# -------------------------------------------------------------------------------------------- releases
class ReleaseProduct(BaseModel):
    product_id: str
    product_version: str
    domain: str
    classification: Classification
    chunk_version: str
    embedding_version: str
    chunks: int
    documents: int

    @classmethod
    def of(cls, e: ProductEntry) -> ReleaseProduct:
        return cls(
            product_id=e.product_id,
            product_version=e.product_version,
            domain=e.domain,
            classification=e.classification,  # type: ignore[arg-type]
            chunk_version=e.chunk_version,
            embedding_version=e.embedding_version,
            chunks=e.n_chunks,
            documents=len(e.documents),
        )


class ReleaseSummary(BaseModel):
    id: str
    created_at: str
    current: bool
    store: str
    model_id: str
    parent: str | None
    products: int = Field(description="Products of the release that you may read.")
    chunks: int = Field(description="Chunks of those products.")


class ReleaseList(BaseModel):
    current: str | None = Field(
        description="The release the `current` alias names (null before the first index)."
    )
    releases: list[ReleaseSummary] = Field(description="Oldest first.")


class ReleaseDetail(BaseModel):
    id: str
    created_at: str
    current: bool
    store: str
    model_id: str
    parent: str | None
    products: list[ReleaseProduct] = Field(description="Only the products you may read.")


def release_summary(release: Release, current: str | None, readable: list[ProductEntry]) -> ReleaseSummary:
    return ReleaseSummary(
        id=release.id,
        created_at=release.created_at,
        current=release.id == current,
        store=release.store,
        model_id=release.model_id,
        parent=release.parent,
        products=len(readable),
        chunks=sum(e.n_chunks for e in readable),
    )


# ------------------------------------------------------------------------------------------ provenance
class PrincipalOut(BaseModel):
    id: str
    roles: list[str]


class RetrievedRefOut(BaseModel):
    chunk_id: str
    product_id: str
    product_version: str
    chunk_version: str
    embedding_version: str
    document: str
    doc_revision: str
    start: int
    end: int
    heading_path: list[str]
    classification: str
    scores: dict[str, float | int | None]


class ProvenanceOut(BaseModel):
    """One provenance record as stored: hash-chained (`prev_hash` → `hash`), append-only."""

    record_version: int
    request_id: str
    created_at: str
    principal: PrincipalOut
    question: str
    release_id: str
    retrieval_params: dict[str, Any]
    retrieved: list[RetrievedRefOut] = Field(description="Every retrieved chunk in rank order (no text).")
    answerer: str
    prompt_version: str | None
    model: str | None
    answer: str
    abstained: bool
    support: float
    citations: list[CitationOut]
    dropped_citations: int
    timings: dict[str, float]
    outcome: Outcome | None = Field(None, description="Record version 2 on: " + OUTCOME_DESCRIPTION)
    short: ShortAnswerOut | None = Field(None, description="Record version 2 on: the answering phrase, if any.")
    decision: dict[str, Any] | None = Field(
        None, description="Record version 2 on: answer model id, thresholds, answerability, retrieval strength."
    )
    seq: int
    prev_request_id: str | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, record: ProvenanceRecord) -> ProvenanceOut:
        return cls.model_validate(record.as_dict())


# --------------------------------------------------------------------------------------------- health
class Health(BaseModel):
    status: Literal["ok"]


class AnswerVectors(BaseModel):
    status: Literal["off", "running", "done", "no_release", "stopped", "failed"] = Field(
        description="The background pass that embeds the current release's passages for the answerer.")
    done: int = Field(0, description="Passages embedded so far by this pass.")
    total: int | None = Field(None, description="Passages this pass had to embed (not yet cached).")


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    warm: bool = Field(description="Models, stores and indexes are loaded.")
    store: bool = Field(description="The vector store answers and holds the current release's collections.")
    current_release: str | None = Field(description="The release `current` names, if any.")
    problems: list[str] = Field(description="Why the service is not ready (empty when ready).")
    query_encoder: dict[str, Any] | None = Field(
        None, description="How questions are embedded: runtime (onnx or torch), the ONNX export's verified "
                          "minimum cosine against torch, why it fell back (if it did), query-cache hits.")
    answer_vectors: AnswerVectors | None = Field(
        None, description="Progress of precomputing answer passages; answers work (slower) before it is done.")


def sse_event_schema(events: dict[str, str], description: str, *, always_json: bool = True) -> dict[str, Any]:
    """The OpenAPI (3.1) schema of one Server-Sent Event: its name and its data, JSON whose schema per
    event is the referenced component (the stream payload models are added to the document by
    api/app.py). `always_json=False` for the OpenAI stream, whose last data is `[DONE]`."""
    refs = [{"$ref": f"#/components/schemas/{m}"} for m in dict.fromkeys(events.values())]
    data: dict[str, Any] = {"type": "string"}
    if always_json:
        data |= {"contentMediaType": "application/json", "contentSchema": {"oneOf": refs}}
    else:
        data["description"] = f"JSON ({', '.join(dict.fromkeys(events.values()))}), or `[DONE]` at the end."
    return {
        "type": "object",
        "description": description,
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": list(events)},
            "data": data,
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }


ASK_EVENT_SCHEMA = sse_event_schema(
    {
        "retrieval": "RetrievalEvent",
        "sentence": "SentenceEvent",
        "citations": "CitationsEvent",
        "done": "DoneEvent",
        "error": "ErrorResponse",
    },
    "One event of the /v1/ask stream: retrieval, sentence (one per sentence), citations, then done "
    "(or error).",
)
