"""OpenAI-compatible routes: POST /v1/chat/completions and GET /v1/models, so the official `openai`
client works unchanged with `base_url=http://host:port/v1` and a meshrag API key."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api import examples
from api.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatOptions,
    ModelCard,
    ModelList,
    completion,
    extension,
    model_id,
    stream_chunks,
)
from api.deps import MetricsDep, PrincipalDep, RecordIdDep, ServiceDep, SettingsDep
from api.errors import UnknownModel, error_responses
from api.followup import standalone_question
from api.schemas import sse_event_schema
from retrieval.requests import RequestLimitExceeded

CHAT_EVENT_SCHEMA = sse_event_schema(
    {"message": "ChatCompletionChunk"},
    "One chunk in the OpenAI format; the last event's data is `[DONE]`.",
    always_json=False,
)

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
STARTED = 1_767_225_600  # 2026-01-01, the `created` of the model card (it has no training date)


@router.get(
    "/models",
    response_model=ModelList,
    summary="The one model this server answers with",
    responses=examples.json_example(examples.MODELS) | error_responses(401),
)
async def models(settings: SettingsDep, _principal: PrincipalDep) -> ModelList:
    return ModelList(data=[ModelCard(id=model_id(settings.answerer), created=STARTED)])


CHAT_DESCRIPTION = """
The last message must be the user's question. Earlier *user* turns make a follow-up standalone
(deterministic, see README "Follow-up questions"): a turn starting with "and", "also", "what about" or
"how about" replaces the previous question's subject; it/its/they/them/their (or a trailing
this/that/these/those) is replaced by that subject; a turn of at most three words gets "of <subject>".
The answer cites like POST /v1/ask: `[n]` markers and a "Sources:" list in the message, and a `meshrag`
extension field (request id, standalone question, citations, products) on the completion or on the last
stream chunk. With `"stream": true`: `data: {chunk}` lines in the OpenAI format (role, then a sentence
at a time, then `finish_reason: "stop"` with the extension), ending with `data: [DONE]`.
"""


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="OpenAI-compatible chat completion, with citations",
    description=CHAT_DESCRIPTION,
    responses={
        200: {
            "description": "The completion (JSON), or chunks (text/event-stream) when `stream` is true.",
            "content": {
                "application/json": {"example": examples.CHAT},
                "text/event-stream": {"schema": CHAT_EVENT_SCHEMA, "example": examples.CHAT_STREAM},
            },
        }
    }
    | error_responses(400, 401, 404, 409, 413, 422, 503),
)
async def chat_completions(
    body: ChatCompletionRequest,
    service: ServiceDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    record_id: RecordIdDep,
):  # -> ChatCompletion | EventSourceResponse
    served = model_id(settings.answerer)
    if body.model != served:
        raise UnknownModel(f"model {body.model!r} is not served here; use {served!r} (GET /v1/models)")
    last = len(body.messages) - 1
    if body.messages[last].role != "user":
        raise RequestLimitExceeded(
            ("body", "messages", last, "role"),
            "the last message must be the user's question",
            kind="value_error",
        )
    turns = [(i, m.text()) for i, m in enumerate(body.messages) if m.role == "user"]
    question_loc = ("body", "messages", last, "content")
    service.limits.question(turns[-1][1], question_loc)
    rewrite = standalone_question([text for _, text in turns if text.strip()])
    options = body.meshrag or ChatOptions()
    req = service.limits.search_request(
        principal, rewrite.question, where=("body", "meshrag"), query_loc=question_loc, k=options.k,
        release=options.release, products=options.products, domains=options.domains,
        classifications=options.classifications, as_of=options.as_of)
    result = await run_in_threadpool(service.pipeline.run, req, record_id)
    metrics.observe_ask("chat", result)
    ext = extension(result, rewrite.rewritten, rewrite.rule)
    if not body.stream:
        return completion(result, served, ext)
    return EventSourceResponse(_events(stream_chunks(result, served, ext)), sep="\n")


async def _events(chunks: list[ChatCompletionChunk]) -> AsyncIterator[ServerSentEvent]:
    for chunk in chunks:
        yield ServerSentEvent(data=chunk.model_dump_json(), sep="\n")
    yield ServerSentEvent(data="[DONE]", sep="\n")
