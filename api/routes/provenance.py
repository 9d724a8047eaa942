"""GET /v1/provenance/{request_id}: your own answer records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from api import examples
from api.deps import KeyedPrincipalDep, ServiceDep
from api.errors import error_responses
from api.schemas import CHAIN_LINKS, provenance_view
from retrieval.provenance import ProvenanceRecord

router = APIRouter(prefix="/v1", tags=["provenance"])


@router.get(
    "/provenance/{request_id}",
    response_model=ProvenanceRecord,
    response_model_exclude=CHAIN_LINKS,
    summary="The record of one of your answers",
    responses=examples.json_example(examples.PROVENANCE) | error_responses(401, 404, 422, 503),
)
async def provenance(
    request: Request,
    service: ServiceDep,
    principal: KeyedPrincipalDep,
    request_id: Annotated[
        str,
        Path(
            max_length=200, description="The `request_id` an answer returned.", examples=[examples.REQUEST_ID]
        ),
    ],
) -> ProvenanceRecord:
    """Who asked what, the release, retrieval parameters, every retrieved chunk in rank order, the
    answer and its citations, and the record's place in the hash chain. Needs an API key; a record of
    another principal, or one citing a product the key's roles cannot read now, is answered exactly like
    a missing one (404)."""
    scope = getattr(request.state, "key_id", None)
    record = await run_in_threadpool(service.own_record, request_id, principal, scope)
    return provenance_view(record)
