"""The ask page: GET / (the form), POST /ask (the answer as a page: works without JavaScript) and
POST /ask/stream (the answer as Server-Sent Events, for ask.js).

One flow: both posts build their request with `service.limits.search_request` and run
`service.pipeline.stages`, exactly as POST /v1/ask does; the stream sends that route's events through its
own `ask_events`, and its errors are the API's JSON errors (ask.js shows their message), so the page and
the API cannot drift apart. Record ids are scoped to the session's API key as the API scopes them.

Why server-rendered pages plus one small script rather than htmx or a front-end framework: the answer
page must work with JavaScript off (so it is rendered here anyway), the only live part is reading one SSE
stream, which a few dozen lines of `fetch` do, and the Content-Security-Policy allows no inline script,
no other origin and so no CDN; nothing is vendored and there is no build step.

Follow-ups: a question asked with the previous one ticked as its context is made standalone by the chat
endpoint's rule (api/followup.py: "and net revenue?", "how fresh is it?"), and the answer shows the
question as it was answered. Suggested follow-ups come from what the answer carries: on an abstention,
the same question in each of the closest readable products; on a possibly relevant result, the same
question in each cited product alone; on an answer, what each cited product covers (its catalog card).
They are decided here only: the page renders them, and the stream sends them to ask.js as one more event,
`followups` (a list of `{label, question, product}`), right after `citations`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.deps import MetricsDep, ServiceDep, get_record_id
from api.errors import classify, error_response
from api.followup import Rewrite, standalone_question
from api.routes.ask import ask_events, event, render
from api.schemas import CitationsEvent, SentenceEvent, Strict
from api.web.deps import VisitorDep
from api.web.documents import document_href
from api.web.render import WebRoute, page
from api.web.session import CSRF_FIELD, CSRF_HEADER, CsrfRejected, Visitor, check_csrf
from knowledge.errors import ProductNotFound
from knowledge.model import KnowledgeProduct
from retrieval.pipeline import AskResult, Retrieved, finish
from retrieval.requests import RequestLimitExceeded, RequestLimits
from retrieval.service import MeshService
from retrieval.types import AnswerSentence, Citation

router = APIRouter(route_class=WebRoute, include_in_schema=False)
# The stream answers in the API's JSON errors, not pages: a plain route, so the app's handlers map them.
stream_router = APIRouter(include_in_schema=False)

STANDALONE_HEADER = "X-Standalone-Question"  # the question as answered (percent-encoded), when rewritten
MAX_SUGGESTED = 3


class StreamBody(Strict):
    """What ask.js posts (as a form or as JSON); unknown fields are refused, as in POST /v1/ask."""

    question: str
    products: list[str] | None = None
    previous: str | None = None  # the question this one follows up


@dataclass(frozen=True)
class CitationView:
    citation: Citation
    product: str  # the product's name
    href: str  # the document view with the cited span highlighted


@dataclass(frozen=True)
class FollowUp:
    label: str
    question: str
    product: str  # the product filter it sets ("" = every readable product)


@dataclass(frozen=True)
class AnswerView:
    """What the answer page shows: the streamed events' payloads, rendered on the server."""

    question: str  # as answered (standalone)
    rewritten: bool
    request_id: str
    release_id: str
    passages: int
    sentences: list[SentenceEvent]
    outcome: CitationsEvent
    citations: list[CitationView]
    closest: list[KnowledgeProduct]
    follow_ups: list[FollowUp]


def readable_products(service: MeshService, visitor: Visitor) -> list[KnowledgeProduct]:
    return sorted(service.context.catalog.filter(principal=visitor.principal), key=lambda p: p.title.lower())


def standalone(limits: RequestLimits, question: str, previous: str | None) -> Rewrite:
    """`question`, made standalone against `previous` when it follows one up (api/followup.py)."""
    limits.question(question, ("body", "question"))
    if not previous or not previous.strip():
        return Rewrite(question, False, "none")
    limits.question(previous, ("body", "previous"))
    rewrite = standalone_question([previous, question])
    return rewrite if rewrite.rewritten else Rewrite(question, False, "none")


def follow_ups(outcome: CitationsEvent, question: str, names: dict[str, str], product: str) -> list[FollowUp]:
    """Suggested next questions from what the answer carries (ask.js `followUps` does the same)."""
    cited = [p.id for p in outcome.products]
    if outcome.outcome == "abstained":
        return [FollowUp(f"Ask in {names[pid]}", question, pid)
                for pid in outcome.closest_products if pid in names and pid != product][:MAX_SUGGESTED]
    if outcome.outcome == "possibly_relevant":
        return [FollowUp(f"Ask only in {names[pid]}", question, pid)
                for pid in cited if pid in names and pid != product][:MAX_SUGGESTED]
    return [FollowUp(f"What does {names[pid]} cover?", f"What does {names[pid]} cover?", "")
            for pid in cited if pid in names and question != f"What does {names[pid]} cover?"][:MAX_SUGGESTED]


def answer_view(result: AskResult, rewrite: Rewrite, readable: list[KnowledgeProduct],
                product: str) -> AnswerView:
    answer = result.answer
    names = {p.id: p.title for p in readable}
    sentences = answer.sentences or (AnswerSentence(text=answer.text, markers=(), support=0.0),)
    outcome = CitationsEvent.of(result)
    return AnswerView(
        question=rewrite.question, rewritten=rewrite.rewritten, request_id=result.request_id,
        release_id=result.search.release_id, passages=len(result.search.hits),
        sentences=[SentenceEvent(index=i, text=s.text, markers=list(s.markers), support=s.support,
                                 rendered=render(s)) for i, s in enumerate(sentences)],
        outcome=outcome,
        citations=[CitationView(c, names.get(c.product_id, c.product_id),
                                document_href(c.product_id, c.document, c.release_id, c.start, c.end))
                   for c in outcome.citations],
        closest=[p for p in readable if p.id in outcome.closest_products],
        follow_ups=follow_ups(outcome, rewrite.question, names, product),
    )


def ask_page_of(request: Request, visitor: Visitor, service: MeshService, *, status: int = 200,
                question: str = "", product: str = "", previous: str = "", answer: AnswerView | None = None,
                error: str | None = None) -> Response:
    return page(request, "ask.html", visitor, status=status, nav="ask", question=question, product=product,
                previous=previous, answer=answer, error=error, products=readable_products(service, visitor),
                max_chars=service.limits.max_question_chars, csrf_header=CSRF_HEADER)


@router.get("/")
async def ask_form(request: Request, visitor: VisitorDep, service: ServiceDep) -> Response:
    return ask_page_of(request, visitor, service)


@router.post("/ask")
async def ask_page(
    request: Request,
    visitor: VisitorDep,
    service: ServiceDep,
    metrics: MetricsDep,
    question: Annotated[str, Form()] = "",
    products: Annotated[str, Form()] = "",
    previous: Annotated[str | None, Form()] = None,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD, max_length=200)] = None,
) -> Response:
    """The answer rendered on the server (the form's own action: JavaScript off, or a follow-up form)."""
    check_csrf(request, visitor, csrf)
    try:
        rewrite = standalone(service.limits, question, previous)
        req = service.limits.search_request(visitor.principal, rewrite.question,
                                            products=[products] if products else None)
    except (RequestLimitExceeded, ProductNotFound) as exc:
        status, _, message = classify(exc)
        return ask_page_of(request, visitor, service, status=status, question=question, product=products,
                           previous=previous or "", error=message)
    record_id = await get_record_id(request, visitor.principal)
    result = await run_in_threadpool(lambda: finish(service.pipeline.stages(req, record_id)))
    metrics.observe_ask("ask", result)
    view = answer_view(result, rewrite, readable_products(service, visitor), products)
    return ask_page_of(request, visitor, service, question=question, product=products,
                       previous=rewrite.question, answer=view)


@stream_router.post("/ask/stream")
async def ask_stream(
    request: Request, visitor: VisitorDep, service: ServiceDep, metrics: MetricsDep
) -> Response:
    """POST /v1/ask's event stream for the signed-in session (CSRF token in the X-CSRF-Token header)."""
    try:
        check_csrf(request, visitor, request.headers.get(CSRF_HEADER))
    except CsrfRejected as exc:
        return error_response(request, 403, "csrf_rejected", str(exc))
    body = await _stream_body(request)
    rewrite = standalone(service.limits, body.question, body.previous)
    req = service.limits.search_request(visitor.principal, rewrite.question, products=body.products)
    stages = service.pipeline.stages(req, await get_record_id(request, visitor.principal))
    # Retrieval runs before the response starts, so its errors are ordinary HTTP (JSON) errors.
    retrieved = await run_in_threadpool(next, stages)
    assert isinstance(retrieved, Retrieved)
    headers = {"X-Content-Type-Options": "nosniff"}
    if rewrite.rewritten:
        headers[STANDALONE_HEADER] = quote(rewrite.question, safe="")
    names = {p.id: p.title for p in readable_products(service, visitor)}
    product = body.products[0] if body.products and len(body.products) == 1 else ""
    events = with_follow_ups(ask_events(stages, retrieved, metrics), rewrite.question, names, product)
    return EventSourceResponse(events, sep="\n", headers=headers)


async def with_follow_ups(events: AsyncIterator[ServerSentEvent], question: str, names: dict[str, str],
                          product: str) -> AsyncIterator[ServerSentEvent]:
    """The API's events, and after `citations` the page's suggested follow-ups (`followups`)."""
    async for sse in events:
        yield sse
        if sse.event == "citations":
            outcome = CitationsEvent.model_validate_json(sse.data)
            suggested = [asdict(f) for f in follow_ups(outcome, question, names, product)]
            yield event("followups", json.dumps(suggested))


async def _stream_body(request: Request) -> StreamBody:
    """The body as a form (what ask.js sends) or as JSON; invalid is the API's 422."""
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            return StreamBody.model_validate_json(await request.body())
        form = await request.form()
        products = [p for p in form.getlist("products") if p]
        return StreamBody.model_validate({"question": form.get("question", ""), "products": products or None,
                                          "previous": form.get("previous") or None})
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


router.include_router(stream_router)
