"""GET /v1/releases and /v1/releases/{release_id}: what is served, as far as you may read it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from api import examples
from api.catalog_schemas import ReleaseDetail, ReleaseList, ReleaseProduct, release_summary
from api.deps import PrincipalDep, ServiceDep
from api.errors import error_responses
from indexing.releases import ProductEntry, Release
from knowledge.model import Principal
from retrieval.access import readable_entries
from retrieval.service import MeshService

router = APIRouter(prefix="/v1", tags=["releases"])


def readable(service: MeshService, release: Release, principal: Principal) -> list[ProductEntry]:
    """The release's products the principal may read under the catalog's current contracts."""
    return list(readable_entries(release, service.context.catalog, principal).values())


def list_releases(service: MeshService, principal: Principal) -> ReleaseList:
    registry = service.context.releases
    current = registry.current_id()
    return ReleaseList(
        current=current,
        releases=[release_summary(r, current, readable(service, r, principal)) for r in registry.list()],
    )


def get_release(service: MeshService, principal: Principal, release_id: str) -> ReleaseDetail:
    registry = service.context.releases
    release = registry.get(release_id)
    current = registry.current_id()
    return ReleaseDetail(
        id=release.id,
        created_at=release.created_at,
        current=release.id == current,
        store=release.store,
        model_id=release.model_id,
        parent=release.parent,
        products=[ReleaseProduct.of(e) for e in readable(service, release, principal)],
    )


@router.get(
    "/releases",
    response_model=ReleaseList,
    summary="Every release, oldest first",
    responses=examples.json_example(examples.RELEASES) | error_responses(401),
)
async def releases(service: ServiceDep, principal: PrincipalDep) -> ReleaseList:
    """Each release with the number of its products (and chunks) that you may read."""
    return await run_in_threadpool(list_releases, service, principal)


@router.get(
    "/releases/{release_id}",
    response_model=ReleaseDetail,
    summary="One release",
    responses=examples.json_example(examples.RELEASE_DETAIL) | error_responses(401, 404, 422),
)
async def release(
    service: ServiceDep,
    principal: PrincipalDep,
    release_id: Annotated[
        str, Path(max_length=200, description="A release id, or `current`.", examples=["current"])
    ],
) -> ReleaseDetail:
    """The release's products that you may read, with their chunk and embedding versions."""
    return await run_in_threadpool(get_release, service, principal, release_id)
