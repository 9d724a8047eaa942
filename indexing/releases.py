"""Releases: immutable sets of embedding product versions served together, and the `current` alias.

    releases/<release-id>.json   immutable release records
    releases/current.json        the alias, replaced atomically on publish and rollback
    releases/alias-log.jsonl     every move of the alias (what rollback walks back)

That is FAISS (embedded) mode. In shared mode (store = pgvector) the same records, alias and log live in
PostgreSQL (indexing/shared_releases.py), with the same interface: `release_registry(settings)` gives
the one the settings call for.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexing.atomic import write_json_atomic
from indexing.versions import content_id
from knowledge.errors import ReleaseNotFound

if TYPE_CHECKING:
    from indexing.settings import IndexSettings
    from indexing.shared_db import SharedDb
    from indexing.shared_releases import PgReleaseRegistry

CURRENT = "current"


@dataclass(frozen=True)
class ProductEntry:
    """One product as served by a release."""

    product_id: str
    product_version: str
    domain: str
    classification: str
    chunk_version: str
    embedding_version: str
    documents: dict[str, str]  # document id → revision hash
    n_chunks: int
    since: str | None = None  # when this product version took effect, as its contract declares (ISO 8601)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Release:
    id: str
    created_at: str
    store: str
    model_id: str
    products: dict[str, ProductEntry]
    parent: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    # Older versions of products kept beside the current one (`history/<version>/`): product id → version →
    # entry. Served only when a request pins them; `products` stays the current version of each product.
    kept: dict[str, dict[str, ProductEntry]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "created_at": self.created_at, "store": self.store, "model_id": self.model_id,
               "parent": self.parent, "notes": self.notes,
               "products": {pid: e.as_dict() for pid, e in sorted(self.products.items())}}
        if self.kept:
            out["kept"] = {pid: {v: e.as_dict() for v, e in sorted(vs.items())} for pid, vs in sorted(self.kept.items())}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Release:
        return cls(id=d["id"], created_at=d["created_at"], store=d["store"], model_id=d["model_id"],
                   parent=d.get("parent"), notes=d.get("notes", {}),
                   products={pid: ProductEntry(**e) for pid, e in d["products"].items()},
                   kept={pid: {v: ProductEntry(**e) for v, e in vs.items()} for pid, vs in d.get("kept", {}).items()})

    @property
    def collections(self) -> tuple[str, ...]:
        """Every vector collection the release serves: current versions, then kept ones."""
        return (*(e.embedding_version for e in self.products.values()),
                *(e.embedding_version for vs in self.kept.values() for e in vs.values()))


def release_id(products: dict[str, ProductEntry], store: str,
               kept: dict[str, dict[str, ProductEntry]] | None = None) -> str:
    """Content-derived: the same embedding versions in the same store give the same release (kept versions
    count only when there are some, so a release without them keeps the id it always had)."""
    payload: dict[str, Any] = {"store": store, "products": {p: e.embedding_version for p, e in products.items()}}
    if kept:
        payload["kept"] = {p: {v: e.embedding_version for v, e in vs.items()} for p, vs in kept.items() if vs}
    return content_id("rel", payload, 16)


def new_release(products: dict[str, ProductEntry], *, store: str, model_id: str, parent: str | None,
                notes: dict[str, Any] | None = None, kept: dict[str, dict[str, ProductEntry]] | None = None) -> Release:
    """A release record for these entries, created now (not yet stored); empty kept maps are dropped."""
    kept = {pid: vs for pid, vs in (kept or {}).items() if vs}
    return Release(id=release_id(products, store, kept), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                   store=store, model_id=model_id, products=products, parent=parent, notes=notes or {}, kept=kept)


@dataclass(frozen=True)
class ReleaseDiff:
    a: str
    b: str
    added: list[tuple[str, str]]  # (product, document)
    removed: list[tuple[str, str]]
    changed: list[tuple[str, str]]
    products_added: list[str]
    products_removed: list[str]

    def as_dict(self) -> dict[str, Any]:
        def docs(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
            return [{"product": p, "document": d} for p, d in pairs]
        return {"a": self.a, "b": self.b, "added": docs(self.added), "removed": docs(self.removed),
                "changed": docs(self.changed), "products_added": self.products_added,
                "products_removed": self.products_removed}


def release_registry(settings: IndexSettings, db: SharedDb | None = None) -> ReleaseRegistry | PgReleaseRegistry:
    """The registry of the deployment: files under the data directory (FAISS mode), or PostgreSQL
    (shared mode, store = pgvector; `db` shares connections with the caller's other shared-mode parts)."""
    from indexing.stores.pg_shared import is_shared

    if not is_shared(settings):
        return ReleaseRegistry(settings.resolved_data_dir())
    from indexing.shared_db import SharedDb
    from indexing.shared_releases import PgReleaseRegistry

    return PgReleaseRegistry(db or SharedDb(settings))


def rollback_target(current: str | None, log: list[dict[str, Any]]) -> str:
    """The release that was current before `current`, from the alias log (newest move first)."""
    if current is None:
        raise ReleaseNotFound("nothing to roll back: no release is current")
    for entry in reversed(log):
        if entry["to"] == current and entry["from"]:
            return entry["from"]
    raise ReleaseNotFound(f"release {current} has no earlier current release to roll back to; "
                          "pass an explicit release id")


def diff_releases(ra: Release, rb: Release) -> ReleaseDiff:
    """Documents added, removed and changed going from release `ra` to release `rb`."""
    added, removed, changed = [], [], []
    for pid in sorted(set(ra.products) | set(rb.products)):
        da = ra.products[pid].documents if pid in ra.products else {}
        db = rb.products[pid].documents if pid in rb.products else {}
        added += [(pid, d) for d in sorted(set(db) - set(da))]
        removed += [(pid, d) for d in sorted(set(da) - set(db))]
        changed += [(pid, d) for d in sorted(set(da) & set(db)) if da[d] != db[d]]
    return ReleaseDiff(ra.id, rb.id, added, removed, changed,
                       sorted(set(rb.products) - set(ra.products)), sorted(set(ra.products) - set(rb.products)))


class ReleaseRegistry:
    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir) / "releases"

    def _path(self, rid: str) -> Path:
        return self.dir / f"{rid}.json"

    def create(self, products: dict[str, ProductEntry], *, store: str, model_id: str, parent: str | None,
               notes: dict[str, Any] | None = None, kept: dict[str, dict[str, ProductEntry]] | None = None) -> Release:
        """Record a release (idempotent: an existing release with the same id is returned unchanged)."""
        rel = new_release(products, store=store, model_id=model_id, parent=parent, notes=notes, kept=kept)
        if self._path(rel.id).is_file():
            return self.get(rel.id)
        write_json_atomic(self._path(rel.id), rel.as_dict())
        return rel

    def get(self, ref: str) -> Release:
        """A release by id, or the one the `current` alias names."""
        rid = self.current_id() if ref == CURRENT else ref
        if rid is None:
            raise ReleaseNotFound("no release is current yet; run `meshrag index` to build and publish one")
        path = self._path(rid)
        if not path.is_file() or rid.startswith("."):
            known = ", ".join(r.id for r in self.list()[-5:]) or "none"
            raise ReleaseNotFound(f"no release {rid!r}; recent releases: {known} (see `meshrag releases list`)")
        return Release.from_dict(json.loads(path.read_text("utf-8")))

    def list(self) -> list[Release]:
        if not self.dir.is_dir():
            return []
        rels = [Release.from_dict(json.loads(p.read_text("utf-8")))
                for p in self.dir.glob("rel-*.json")]
        return sorted(rels, key=lambda r: (r.created_at, r.id))

    def current_id(self) -> str | None:
        path = self.dir / f"{CURRENT}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text("utf-8"))["release_id"]

    def current(self) -> Release | None:
        rid = self.current_id()
        return self.get(rid) if rid else None

    def publish(self, rid: str, *, reason: str = "publish") -> Release:
        """Point `current` at the release in one atomic rename, and log the move."""
        rel = self.get(rid)
        previous = self.current_id()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "alias-log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"at": now, "from": previous, "to": rel.id, "reason": reason}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        write_json_atomic(self.dir / f"{CURRENT}.json", {"release_id": rel.id, "moved_at": now, "previous": previous})
        return rel

    def rollback(self, to: str | None = None) -> Release:
        """Make `to` current, or by default the release that was current before the present one."""
        if to is None:
            to = rollback_target(self.current_id(), self.alias_log())
        return self.publish(to, reason="rollback")

    def alias_log(self) -> list[dict[str, Any]]:
        path = self.dir / "alias-log.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]

    def diff(self, a: str, b: str) -> ReleaseDiff:
        """Documents added, removed and changed going from release `a` to release `b`."""
        return diff_releases(self.get(a), self.get(b))
