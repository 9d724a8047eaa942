"""Which products of a release a principal may read, after the request's filters.

    readable = release products ∩ catalog products the principal can read ∩ request filters

The catalog's *current* contracts decide (a role removed from a contract takes effect without
re-indexing; a product no longer in the catalog is not readable even if a release still holds it).
Filters only narrow. A product filter naming something outside the readable set is answered exactly
like a product that does not exist, listing only readable products, so restricted ids are not revealed.
"""

from __future__ import annotations

from collections.abc import Iterable

from indexing.releases import ProductEntry, Release
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError, ProductNotFound
from knowledge.model import CLASSIFICATIONS, Principal


def readable_entries(release: Release, catalog: Catalog, principal: Principal, *,
                     products: Iterable[str] | None = None, domains: Iterable[str] | None = None,
                     classifications: Iterable[str] | None = None) -> dict[str, ProductEntry]:
    """Release entries (by product id, sorted) the principal may read and the filters select.

    A filter of None does not restrict; an empty filter selects nothing. Raises ProductNotFound when
    `products` names a product that is not readable here, ConfigError for an unknown classification."""
    allowed = {pid: entry for pid, entry in sorted(release.products.items())
               if (product := catalog.products.get(pid)) is not None and principal.can_read(product)}
    if products is not None:
        wanted = set(products)
        unknown = sorted(wanted - set(allowed))
        if unknown:
            listed = ", ".join(repr(p) for p in unknown)
            raise ProductNotFound(f"no product {listed} in release {release.id}; products you can read: "
                                  f"{', '.join(allowed) or 'none'}")
        allowed = {pid: e for pid, e in allowed.items() if pid in wanted}
    if domains is not None:
        wanted = set(domains)
        allowed = {pid: e for pid, e in allowed.items() if catalog.products[pid].domain in wanted}
    if classifications is not None:
        wanted = set(classifications)
        bad = sorted(wanted - set(CLASSIFICATIONS))
        if bad:
            raise ConfigError(f"unknown classification(s) {', '.join(bad)}; use {', '.join(CLASSIFICATIONS)}")
        allowed = {pid: e for pid, e in allowed.items() if catalog.products[pid].classification in wanted}
    return allowed


def readable_product_ids(release: Release, catalog: Catalog, principal: Principal) -> tuple[str, ...]:
    """Every product of the release the principal may read (no filters), sorted."""
    return tuple(readable_entries(release, catalog, principal))
