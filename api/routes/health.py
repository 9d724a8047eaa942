"""GET /healthz (the process is up) and GET /readyz (it can answer: warmed, store reachable, a
current release; invalid product contracts are counted as problems, without making it unready)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import examples
from api.deps import ServiceDep
from api.schemas import AnswerVectors, Health, Readiness
from knowledge.errors import MeshragError
from retrieval.service import MeshService

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness",
    responses=examples.json_example(examples.HEALTH, "The process is up."),
)
async def healthz() -> Health:
    return Health(status="ok")


def readiness(service: MeshService, warm: bool, answer_vectors: dict[str, Any] | None = None) -> Readiness:
    problems: list[str] = [] if warm else ["still warming up"]
    store_ok = False
    current = None
    try:
        current = service.context.releases.current_id()  # shared mode: a query, so PostgreSQL may be down
        if current is None:
            problems.append("no release is current yet; run `meshrag index`")
        collections = set(service.context.store.collections())
        store_ok = True
        if current is not None:
            missing = [c for c in service.context.releases.get(current).collections if c not in collections]
            if missing:
                store_ok = False
                problems.append(f"the store lacks {len(missing)} collection(s) of the current release")
    except MeshragError as exc:
        problems.append(f"the store is unavailable ({type(exc).__name__})")
    # Answers wait for nothing once the answer passages are embedded: until then the process answers
    # (slowly) but does not call itself ready, so a load balancer sends it no traffic yet.
    vectors_pending = bool(answer_vectors) and answer_vectors.get("status") == "running"
    if vectors_pending:
        problems.append(f"embedding answer passages ({answer_vectors.get('done', 0)}/{answer_vectors.get('total')})")
    invalid = _invalid_products(service, problems)
    return Readiness(
        status="ready" if warm and store_ok and current and not vectors_pending else "not_ready",
        warm=warm,
        store=store_ok,
        current_release=current,
        problems=problems,
        invalid_products=invalid,
        answer_vectors=AnswerVectors.model_validate(answer_vectors) if answer_vectors else None,
        query_encoder=_query_encoder(service),
    )


def _invalid_products(service: MeshService, problems: list[str]) -> int:
    """Counts only: /readyz is unauthenticated and a product id may reveal a product the caller cannot
    read, so the ids, files and fixes are in the server log (and in the catalog, for the product's readers).
    An invalid product keeps its last valid version serving, so the service stays ready."""
    try:
        invalid = service.context.catalog.invalid_products()  # a reload here logs what is new
    except RuntimeError:  # not warmed up yet
        return 0
    except MeshragError as exc:
        problems.append(f"the product catalog cannot be reloaded ({type(exc).__name__})")
        return 0
    if invalid:
        n, serving = len(invalid), sum(1 for item in invalid if item.serving is not None)
        problems.append(f"{n} invalid product contract{'s' if n != 1 else ''}: {serving} serving the last "
                        f"valid version, {n - serving} not served (details in the server log)")
    return len(invalid)


def _query_encoder(service: MeshService) -> dict[str, Any] | None:
    try:
        info = getattr(service.context.embedder, "query_info", None)
    except RuntimeError:  # not warmed up yet
        return None
    if not callable(info):
        return None
    details = info().as_dict()
    details.pop("onnx_path", None)  # no server file paths to unauthenticated callers
    return details


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={
        **examples.json_example(examples.READY, "Ready to answer."),
        503: {"model": Readiness, "description": "Not ready; `problems` says why."},
    },
)
async def readyz(request: Request, service: ServiceDep) -> Readiness | JSONResponse:
    warmer = getattr(request.app.state, "answer_vectors", None)
    state = await run_in_threadpool(readiness, service, bool(getattr(request.app.state, "warm", False)),
                                    dict(warmer.state) if warmer is not None else None)
    if state.status != "ready":
        return JSONResponse(state.model_dump(), status_code=503, headers={"Retry-After": "5"})
    return state
