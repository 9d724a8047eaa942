"""Catalog and release models of the /v1 API: what a caller is shown of a product (its discoverable facts,
or the full summary when it may read it) and of the releases that serve what it may read."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from indexing.releases import ProductEntry, Release
from knowledge.catalog import Freshness, product_details, product_facts, product_summary
from knowledge.model import Classification, KnowledgeProduct, Principal


# --------------------------------------------------------------------------------------------- catalog
class DiscoverableProduct(BaseModel):
    """A product's catalog facts (`knowledge.catalog.product_facts`): all that a caller who may discover
    but not read the product is shown, on every route. Never its content, documents, versions or counts."""

    access: Literal["discover"] = Field(
        "discover", description="`discover`: you may see these facts but not read the product's content "
                                "(ask `contact` for access); `read`: you may read it (a full summary)."
    )
    id: str
    domain: str
    name: str
    purpose: str
    owner: str
    owner_username: str
    team: str
    contact: str = Field(description="Whom to ask about the product or for read access: its owner and team.")
    classification: Classification
    freshness: Freshness
    match: int | None = Field(
        None, description="With `q`: how many of the query's words the metadata contains (for a product "
                          "you may only discover: its facts)."
    )

    @classmethod
    def of(cls, product: KnowledgeProduct, match: int | None = None) -> DiscoverableProduct:
        return cls(**product_facts(product), match=match)


class ProductSummary(DiscoverableProduct):
    """A product the caller may read: its facts and the rest of its contract summary."""

    access: Literal["read"] = "read"  # type: ignore[assignment]
    slug: str
    version: str
    status: str
    read_roles: list[str]
    pii_policy: str
    tags: list[str]
    documents: int
    retention_days: int
    validity: Literal["ok", "invalid"] = Field(
        "ok", description="`invalid` while the product's descriptor or contract fails validation: its last "
                          "valid version (these facts and its indexed content) keeps serving until fixed."
    )
    problem: str | None = Field(None, description="While invalid: each problem as `<file>: <field>: <what is "
                                                  "wrong> (fix: <how>)`.")

    @classmethod
    def of(cls, product: KnowledgeProduct, match: int | None = None) -> ProductSummary:
        return cls(**product_summary(product), match=match)


def catalog_entry(product: KnowledgeProduct, principal: Principal, match: int | None = None
                  ) -> ProductSummary | DiscoverableProduct:
    """What the principal is shown of a product it may discover: the summary if it may read it, else the
    facts alone. The one place that decides between the two shapes."""
    if principal.can_read(product):
        return ProductSummary.of(product, match)
    return DiscoverableProduct.of(product, match)


CatalogEntry = Annotated[ProductSummary | DiscoverableProduct, Field(discriminator="access")]


class CatalogResponse(BaseModel):
    count: int = Field(description="How many products matched: those you may read and those whose catalog "
                                   "facts you may only discover (`access`), nothing else.")
    products: list[CatalogEntry]


class Member(BaseModel):
    username: str
    name: str
    role: str


class ProductVersion(BaseModel):
    """The product as one release serves it."""

    release_id: str
    current: bool
    created_at: str
    product_version: str
    chunk_version: str
    embedding_version: str
    chunks: int
    documents: int


class ProductDetail(ProductSummary):
    usage: str
    limitations: str
    members: list[Member]
    document_ids: list[str]
    versions: list[ProductVersion] = Field(description="Releases that serve the product, newest first.")

    @classmethod
    def build(cls, product: KnowledgeProduct, versions: list[ProductVersion]) -> ProductDetail:
        details = product_details(product)
        # Server paths (root, sources, descriptor, contract files) are not the caller's business.
        for key in ("root", "sources", "descriptor", "contract"):
            details.pop(key, None)
        return cls(**details, versions=versions)


CatalogProduct = Annotated[ProductDetail | DiscoverableProduct, Field(discriminator="access")]


# -------------------------------------------------------------------------------------------- releases
class ReleaseProduct(BaseModel):
    product_id: str
    product_version: str
    domain: str
    classification: Classification
    chunk_version: str
    embedding_version: str
    chunks: int
    documents: int

    @classmethod
    def of(cls, e: ProductEntry) -> ReleaseProduct:
        return cls(
            product_id=e.product_id,
            product_version=e.product_version,
            domain=e.domain,
            classification=e.classification,  # type: ignore[arg-type]
            chunk_version=e.chunk_version,
            embedding_version=e.embedding_version,
            chunks=e.n_chunks,
            documents=len(e.documents),
        )


class ReleaseSummary(BaseModel):
    id: str
    created_at: str
    current: bool
    store: str
    model_id: str
    parent: str | None
    products: int = Field(description="Products of the release that you may read.")
    chunks: int = Field(description="Chunks of those products.")


class ReleaseList(BaseModel):
    current: str | None = Field(
        description="The release the `current` alias names (null before the first index)."
    )
    releases: list[ReleaseSummary] = Field(description="Oldest first.")


class ReleaseDetail(BaseModel):
    id: str
    created_at: str
    current: bool
    store: str
    model_id: str
    parent: str | None
    products: list[ReleaseProduct] = Field(description="Only the products you may read.")


def release_summary(release: Release, current: str | None, readable: list[ProductEntry]) -> ReleaseSummary:
    return ReleaseSummary(
        id=release.id,
        created_at=release.created_at,
        current=release.id == current,
        store=release.store,
        model_id=release.model_id,
        parent=release.parent,
        products=len(readable),
        chunks=sum(e.n_chunks for e in readable),
    )
