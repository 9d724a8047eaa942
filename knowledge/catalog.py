"""The catalog: every product found under one or more mesh roots, valid or not, with freshness."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from knowledge.contracts import CONTRACT_FILE, DESCRIPTOR_FILE, Problem, load_product
from knowledge.errors import ContractError, ProductNotFound
from knowledge.model import KnowledgeProduct, Principal

FreshnessStatus = Literal["fresh", "stale", "unknown"]


@dataclass(frozen=True)
class Freshness:
    """How current a product is against its freshness SLA."""

    status: FreshnessStatus
    last_update: datetime | None
    source: Literal["declared", "sources", "none"]
    sla_days: float
    age_days: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "last_update": self.last_update.isoformat() if self.last_update else None,
            "source": self.source,
            "sla_days": round(self.sla_days, 3),
            "age_days": round(self.age_days, 2) if self.age_days is not None else None,
        }


def newest_source_update(product: KnowledgeProduct) -> datetime | None:
    """The newest modification time of the product's source files (None without sources)."""
    docs = product.documents()
    return datetime.fromtimestamp(max(p.stat().st_mtime for p in docs), UTC) if docs else None


def freshness(product: KnowledgeProduct, now: datetime | None = None, *,
              source_update: Callable[[KnowledgeProduct], datetime | None] = newest_source_update) -> Freshness:
    """Declared last update when the contract has one (file times reset on a fresh clone), else the
    newest source modification time (`source_update`, which a server may cache); stale when older
    than the freshness SLA."""
    now = now or datetime.now(UTC)
    sla_days = product.freshness_sla / timedelta(days=1)
    if product.declared_last_update is not None:
        last, source = product.declared_last_update, "declared"
    else:
        newest = source_update(product)
        if newest is None:
            return Freshness("unknown", None, "none", sla_days, None)
        last, source = newest, "sources"
    age = now - last
    status: FreshnessStatus = "stale" if age > product.freshness_sla else "fresh"
    return Freshness(status, last, source, sla_days, age / timedelta(days=1))  # type: ignore[arg-type]


def find_product_folders(root: Path) -> list[Path]:
    """Folders under `root` that hold a descriptor or a contract (a product, valid or not)."""
    root = Path(root)
    if not root.is_dir():
        raise ContractError(f"mesh root {root} is not a directory; pass an existing folder of products")
    found = {p.parent.resolve() for name in (DESCRIPTOR_FILE, CONTRACT_FILE) for p in root.rglob(name)}
    return sorted(found)


@dataclass
class Catalog:
    """Products loaded from mesh roots. `invalid` keeps the problems of folders that failed validation."""

    roots: tuple[Path, ...]
    products: dict[str, KnowledgeProduct] = field(default_factory=dict)
    invalid: dict[Path, list[Problem]] = field(default_factory=dict)

    @classmethod
    def load(cls, roots: Iterable[Path]) -> Catalog:
        roots = tuple(Path(r).resolve() for r in roots)
        catalog = cls(roots=roots)
        for root in roots:
            for folder in find_product_folders(root):
                product, problems = load_product(folder)
                if product is None:
                    catalog.invalid[folder] = problems
                elif product.id in catalog.products:
                    other = catalog.products[product.id].root
                    catalog.invalid[folder] = [Problem(str(folder / DESCRIPTOR_FILE), "id",
                                                       f"product id {product.id!r} is already used by {other}",
                                                       "rename the domain or product folder")]
                else:
                    catalog.products[product.id] = product
        return catalog

    def __iter__(self):
        return iter(sorted(self.products.values(), key=lambda p: p.id))

    def __len__(self) -> int:
        return len(self.products)

    def get(self, product_id: str, principal: Principal | None = None) -> KnowledgeProduct:
        """The product, if it exists and (when a principal is given) the principal may read it. An
        unreadable product is reported exactly like a missing one, so its existence is not revealed."""
        product = self.products.get(product_id)
        if product is None or (principal is not None and not principal.can_read(product)):
            known = [p.id for p in self.readable(principal)] if principal else sorted(self.products)
            raise ProductNotFound(f"no product {product_id!r}; known products: {', '.join(known) or 'none'}")
        return product

    def readable(self, principal: Principal | None) -> list[KnowledgeProduct]:
        return [p for p in self if principal is None or principal.can_read(p)]

    def filter(self, *, domain: str | None = None, owner: str | None = None, tag: str | None = None,
               classification: str | None = None, principal: Principal | None = None) -> list[KnowledgeProduct]:
        """Products matching every given criterion; `owner` matches username, name or team (case-insensitive)."""
        out = []
        for p in self.readable(principal):
            if domain and p.domain != domain:
                continue
            if classification and p.classification != classification:
                continue
            if tag and tag.lower() not in {t.lower() for t in p.tags}:
                continue
            if owner and owner.lower() not in {p.owner.username.lower(), p.owner.name.lower(), p.team.lower()}:
                continue
            out.append(p)
        return out


def product_summary(product: KnowledgeProduct, now: datetime | None = None) -> dict[str, Any]:
    """The catalog card of a product as plain data (what `products list --json` prints)."""
    return {
        "id": product.id,
        "domain": product.domain,
        "name": product.title,
        "slug": product.name,
        "version": product.version,
        "status": product.status,
        "owner": product.owner.name,
        "owner_username": product.owner.username,
        "team": product.team,
        "classification": product.classification,
        "read_roles": list(product.read_roles),
        "pii_policy": product.pii_policy,
        "tags": list(product.tags),
        "documents": len(product.documents()),
        "freshness": freshness(product, now).as_dict(),
        "retention_days": round(product.retention_sla / timedelta(days=1)),
        "purpose": product.purpose,
    }


def product_details(product: KnowledgeProduct, now: datetime | None = None) -> dict[str, Any]:
    """The summary plus contract details and the document list (what `products show --json` prints)."""
    out = product_summary(product, now)
    out.update({
        "usage": product.usage,
        "limitations": product.limitations,
        "members": [{"username": m.username, "name": m.name, "role": m.role} for m in product.members],
        "root": str(product.root),
        "sources": [str(s) for s in product.source_paths],
        "document_ids": [product.document_id(p) for p in product.documents()],
        "descriptor": str(product.descriptor_path),
        "contract": str(product.contract_path),
    })
    return out
