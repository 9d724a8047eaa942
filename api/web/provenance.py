"""GET /provenance/{request_id}: one of the visitor's own answer records, its place in the hash chain
checked, and (on request) its retrieval replayed.

The record is found exactly as `GET /v1/provenance/{id}` finds it (`MeshService.own_record`, scoped by
the session's key id, so an X-Request-ID chosen with that key names the same record): another
principal's record, or one citing a product the visitor's roles cannot read now, is the same 404 page as
a missing one. Chain links (seq, the previous record's id and hash) belong to other callers and are not
shown; the page says only whether this record's hash and its link to the record before it hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.deps import ServiceDep
from api.errors import classify
from api.schemas import provenance_view
from api.web.deps import VisitorDep
from api.web.render import WebRoute, page
from knowledge.errors import MeshragError
from knowledge.model import Principal
from retrieval.provenance import ProvenanceRecord
from retrieval.provenance.record_check import RecordCheck, check_record
from retrieval.service import MeshService

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@dataclass(frozen=True)
class ReplayView:
    """The replayed retrieval against the recorded release, as far as the visitor may see it."""

    same: bool
    same_set: bool
    missing: list[int]  # ranks (1-based) of recorded chunks the replay did not return
    extra: int  # chunks the replay returned that the record does not hold (ids not shown: see module doc)
    error: str | None = None


def replay_view(service: MeshService, record: ProvenanceRecord) -> ReplayView:
    try:
        report = service.replay(record.request_id)
    except MeshragError as exc:  # e.g. the recorded release was removed: said on the page, not a 404 page
        return ReplayView(False, False, [], 0, error=classify(exc)[2])
    original, replayed = list(report.original), set(report.replayed)
    missing = [i + 1 for i, chunk in enumerate(original) if chunk not in replayed]
    extra = sum(1 for chunk in report.replayed if chunk not in set(original))
    return ReplayView(report.same, not missing and not extra, missing, extra)


@dataclass(frozen=True)
class RecordView:
    record: ProvenanceRecord  # as its reader sees it: under the request id the reader chose
    check: RecordCheck
    params: list[tuple[str, str]]
    replay: ReplayView | None


def _params(record: ProvenanceRecord, readable: set[str]) -> list[tuple[str, str]]:
    """The retrieval parameters in words; product lists trimmed to what the visitor may read now."""
    rows: list[tuple[str, str]] = []
    for key, value in record.retrieval_params.items():
        if key == "filters" and isinstance(value, dict):
            for name, chosen in value.items():
                if chosen is not None:
                    shown = [v for v in chosen if name != "products" or v in readable]
                    rows.append((f"filter: {name}", ", ".join(map(str, shown)) or "none"))
            continue
        if key == "products_searched" and isinstance(value, list):
            value = [p for p in value if p in readable]
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        rows.append((key.replace("_", " "), "none" if value is None else str(value)))
    return rows


def record_view(service: MeshService, principal: Principal, scope: str | None, request_id: str,
                replay: bool) -> RecordView:
    record = service.own_record(request_id, principal, scope)  # others' or unreadable: ProvenanceNotFound
    readable = {p.id for p in service.context.catalog.readable(principal)}
    return RecordView(record=provenance_view(record), check=check_record(service.provenance, record),
                      params=_params(record, readable), replay=replay_view(service, record) if replay else None)


@router.get("/provenance/{request_id}")
async def provenance_page(
    request: Request,
    visitor: VisitorDep,
    service: ServiceDep,
    request_id: Annotated[str, Path(max_length=200)],
    replay: Annotated[bool, Query()] = False,
) -> Response:
    if visitor.session is None:
        return page(request, "provenance.html", visitor, status=401, view=None,
                    next=request.url.path, request_id=request_id)
    view = await run_in_threadpool(record_view, service, visitor.principal, visitor.session.key_id or None, request_id,
                                   replay)
    return page(request, "provenance.html", visitor, view=view, request_id=view.record.request_id)
