"""Request and response models of the /v1 API (what the OpenAPI document shows), and the conversions
from the library's values to them. Product ids in examples are the public sample product only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from indexing.releases import ProductEntry, Release
from knowledge.catalog import Freshness, product_details, product_summary
from knowledge.model import Classification, KnowledgeProduct
from retrieval.pipeline import AskResult, ProductFacts
from retrieval.provenance import ProvenanceRecord
from retrieval.requests import client_id_of
from retrieval.types import Answer, Citation, Hit, HitSnippet, Outcome, SearchResult, ShortAnswer

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
    """Request bodies: unknown fields are refused (a typo must not silently widen or narrow a query), and
    values must have their declared JSON type (`"k": "5"` or `"stream": "yes"` are errors, not coerced)."""

    model_config = ConfigDict(extra="forbid", strict=True)


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
# The records themselves are the wire shapes (retrieval.types: Hit, HitSnippet, Citation, ShortAnswer,
# AnswerSentence, Answer; retrieval.pipeline.ProductFacts; retrieval.provenance.ProvenanceRecord): pydantic
# derives their schemas, so nothing here copies a record field by field.


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
        strict=True,
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
            hits=[h.hit() for h in result.hits],
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
        strict=True,
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
    answer: Answer = Field(description="`outcome`: " + OUTCOME_DESCRIPTION + " `text` has `[n]` markers; "
                           "`short`: for who / when / how many / how much / where questions, the answering "
                           "phrase with its span in citation `marker`'s text; `decision`: the answer model "
                           "id, thresholds and scores that decided the outcome.")
    products: list[ProductFacts] = Field(description="Owner, team and freshness of every cited product.")
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
            answer=a,
            products=list(result.products),
            retrieval=[h.snippet() for h in result.search.hits],
            timings_ms=result.timings_ms,
        )


# Payloads of the streamed events (documented in the ask route's description).
class RetrievalEvent(BaseModel):
    request_id: str
    release_id: str
    hits: list[HitSnippet]


class SentenceEvent(BaseModel):
    text: str = Field(description="The sentence without its markers.")
    markers: list[int] = Field(description="Citation markers of the sentence (empty: unsupported).")
    support: float
    index: int = Field(description="0-based position of the sentence in the answer.")
    rendered: str = Field(description="The sentence with its markers, as in the answer text.")


class CitationsEvent(BaseModel):
    citations: list[Citation]
    products: list[ProductFacts]
    outcome: Outcome = Field(description=OUTCOME_DESCRIPTION)
    abstained: bool
    short: ShortAnswer | None = Field(None, description="As in the JSON answer's `short`.")
    support: float
    dropped_citations: int
    closest_products: list[str]
    answer: str = Field(description="The whole answer text with markers.")

    @classmethod
    def of(cls, result: AskResult) -> CitationsEvent:
        a = result.answer
        return cls(citations=list(a.citations), products=list(result.products), outcome=a.outcome,
                   abstained=a.abstained, short=a.short, support=a.support,
                   dropped_citations=a.dropped_citations, closest_products=list(a.closest_products),
                   answer=a.text)


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
    validity: Literal["ok", "invalid"] = Field(
        "ok", description="`invalid` while the product's descriptor or contract fails validation: its last "
                          "valid version (these facts and its indexed content) keeps serving until fixed."
    )
    problem: str | None = Field(None, description="While invalid: each problem as `<file>: <field>: <what is "
                                                  "wrong> (fix: <how>)`.")
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
# Chain links (sequence number, previous record) are other callers' business: operators see them
# (`meshrag provenance show` / `verify`), readers of their own records do not.
CHAIN_LINKS = {"seq", "prev_request_id", "prev_hash"}


def provenance_view(record: ProvenanceRecord) -> ProvenanceRecord:
    """One's own record as its reader may see it: under the request id the reader chose."""
    return replace(record, request_id=client_id_of(record.request_id))


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
    problems: list[str] = Field(description="Why the service is not ready, and what needs an operator while "
                                            "it is (invalid product contracts, counted; the server log names them).")
    invalid_products: int = Field(0, description="Product folders whose descriptor or contract fails validation.")
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
