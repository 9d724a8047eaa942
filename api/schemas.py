"""Request and response models of the /v1 API (what the OpenAPI document shows), and the conversions
from the library's values to them. Product ids in examples are the public sample product only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from knowledge.model import Classification
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
        "reported as not found; so is a version of it." + " `<product id>@<version>` pins a version (e.g. customer.subscription-metrics@1.0.0).",
    )
    domains: list[str] | None = Field(None, description="Only these domains.")
    classifications: list[Classification] | None = Field(None, description="Only these classifications.")
    documents: list[str] | None = Field(None, description="Only these document ids.")
    rerank: bool | None = Field(
        None, description="Rerank with the configured cross-encoder (default: as configured)."
    )
    as_of: str | None = Field(
        None, description="YYYY-MM-DD: each product at the version current on that date (its contract's "
        "contractCreatedTs, else the release that first served it). Default: current versions.",
        examples=["2026-06-30"],
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
        None, description="Only these products (at most MESHRAG_MAX_PRODUCTS). `<product id>@<version>` pins a version (e.g. customer.subscription-metrics@1.0.0)."
    )
    domains: list[str] | None = Field(None, description="Only these domains.")
    classifications: list[Classification] | None = Field(None, description="Only these classifications.")
    as_of: str | None = Field(
        None, description="YYYY-MM-DD: each product at the version current on that date (its contract's "
        "contractCreatedTs, else the release that first served it). Default: current versions.",
        examples=["2026-06-30"],
    )
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
