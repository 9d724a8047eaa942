"""POST /v1/search: the chunks the caller may read, ranked, with provenance and scores."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api import examples
from api.deps import MetricsDep, PrincipalDep, RequestIdDep, ServiceDep
from api.errors import error_responses
from api.schemas import SearchBody, SearchResponse

router = APIRouter(prefix="/v1", tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search the chunks you may read",
    responses=examples.json_example(examples.SEARCH) | error_responses(400, 401, 404, 413, 422, 503),
)
async def search(
    body: SearchBody,
    service: ServiceDep,
    principal: PrincipalDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
) -> SearchResponse:
    """Hybrid retrieval (dense + BM25, fused: z-scores by default, RRF with MESHRAG_FUSION=rrf) over the products you may read. Filters only
    narrow; naming a product you cannot read is answered like a product that does not exist."""
    req = service.limits.search_request(
        principal, body.query, query_loc=("body", "query"), k=body.k, release=body.release,
        products=body.products, domains=body.domains, classifications=body.classifications,
        documents=body.documents, rerank=body.rerank, as_of=body.as_of)
    result = await run_in_threadpool(service.search, req)
    metrics.observe_search("search", result)
    return SearchResponse.of(request_id, result)
