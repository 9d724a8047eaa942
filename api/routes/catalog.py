"""GET /v1/catalog and /v1/catalog/{product_id}: the products you may read, their contracts,
owners, freshness, and the releases that serve them; and the catalog facts alone of products whose
contracts make them discoverable to you."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from api import examples
from api.catalog_schemas import (
    CatalogProduct,
    CatalogResponse,
    Classification,
    DiscoverableProduct,
    ProductDetail,
    ProductVersion,
    catalog_entry,
)
from api.deps import PrincipalDep, ServiceDep
from api.errors import error_responses
from knowledge.catalog_search import search_catalog
from knowledge.model import Principal
from retrieval.service import MeshService

router = APIRouter(prefix="/v1", tags=["catalog"])


def list_products(
    service: MeshService,
    principal: Principal,
    q: str | None,
    domain: str | None,
    owner: str | None,
    tag: str | None,
    classification: str | None,
) -> CatalogResponse:
    products = service.context.catalog.filter(
        domain=domain, owner=owner, tag=tag, classification=classification, principal=principal,
        discoverable=True,
    )
    if not q:
        rows = [catalog_entry(p, principal) for p in products]
    else:
        rows = [catalog_entry(p, principal, match=n) for n, p in search_catalog(products, q, principal)]
    return CatalogResponse(count=len(rows), products=rows)


@router.get(
    "/catalog",
    response_model=CatalogResponse,
    summary="List and search the products you may read or discover",
    responses=examples.json_example(examples.CATALOG) | error_responses(401, 422),
)
async def catalog(
    service: ServiceDep,
    principal: PrincipalDep,
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description="Words to look for in the products' metadata "
            "(id, title, purpose, usage, limitations, tags, owner, team; of a product you may only "
            "discover, its catalog facts); ranked by how many match.",
            examples=["net revenue owner"],
        ),
    ] = None,
    domain: Annotated[
        str | None, Query(max_length=200, description="Only this domain.", examples=["platform"])
    ] = None,
    owner: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Owner username, owner name or team (case-insensitive).",
            examples=["Data Platform"],
        ),
    ] = None,
    tag: Annotated[
        str | None, Query(max_length=200, description="Only products you may read that have this tag.")
    ] = None,
    classification: Annotated[Classification | None, Query(description="Only this classification.")] = None,
) -> CatalogResponse:
    """Products you may read (`access: read`, a full summary) and products whose contracts let you see
    their catalog facts only (`access: discover`: id, title, purpose, owner, team, contact, classification,
    freshness; matched by `q` and the filters on those facts alone, so never by `tag`). Nothing else is
    listed or counted."""
    return await run_in_threadpool(list_products, service, principal, q, domain, owner, tag, classification)


def product_detail(service: MeshService, principal: Principal, product_id: str
                   ) -> ProductDetail | DiscoverableProduct:
    # neither readable nor discoverable == missing; discoverable only: the facts and nothing else
    product = service.context.catalog.discover(product_id, principal)
    if not principal.can_read(product):
        return DiscoverableProduct.of(product)
    registry = service.context.releases
    current = registry.current_id()
    versions = [
        ProductVersion(
            release_id=r.id,
            current=r.id == current,
            created_at=r.created_at,
            product_version=e.product_version,
            chunk_version=e.chunk_version,
            embedding_version=e.embedding_version,
            chunks=e.n_chunks,
            documents=len(e.documents),
        )
        for r in reversed(registry.list())
        if (e := r.products.get(product.id)) is not None
    ]
    return ProductDetail.build(product, versions)


@router.get(
    "/catalog/{product_id}",
    response_model=CatalogProduct,
    summary="One product you may read or discover",
    responses=examples.json_example(examples.PRODUCT_DETAIL) | error_responses(401, 404, 422),
)
async def product(
    service: ServiceDep,
    principal: PrincipalDep,
    product_id: Annotated[
        str, Path(max_length=200, description="`<domain>.<name>`", examples=[examples.PRODUCT])
    ],
) -> ProductDetail | DiscoverableProduct:
    """Contract summary, owner and team, freshness against the SLA, documents, and the releases that
    serve the product. A product whose contract lets you discover but not read it: its catalog facts
    only (`access: discover`). Any other product you may not read is answered exactly like one that does
    not exist."""
    return await run_in_threadpool(product_detail, service, principal, product_id)
