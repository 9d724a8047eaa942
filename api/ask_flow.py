"""The ask flow in two stages, for streaming: retrieve first (so the hits can be sent at once), then
answer and record. Same steps and order as `MeshService.ask` (which the JSON routes call): the
provenance record is durable before any answer text leaves the server."""

from __future__ import annotations

import time

from api.deps import Limits
from api.errors import RequestIdConflict
from knowledge.errors import ProvenanceNotFound
from knowledge.model import Principal
from retrieval.provenance import record_from
from retrieval.service import AskResult, MeshService
from retrieval.types import SearchRequest, SearchResult


def check_request_id_unused(service: MeshService, request_id: str) -> None:
    """A client-chosen X-Request-ID must not name an earlier answer (it names the provenance record)."""
    try:
        service.provenance.get(request_id, admin=True)
    except ProvenanceNotFound:
        return
    raise RequestIdConflict(
        f"request id {request_id!r} already names an earlier answer; send a new "
        "X-Request-ID, or none to get a generated one"
    )


def answer_and_record(
    service: MeshService, req: SearchRequest, search: SearchResult, request_id: str
) -> AskResult:
    """Stage two of an ask whose retrieval (`search`) is done: answer, verify, record, return."""
    t1 = time.perf_counter()
    answer = service.answerer.answer(req.query, search.hits)
    t2 = time.perf_counter()
    timings = {"search": search.timings_ms.get("total", 0.0), "answer": round((t2 - t1) * 1000, 3)}
    record = service.provenance.append(
        record_from(request_id, req.principal, req.query, search, answer, timings)
    )
    timings["provenance"] = round((time.perf_counter() - t2) * 1000, 3)
    timings["total"] = round(timings["search"] + (time.perf_counter() - t1) * 1000, 3)
    return AskResult(
        request_id=request_id,
        answer=answer,
        search=search,
        record=record,
        products=service.cited_products(answer, req.principal),
        timings_ms=timings,
    )


def search_request(
    limits: Limits,
    principal: Principal,
    query: str,
    query_loc: list[str | int],
    *,
    k: int | None,
    release: str,
    products: list[str] | None,
    domains: list[str] | None,
    classifications: list[str] | None,
    documents: list[str] | None = None,
    rerank: bool | None = None,
    prefix: tuple[str, ...] = ("body",),
) -> SearchRequest:
    """A SearchRequest from request fields, with the configured limits checked (offending field named)."""
    return SearchRequest(
        query=limits.question(query, query_loc),
        principal=principal,
        k=limits.k(k, [*prefix, "k"]),
        release=release,
        products=limits.products(products, [*prefix, "products"]),
        domains=None if domains is None else tuple(domains),
        classifications=None if classifications is None else tuple(classifications),
        documents=None if documents is None else tuple(documents),
        rerank=rerank,
    )
