"""Which products of a release a principal may read, after the request's filters.

    readable = release products ∩ catalog products the principal can read ∩ request filters

The catalog's *current* contracts decide (a role removed from a contract takes effect without
re-indexing; a product no longer in the catalog is not readable even if a release still holds it).
Filters only narrow. A product filter naming something outside the readable set is answered exactly
like a product that does not exist, listing only readable products, so restricted ids are not revealed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from indexing.releases import ProductEntry, Release
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError, ProductNotFound
from knowledge.model import CLASSIFICATIONS, Principal
from retrieval.versions import ProductVersion, resolve


def readable_entries(release: Release, catalog: Catalog, principal: Principal, *,
                     products: Iterable[str] | None = None, domains: Iterable[str] | None = None,
                     classifications: Iterable[str] | None = None,
                     versions: Mapping[str, Sequence[ProductVersion]] | None = None,
                     as_of: date | None = None) -> dict[str, ProductEntry]:
    """Release entries the principal may read and the filters select, sorted, keyed by product id (the
    current version) or `<id>@<version>` (another version: pinned in `products`, or current on `as_of`;
    `versions` lists each product's versions, retrieval/versions.py).

    A filter of None does not restrict; an empty filter selects nothing. Raises ProductNotFound when
    `products` names a product that is not readable here (a version of it too: the same error), or a
    version the readable product does not have (naming those it has); ConfigError for an unknown
    classification."""
    allowed = {pid: entry for pid, entry in sorted(release.products.items())
               if (product := catalog.products.get(pid)) is not None and principal.can_read(product)}
    wanted: list[tuple[str, str | None]] | None = None
    if products is not None:
        wanted = [(pid, version or None) for pid, _, version in (p.partition("@") for p in products)]
        unknown = sorted({pid for pid, _ in wanted} - set(allowed))
        if unknown:
            listed = ", ".join(repr(p) for p in unknown)
            raise ProductNotFound(f"no product {listed} in release {release.id}; products you can read: "
                                  f"{', '.join(allowed) or 'none'}")
    selected: dict[str, ProductEntry] = {}
    for pid, version in wanted if wanted is not None else [(pid, None) for pid in allowed]:
        if version is None and as_of is None:
            selected[pid] = allowed[pid]
            continue
        if versions is None:
            raise ValueError("a version pin or as_of needs the release's product versions")  # a caller's bug
        pv = resolve(pid, version, versions, as_of)
        selected[pid if pv is None else pv.key] = allowed[pid] if pv is None else pv.entry
    if domains is not None:
        wanted_domains = set(domains)
        selected = {k: e for k, e in selected.items() if catalog.products[e.product_id].domain in wanted_domains}
    if classifications is not None:
        wanted_classes = set(classifications)
        bad = sorted(wanted_classes - set(CLASSIFICATIONS))
        if bad:
            raise ConfigError(f"unknown classification(s) {', '.join(bad)}; use {', '.join(CLASSIFICATIONS)}")
        selected = {k: e for k, e in selected.items() if catalog.products[e.product_id].classification in wanted_classes}
    return dict(sorted(selected.items()))


def readable_product_ids(release: Release, catalog: Catalog, principal: Principal) -> tuple[str, ...]:
    """Every product of the release the principal may read (no filters), sorted."""
    return tuple(readable_entries(release, catalog, principal))
