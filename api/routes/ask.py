"""POST /v1/ask: a grounded answer with verified citations, as JSON or as Server-Sent Events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api import examples
from api.deps import MetricsDep, PrincipalDep, RecordIdDep, ServiceDep
from api.errors import classify, error_responses
from api.metrics import ApiMetrics
from api.schemas import (
    ASK_EVENT_SCHEMA,
    AskBody,
    AskResponse,
    CitationsEvent,
    DoneEvent,
    RetrievalEvent,
    SentenceEvent,
)
from retrieval.answer.citations import with_markers
from retrieval.pipeline import AskEvent, Retrieved, finish
from retrieval.types import AnswerSentence

router = APIRouter(prefix="/v1", tags=["ask"])
log = logging.getLogger("meshrag.api")

STREAM_DESCRIPTION = """
With `"stream": true` the response is `text/event-stream` with these events, in this order:

| event | data (JSON) |
|---|---|
| `retrieval` | `request_id`, `release_id`, `hits` (rank, product, document, span, snippet) |
| `sentence` | one per sentence: `index`, `text`, `markers`, `support`, `rendered` |
| `citations` | `citations`, `products` (owner, freshness), `outcome`, `short`, `abstained`, `answer`, … |
| `done` | `request_id`, `release_id`, `timings_ms` |

`retrieval` is sent as soon as retrieval is done; snippets, not whole chunk texts. Errors found
before streaming starts (bad input, unknown product or release, store down) are ordinary
HTTP errors. An error after the `retrieval` event ends the stream with an `error` event
(`{"error": {"type", "message", "status", "request_id"}}`) instead of `done`. The provenance record is
written before the first `sentence` event.
"""


@router.post(
    "/ask",
    response_model=AskResponse,
    summary="Ask a question; get a cited answer",
    description="Answers from the products you may read, citing where each sentence comes from, and "
    "records who asked what and which chunks answered it (GET /v1/provenance/{request_id})."
    + STREAM_DESCRIPTION,
    responses={
        200: {
            "description": "The answer (JSON), or its events (text/event-stream) when `stream` is true.",
            "content": {
                "application/json": {"example": examples.ASK},
                "text/event-stream": {"schema": ASK_EVENT_SCHEMA, "example": examples.ASK_STREAM},
            },
        }
    }
    | error_responses(400, 401, 404, 409, 413, 422, 503),
)
async def ask(
    body: AskBody,
    service: ServiceDep,
    principal: PrincipalDep,
    metrics: MetricsDep,
    record_id: RecordIdDep,
):  # -> AskResponse | EventSourceResponse
    req = service.limits.search_request(
        principal, body.question, k=body.k, release=body.release, products=body.products,
        domains=body.domains, classifications=body.classifications, as_of=body.as_of)
    stages = service.pipeline.stages(req, record_id)
    if not body.stream:  # every stage in one worker-thread hop
        result = await run_in_threadpool(finish, stages)
        metrics.observe_ask("ask", result)
        return AskResponse.of(result)
    # Retrieval runs before the response starts, so its errors are ordinary HTTP errors.
    retrieved = await run_in_threadpool(next, stages)
    assert isinstance(retrieved, Retrieved)
    return EventSourceResponse(ask_events(stages, retrieved, metrics), sep="\n")


async def ask_events(
    stages: Iterator[AskEvent], retrieved: Retrieved, metrics: ApiMetrics
) -> AsyncIterator[ServerSentEvent]:
    found, request_id = retrieved.search, retrieved.request_id
    yield event(
        "retrieval",
        RetrievalEvent(
            request_id=request_id, release_id=found.release_id, hits=[h.snippet() for h in found.hits]
        ).model_dump_json(),
    )
    try:
        result = await run_in_threadpool(finish, stages)
    except Exception as exc:  # the status line is sent: report the error in-band, then end the stream
        status, kind, message = classify(exc)
        log.error("streamed ask failed after retrieval", exc_info=status >= 500)
        yield event(
            "error",
            json.dumps(
                {"error": {"type": kind, "message": message, "status": status, "request_id": request_id}}
            ),
        )
        return
    metrics.observe_ask("ask", result)
    answer = result.answer
    sentences = answer.sentences or (AnswerSentence(text=answer.text, markers=(), support=0.0),)
    for index, s in enumerate(sentences):
        yield event(
            "sentence",
            SentenceEvent(
                index=index, text=s.text, markers=list(s.markers), support=s.support, rendered=render(s)
            ).model_dump_json(),
        )
    yield event("citations", CitationsEvent.of(result).model_dump_json())
    yield event(
        "done",
        DoneEvent(
            request_id=request_id, release_id=found.release_id, timings_ms=result.timings_ms
        ).model_dump_json(),
    )


def event(name: str, data: str) -> ServerSentEvent:
    return ServerSentEvent(data=data, event=name, sep="\n")


def render(sentence: AnswerSentence) -> str:
    """The sentence with its markers before its final punctuation, as in the answer text."""
    return with_markers(sentence.text, sentence.markers)
