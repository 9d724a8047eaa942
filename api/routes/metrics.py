"""GET /metrics: Prometheus text exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import examples
from api.deps import MetricsDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": examples.METRICS}},
        }
    },
)
async def metrics(registry: MetricsDep) -> Response:
    """Request counts and latencies by route template and status; retrieval and answer timings;
    answers, abstentions, citations returned and dropped; 503s for an unavailable store."""
    return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)
