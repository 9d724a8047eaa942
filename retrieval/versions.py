"""Product versions on the query side: which versions exist, and which one a pin or a date selects.

Versions of a product, as a release sees them: its current entry, the versions the release keeps beside it
(`history/<version>/`), and every version an older release served (the newest such release's entry).

A version's date is when it took effect: its contract's `contractCreatedTs`, else the `created_at` of the
oldest release that served it as current; a kept version with neither holds until the next version's date.
`as_of D` serves each product at the newest version dated on or before D; a product's oldest known version
also stands for any earlier day (nothing older is kept), so a product with one version is never affected.
The version-question rule and "what changed" answers: retrieval/version_questions.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from indexing.releases import ProductEntry, Release
from knowledge.errors import ProductNotFound
from knowledge.versions import version_key


# ------------------------------------------------------------------------------------- the versions
@dataclass(frozen=True)
class ProductVersion:
    """One addressable version of a product: the entry that serves it and when it took effect."""

    product_id: str
    version: str
    entry: ProductEntry
    since: datetime | None
    current: bool  # the version the release serves by default
    release_id: str  # the release whose entry serves it

    @property
    def key(self) -> str:
        """How a search names what it served: the product id for the current version, else `<id>@<version>`."""
        return self.product_id if self.current else f"{self.product_id}@{self.version}"


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    t = datetime.fromisoformat(value)  # Python 3.11 reads a trailing Z
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def version_index(release: Release, history: Iterable[Release]) -> dict[str, tuple[ProductVersion, ...]]:
    """product id → its versions, oldest first, as `release` sees them (its own entries win over an older
    release's; of the other releases, the newest that served a version provides its entry)."""
    older = sorted(history, key=lambda r: (r.created_at, r.id))
    first_current: dict[tuple[str, str], datetime] = {}
    for r in older:
        for pid, e in r.products.items():
            first_current.setdefault((pid, e.product_version), _time(r.created_at))  # type: ignore[arg-type]
    out: dict[str, tuple[ProductVersion, ...]] = {}
    for pid, current in release.products.items():
        found: dict[str, tuple[ProductEntry, str]] = {}
        for r in reversed(older):  # newest first: the first seen wins
            if r.id == release.id:
                continue
            for e in (*([r.products[pid]] if pid in r.products else []), *r.kept.get(pid, {}).values()):
                found.setdefault(e.product_version, (e, r.id))
        for e in release.kept.get(pid, {}).values():
            found[e.product_version] = (e, release.id)
        found[current.product_version] = (current, release.id)
        versions = [ProductVersion(pid, v, e, _time(e.since) or first_current.get((pid, v)),
                                   v == current.product_version, rid) for v, (e, rid) in found.items()]
        out[pid] = tuple(sorted(versions, key=lambda pv: version_key(pv.version)))
    return out


def version_at(versions: Sequence[ProductVersion], day: date) -> ProductVersion:
    """The version current on `day`: the newest dated on or before it (the oldest also stands for earlier days)."""
    chosen = versions[0]
    for pv in versions[1:]:
        if pv.since is not None and pv.since.date() > day:
            break
        chosen = pv
    return chosen


def listed(versions: Sequence[ProductVersion]) -> str:
    return ", ".join(pv.version for pv in versions)


def pinned(products: Iterable[str] | None) -> bool:
    return any("@" in p for p in products or ())


def resolve(pid: str, version: str | None, versions: Mapping[str, Sequence[ProductVersion]],
            as_of: date | None) -> ProductVersion | None:
    """The version a request selects for a readable product: the pinned one, else the one current on
    `as_of`, else None (the current entry). Raises ProductNotFound naming the versions that exist."""
    known = versions.get(pid, ())
    if version is not None:
        for pv in known:
            if pv.version == version or pv.version == version.removeprefix("v"):
                return pv
        raise ProductNotFound(f"{pid} has no version {version!r}; it has versions {listed(known) or 'none'}")
    if as_of is not None and known:
        return version_at(known, as_of)
    return None
