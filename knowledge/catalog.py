"""The catalog: every product found under one or more mesh roots, valid or not, with freshness.

Governance never fails silently: a product whose files stop validating keeps its last valid version
in a reloaded catalog (`Catalog.load(..., previous=...)`), marked with the problem, and every invalid
folder is listed by `invalid_products()` for the operator (`log_problem_changes`) and counted by /readyz.

In shared mode (store = pgvector) a server does not read the mesh roots: each `meshrag index` run publishes
the product files to PostgreSQL as a catalog snapshot, which servers lay out under their data directory and
load from (indexing/shared_catalog.py). A contract change therefore reaches the replicas by running
`meshrag index` (for that product, or all); within a second of that run they serve it, with the same
rule as here: an invalid new contract keeps the last valid version serving."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from knowledge.contracts import CONTRACT_FILE, DESCRIPTOR_FILE, Problem, load_product
from knowledge.errors import ContractError, ProductNotFound
from knowledge.model import KnowledgeProduct, Principal

FreshnessStatus = Literal["fresh", "stale", "unknown"]
# (path, (inode, mtime ns, size) or None if missing) of every folder, descriptor and contract under the roots
MeshStamp = tuple[tuple[str, tuple[int, int, int] | None], ...]
PRODUCT_FILES = frozenset({DESCRIPTOR_FILE, CONTRACT_FILE})

log = logging.getLogger(__name__)


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
    return _scan(Path(root))[1]


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _scan(root: Path) -> tuple[MeshStamp, list[Path]]:
    """One walk of a mesh root: the stamp of every folder and of every descriptor and contract in them,
    and the folders that hold one. A folder is stamped before it is listed and a file before it is read,
    so a change made during the walk or the load shows in the next `mesh_unchanged` check."""
    if not root.is_dir():
        raise ContractError(f"mesh root {root} is not a directory; pass an existing folder of products")
    stamps: list[tuple[str, tuple[int, int, int] | None]] = []
    folders: set[Path] = set()
    pending = [str(root)]
    while pending:
        folder = pending.pop()
        stamps.append((folder, _stat(folder)))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.name in PRODUCT_FILES:
                stamps.append((entry.path, _stat(entry.path)))
                folders.add(Path(folder).resolve())
    return tuple(stamps), sorted(folders)


def mesh_unchanged(stamp: MeshStamp) -> bool:
    """True while no descriptor or contract recorded in `stamp` changed and no folder gained or lost an
    entry (a file added, removed or renamed changes its folder's stamp). One stat per folder and file."""
    return all(_stat(path) == seen for path, seen in stamp)


def product_id_of(folder: Path) -> str:
    """The id a product folder claims: `<domain folder>.<product folder>`."""
    return f"{folder.parent.name}.{folder.name}"


def problem_text(folder: Path, problems: Iterable[Problem]) -> str:
    """Every problem as `<file>: <field>: <what is wrong> (fix: <how>)`, file names relative to the
    product folder: what a reader of the product is told (server paths are not the caller's business)."""
    prefix = f"{folder}{os.sep}"
    parts = []
    for pr in problems:
        file = pr.file.removeprefix(prefix) if pr.file.startswith(prefix) else Path(pr.file).name
        parts.append(f"{file}: {pr.field}: {pr.message.replace(prefix, '')} (fix: {pr.hint})")
    return "; ".join(parts)


@dataclass(frozen=True)
class InvalidProduct:
    """A product folder whose files fail validation, and the last valid version still serving (if any)."""

    product_id: str
    folder: Path
    problems: tuple[Problem, ...]
    serving: KnowledgeProduct | None


@dataclass
class Catalog:
    """Products loaded from mesh roots. `invalid` keeps the problems of folders that failed validation;
    `stamp` tells `mesh_unchanged` whether a reload would see other files."""

    roots: tuple[Path, ...]
    products: dict[str, KnowledgeProduct] = field(default_factory=dict)
    invalid: dict[Path, list[Problem]] = field(default_factory=dict)
    stamp: MeshStamp = ()

    @classmethod
    def load(cls, roots: Iterable[Path], previous: Catalog | None = None) -> Catalog:
        """Every product under `roots`. With `previous` (the catalog this one replaces), a product whose
        files no longer validate keeps its last valid version from `previous`, with `problem` set, so it
        keeps serving until its files are fixed; a product never valid in `previous` is left out."""
        roots = tuple(Path(r).resolve() for r in roots)
        catalog = cls(roots=roots)
        scans = [_scan(root) for root in roots]  # every stamp is taken before any file is read
        catalog.stamp = tuple(s for stamp, _ in scans for s in stamp)
        for _, folders in scans:
            for folder in folders:
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
        if previous is not None:
            for folder, problems in catalog.invalid.items():
                kept = previous.products.get(product_id_of(folder))
                if kept is not None and kept.root == folder and kept.id not in catalog.products:
                    catalog.products[kept.id] = replace(kept, problem=problem_text(folder, problems))
        return catalog

    def invalid_products(self) -> list[InvalidProduct]:
        """Every folder that failed validation, by folder, with the last valid version it still serves."""
        out = []
        for folder, problems in sorted(self.invalid.items()):
            pid = product_id_of(folder)
            kept = self.products.get(pid)
            serving = kept if kept is not None and kept.root == folder and kept.problem is not None else None
            out.append(InvalidProduct(pid, folder, tuple(problems), serving))
        return out

    def __iter__(self):
        return iter(sorted(self.products.values(), key=lambda p: p.id))

    def __len__(self) -> int:
        return len(self.products)

    def get(self, product_id: str, principal: Principal | None = None) -> KnowledgeProduct:
        """The product, if it exists and (when a principal is given) the principal may read it. An
        unreadable product is reported exactly like a missing one, so its existence is not revealed."""
        product = self.products.get(product_id)
        if product is None or (principal is not None and not principal.can_read(product)):
            raise self._not_found(product_id, principal)
        return product

    def discover(self, product_id: str, principal: Principal) -> KnowledgeProduct:
        """The product, if the principal may at least discover it; the caller shows nothing of it but
        `product_facts` unless `principal.can_read` it. A product neither readable nor discoverable is
        reported exactly like a missing one (the same error as `get`)."""
        product = self.products.get(product_id)
        if product is None or not principal.can_discover(product):
            raise self._not_found(product_id, principal)
        return product

    def _not_found(self, product_id: str, principal: Principal | None) -> ProductNotFound:
        known = [p.id for p in self.readable(principal)] if principal else sorted(self.products)
        return ProductNotFound(f"no product {product_id!r}; known products: {', '.join(known) or 'none'}")

    def readable(self, principal: Principal | None) -> list[KnowledgeProduct]:
        return [p for p in self if principal is None or principal.can_read(p)]

    def discoverable(self, principal: Principal | None) -> list[KnowledgeProduct]:
        """Products whose catalog facts the principal may see: the readable ones and those whose contracts
        make them discoverable to it (`discoverableBy`)."""
        return [p for p in self if principal is None or principal.can_discover(p)]

    def filter(self, *, domain: str | None = None, owner: str | None = None, tag: str | None = None,
               classification: str | None = None, principal: Principal | None = None,
               discoverable: bool = False) -> list[KnowledgeProduct]:
        """Products matching every given criterion; `owner` matches username, name or team (case-insensitive).
        With `discoverable`, products the principal may only discover are candidates too, matched on their
        catalog facts alone: tags are not facts, so a tag filter never selects them."""
        out = []
        for p in (self.discoverable(principal) if discoverable else self.readable(principal)):
            if domain and p.domain != domain:
                continue
            if classification and p.classification != classification:
                continue
            if tag and (tag.lower() not in {t.lower() for t in p.tags}
                        or (principal is not None and not principal.can_read(p))):
                continue
            if owner and owner.lower() not in {p.owner.username.lower(), p.owner.name.lower(), p.team.lower()}:
                continue
            out.append(p)
        return out


def contact_of(product: KnowledgeProduct) -> str:
    """Whom to ask about a product (its content, or read access): its owner and team."""
    return f"{product.owner.name} ({product.owner.username}) of {product.team}"


def product_facts(product: KnowledgeProduct, now: datetime | None = None) -> dict[str, Any]:
    """A product's catalog facts: id, title, purpose, owner, team, contact, classification, freshness. The
    whole of what a principal who may discover but not read the product is shown, on every route; never
    its content, documents, versions or counts."""
    return {
        "id": product.id,
        "domain": product.domain,
        "name": product.title,
        "purpose": product.purpose,
        "owner": product.owner.name,
        "owner_username": product.owner.username,
        "team": product.team,
        "contact": contact_of(product),
        "classification": product.classification,
        "freshness": freshness(product, now).as_dict(),
    }


def product_summary(product: KnowledgeProduct, now: datetime | None = None) -> dict[str, Any]:
    """The catalog card of a product a principal may read, as plain data (what `products list --json`
    prints): its facts and the rest of its contract summary."""
    return product_facts(product, now) | {
        "slug": product.name,
        "version": product.version,
        "status": product.status,
        "read_roles": list(product.read_roles),
        "pii_policy": product.pii_policy,
        "tags": list(product.tags),
        "documents": len(product.documents()),
        "retention_days": round(product.retention_sla / timedelta(days=1)),
        "validity": "invalid" if product.problem else "ok",
        "problem": product.problem,
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


def log_problem_changes(before: Catalog | None, after: Catalog) -> None:
    """The operator's record of governance failures: one WARNING per folder whose problems are new since
    `before` (every problem when None), naming product, files and fixes; one INFO per folder that was
    invalid in `before` and no longer is. Readers of a product see its problem in the catalog instead."""
    seen = {item.folder: item.problems for item in before.invalid_products()} if before is not None else {}
    now = after.invalid_products()
    for item in now:
        if seen.get(item.folder) == item.problems:
            continue
        details = "; ".join(str(pr) for pr in item.problems)
        if item.serving is not None:
            log.warning("product %s is invalid; its last valid version %s keeps serving until the files are "
                        "fixed: %s", item.product_id, item.serving.version, details)
        else:
            log.warning("product %s is invalid and is not served until the files are fixed: %s",
                        item.product_id, details)
    for folder in sorted(seen.keys() - {item.folder for item in now}):
        product = after.products.get(product_id_of(folder))
        if product is not None and product.root == folder:
            log.info("product %s is valid again; serving version %s", product.id, product.version)
        else:
            log.info("invalid product folder %s is gone from the mesh", folder)
