"""GET /catalog (the products the visitor may read or discover, filtered and searched) and GET /catalog/{product_id}
(one product: contract, team, SLAs and their status, versions and what changed, documents, eval results).

Both pages are the JSON API's catalog functions rendered (`list_products`, `product_detail`), so they
list, count and refuse exactly as the API does: a product whose contract lets the visitor discover but not
read it shows its catalog facts alone and whom to ask; any other product the visitor may not read is a 404
page that reads like the one for a product that does not exist. The filter choices come from what the
visitor may see (domains and owners of the products it may read or discover, tags of those it may read),
so a select box never names anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.catalog_schemas import DiscoverableProduct, ProductDetail, ProductSummary, ProductVersion
from api.deps import ServiceDep
from api.routes.catalog import list_products, product_detail
from api.web.deps import VisitorDep
from api.web.releases import EntryChange
from api.web.render import WebRoute, page
from indexing.release_evals import ReleaseEval
from indexing.releases import ProductEntry
from knowledge.catalog import Freshness, FreshnessStatus
from knowledge.model import CLASSIFICATIONS, Classification, Principal
from retrieval.service import MeshService

router = APIRouter(route_class=WebRoute, include_in_schema=False)

FRESHNESS_STATES: tuple[FreshnessStatus, ...] = ("fresh", "stale", "unknown")
# Per-product metrics of `meshrag eval` shown on a product page: (report key, label, how to read it).
EVAL_METRICS = (
    ("recall@5", "Recall@5", "share of the questions' source documents found in the top 5; higher is better"),
    ("ndcg@10", "nDCG@10", "ranking quality of the top 10; higher is better"),
    ("answer_correctness", "Answer correctness", "share of answers that state the expected fact; higher is better"),
    ("false_abstention_rate", "False abstention", "share of answerable questions left unanswered; lower is better"),
    ("access_leaks", "Leaks", "chunks of this product shown to a principal who may not read it; must be 0"),
)
PII_POLICIES = {
    "redact": "personal data is replaced by typed placeholders before indexing",
    "reject": "a document with personal data is refused at indexing (the product keeps its last version)",
    "allow": "personal data is indexed as written; the contract allows it",
}
EVAL_COMMAND = "meshrag eval"


class CatalogFilters(BaseModel):
    """The catalog form's fields; a blank field (an "any" choice) filters nothing."""

    model_config = ConfigDict(extra="ignore")

    q: str | None = Field(None, max_length=500)
    domain: str | None = Field(None, max_length=200)
    owner: str | None = Field(None, max_length=200)
    classification: Classification | None = None
    freshness: FreshnessStatus | None = None
    tag: str | None = Field(None, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_any(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()
                    if not (isinstance(v, str) and not v.strip())}
        return data

    @property
    def active(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


def freshness_words(f: Freshness) -> str:
    """The freshness status in words, e.g. 'stale: last updated 2026-05-29 against a 30-day SLA, 190 days ago'."""
    sla = f"{f.sla_days:g}-day SLA"
    if f.status == "unknown" or f.last_update is None or f.age_days is None:
        return f"unknown: no last update is declared and no source file was found ({sla})"
    age = int(f.age_days)
    ago = "today" if age == 0 else ("1 day ago" if age == 1 else f"{age} days ago")
    when = f.last_update.date().isoformat()
    if f.status == "stale":
        return f"stale: last updated {when} against a {sla}, {ago}"
    return f"fresh: last updated {when}, {ago}, within its {sla}"


def duration_words(days: int) -> str:
    """'7 years' for 2555 days (contracts state retention in years), else '90 days'."""
    if days and days % 365 == 0:
        years = days // 365
        return f"{years} year{'s' if years != 1 else ''}"
    return f"{days} day{'s' if days != 1 else ''}"


@dataclass(frozen=True)
class CatalogRow:
    product: ProductSummary | DiscoverableProduct  # access "discover": the catalog facts alone
    freshness: str


@dataclass(frozen=True)
class FilterChoices:
    """What the filter selects offer: domains and owners (catalog facts) of the products the visitor may
    read or discover, tags of the products it may read (a tag is not a fact)."""

    domains: list[str]
    owners: list[tuple[str, str]]  # (username, "Name (team)")
    tags: list[str]
    classifications: tuple[str, ...] = CLASSIFICATIONS
    freshness: tuple[str, ...] = FRESHNESS_STATES


@dataclass(frozen=True)
class CatalogCounts:
    readable: int
    discoverable: int  # products whose catalog facts alone the visitor may see

    @property
    def total(self) -> int:
        return self.readable + self.discoverable


def catalog_view(service: MeshService, principal: Principal, filters: CatalogFilters
                 ) -> tuple[list[CatalogRow], CatalogCounts, FilterChoices]:
    """(the matching rows, how many products the visitor may read and may only discover, the filter choices)."""
    found = list_products(service, principal, filters.q, filters.domain, filters.owner, filters.tag,
                          filters.classification)
    rows = [CatalogRow(p, freshness_words(p.freshness)) for p in found.products
            if filters.freshness is None or p.freshness.status == filters.freshness]
    catalog = service.context.catalog
    readable, visible = catalog.readable(principal), catalog.discoverable(principal)
    owners = {p.owner.username: f"{p.owner.name} ({p.team})" for p in visible}
    choices = FilterChoices(domains=sorted({p.domain for p in visible}),
                            owners=sorted(owners.items(), key=lambda o: o[1]),
                            tags=sorted({t for p in readable for t in p.tags}))
    return rows, CatalogCounts(len(readable), len(visible) - len(readable)), choices


@dataclass(frozen=True)
class VersionRow:
    """One release serving the product, and what changed since the release before it that served it."""

    version: ProductVersion
    change: EntryChange | None  # None for the oldest


@dataclass(frozen=True)
class DocumentRow:
    id: str
    served: bool  # in the current release (False: added to the sources since)


@dataclass(frozen=True)
class ProductView:
    detail: ProductDetail
    freshness: str
    sla_days: str
    retention: str
    pii: str
    versions: list[VersionRow]
    documents: list[DocumentRow]
    current_release: str | None
    served_now: bool
    evaluation: ReleaseEval | None
    metrics: dict[str, Any] | None  # this product's row of the current release's evaluation

    @property
    def eval_sets(self) -> str:
        """The evaluation's golden sets by name (a set given as a path: its file name, not a server path)."""
        return ", ".join(PurePath(s).name for s in self.evaluation.sets) if self.evaluation else ""


def product_view(service: MeshService, principal: Principal, product_id: str) -> ProductView | DiscoverableProduct:
    """The product page's view; for a product the visitor may only discover, its catalog facts alone."""
    detail = product_detail(service, principal, product_id)  # neither readable nor discoverable: 404
    if not isinstance(detail, ProductDetail):
        return detail
    registry = service.context.releases
    entries: dict[str, ProductEntry] = {r.id: e for r in registry.list()
                                        if (e := r.products.get(detail.id)) is not None}
    versions: list[VersionRow] = []
    oldest_first = list(reversed(detail.versions))
    for i, version in enumerate(oldest_first):
        before = entries[oldest_first[i - 1].release_id] if i else None
        change = EntryChange.between(detail.id, before, entries[version.release_id]) if i else None
        versions.append(VersionRow(version, change))
    versions.reverse()  # newest first, as the API lists them
    current = registry.current_id()
    served = entries.get(current) if current else None
    documents = [DocumentRow(d, served is not None and d in served.documents) for d in detail.document_ids]
    evaluation = service.context.evals.get(current) if current else None
    metrics = evaluation.product(detail.id) if evaluation is not None else None
    return ProductView(detail=detail, freshness=freshness_words(detail.freshness),
                       sla_days=f"{detail.freshness.sla_days:g}", retention=duration_words(detail.retention_days),
                       pii=PII_POLICIES.get(detail.pii_policy, detail.pii_policy), versions=versions,
                       documents=documents, current_release=current, served_now=served is not None,
                       evaluation=evaluation, metrics=metrics)


@router.get("/catalog")
async def catalog_page(request: Request, visitor: VisitorDep, service: ServiceDep,
                       filters: Annotated[CatalogFilters, Query()]) -> Response:
    rows, counts, choices = await run_in_threadpool(catalog_view, service, visitor.principal, filters)
    return page(request, "catalog.html", visitor, nav="catalog", rows=rows, counts=counts, choices=choices,
                filters=filters)


@router.get("/catalog/{product_id}")
async def product_page(request: Request, visitor: VisitorDep, service: ServiceDep,
                       product_id: Annotated[str, Path(max_length=200)]) -> Response:
    view = await run_in_threadpool(product_view, service, visitor.principal, product_id)
    if not isinstance(view, ProductView):
        return page(request, "product_facts.html", visitor, nav="catalog", facts=view,
                    freshness=freshness_words(view.freshness))
    return page(request, "product.html", visitor, nav="catalog", view=view, eval_metrics=EVAL_METRICS,
                eval_command=EVAL_COMMAND)
