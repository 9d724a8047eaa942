"""Releases and the `current` alias in PostgreSQL (shared mode): the file registry's interface, with every
move of the alias in one transaction.

`publish` and `rollback` lock the alias row (FOR UPDATE), move it, append to `alias_log` and queue a
NOTIFY on `meshrag_alias` (payload: schema, alias, release id, reason) that is delivered at commit.
`commit_run` is how an index run publishes: in that same transaction it reads the release current *now*,
and builds the new release from it plus the run's own products, so that concurrent runs of different
products both end up in the release:

    products(new) = products(current now) with, for each product the run indexed, the run's entry
                    (or none, if the run dropped it); a run over the whole mesh replaces them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from indexing.artefacts import MANIFEST, chunk_prefix, embedding_path
from indexing.releases import (
    CURRENT,
    ProductEntry,
    Release,
    ReleaseDiff,
    diff_releases,
    new_release,
    rollback_target,
)
from indexing.shared_db import ALIAS_CHANNEL, SharedDb
from knowledge.errors import ConfigError, ReleaseNotFound


@dataclass(frozen=True)
class SharedHead:
    """What a replica re-checks: the release `current` names, the newest release record (its `seq`), and
    the catalog snapshot replicas load. One row, one round trip."""

    release_id: str | None
    releases_seq: int
    catalog_id: str | None


@dataclass(frozen=True)
class RunChanges:
    """What one index run built, to be merged into whichever release is current when it publishes."""

    products: dict[str, ProductEntry]  # the run's entry of every product it serves
    kept: dict[str, dict[str, ProductEntry]]
    indexed: frozenset[str]  # the products the run indexed: only their entries replace the current ones
    whole_mesh: bool  # no --product: the run's entries are the release (products it lacks leave)
    store: str = "pgvector"
    model_id: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def merged(self, latest: Release | None) -> tuple[dict[str, ProductEntry], dict[str, dict[str, ProductEntry]]]:
        """The entries of the release this run publishes on top of `latest`."""
        if self.whole_mesh:
            return dict(self.products), {p: dict(vs) for p, vs in self.kept.items() if vs and p in self.products}
        products = dict(latest.products) if latest else {}
        kept = {p: dict(vs) for p, vs in latest.kept.items()} if latest else {}
        for pid in self.indexed:
            if pid in self.products:
                products[pid] = self.products[pid]
            else:
                products.pop(pid, None)
            if pid in self.kept:
                kept[pid] = dict(self.kept[pid])
            else:
                kept.pop(pid, None)
        return products, {p: vs for p, vs in kept.items() if vs and p in products}


@dataclass(frozen=True)
class CommitResult:
    release: Release | None
    published: bool
    previous: str | None  # the release that was current when the run published


def _entries(release: Release) -> list[ProductEntry]:
    return [*release.products.values(), *(e for vs in release.kept.values() for e in vs.values())]


class PgReleaseRegistry:
    """ReleaseRegistry's interface over shared mode's tables (indexing/shared_db.py)."""

    def __init__(self, db: SharedDb) -> None:
        self.db = db
        self._releases = db.table("releases")
        self._alias = db.table("alias")
        self._log = db.table("alias_log")

    # ------------------------------------------------------------------------------------- records
    def create(self, products: dict[str, ProductEntry], *, store: str, model_id: str, parent: str | None,
               notes: dict[str, Any] | None = None, kept: dict[str, dict[str, ProductEntry]] | None = None) -> Release:
        """Record a release (idempotent: an existing release with the same id is returned unchanged)."""
        rel = new_release(products, store=store, model_id=model_id, parent=parent, notes=notes, kept=kept)
        with self.db.transaction() as conn:
            return self._insert(conn, rel)

    def get(self, ref: str) -> Release:
        """A release by id, or the one the `current` alias names."""
        with self.db.transaction() as conn:
            return self._require(conn, self._current(conn) if ref == CURRENT else ref)

    def list(self) -> list[Release]:
        with self.db.transaction() as conn:
            rows = conn.execute(sql.SQL("SELECT record FROM {}").format(self._releases)).fetchall()
        return sorted((Release.from_dict(r[0]) for r in rows), key=lambda r: (r.created_at, r.id))

    def current_id(self) -> str | None:
        with self.db.transaction() as conn:
            return self._current(conn)

    def current(self) -> Release | None:
        rid = self.current_id()
        return self.get(rid) if rid else None

    def head(self) -> SharedHead:
        """The alias, the newest release's `seq` and the current catalog snapshot, in one query."""
        with self.db.transaction() as conn:
            row = conn.execute(sql.SQL(
                "SELECT (SELECT release_id FROM {a} WHERE name = %s), (SELECT coalesce(max(seq), 0) FROM {r}),"
                " (SELECT snapshot_id FROM {c} WHERE name = %s)").format(
                    a=self._alias, r=self._releases, c=self.db.table("catalog_current")), (CURRENT, CURRENT)).fetchone()
        assert row is not None
        return SharedHead(row[0], int(row[1]), row[2])

    def alias_log(self) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            return self._alias_log(conn)

    def diff(self, a: str, b: str) -> ReleaseDiff:
        """Documents added, removed and changed going from release `a` to release `b`."""
        return diff_releases(self.get(a), self.get(b))

    # --------------------------------------------------------------------------------- the alias
    def publish(self, rid: str, *, reason: str = "publish") -> Release:
        """Point `current` at the release and log the move, in one transaction."""
        with self.db.transaction() as conn:
            previous = self._lock_alias(conn)
            rel = self._require(conn, previous if rid == CURRENT else rid)
            self._move(conn, previous, rel.id, reason)
            return rel

    def rollback(self, to: str | None = None) -> Release:
        """Make `to` current, or by default the release that was current before the present one."""
        with self.db.transaction() as conn:
            current = self._lock_alias(conn)
            rel = self._require(conn, to if to is not None else rollback_target(current, self._alias_log(conn)))
            self._move(conn, current, rel.id, "rollback")
            return rel

    def commit_run(self, changes: RunChanges, *, publish: bool,
                   also: Callable[[psycopg.Connection], None] | None = None) -> CommitResult:
        """Build the run's release on top of the release current now and (with `publish`) move the alias
        to it, in one transaction; `also(conn)` runs in it too (the catalog snapshot)."""
        with self.db.transaction() as conn:
            latest_id = self._lock_alias(conn)
            latest = self._get(conn, latest_id) if latest_id else None
            products, kept = changes.merged(latest)
            release = None
            if products:
                rel = new_release(products, store=changes.store, model_id=changes.model_id,
                                  parent=latest.id if latest else None, notes=changes.notes, kept=kept)
                self._check_artefacts(conn, rel)
                release = self._insert(conn, rel)
            if also is not None:
                also(conn)
            published = bool(publish and release is not None and release.id != latest_id)
            if published:
                assert release is not None
                self._move(conn, latest_id, release.id, "publish")
            return CommitResult(release, published, latest_id)

    # --------------------------------------------------------------------------------- internals
    def _insert(self, conn: psycopg.Connection, rel: Release) -> Release:
        conn.execute(sql.SQL("INSERT INTO {} (id, created_at, record) VALUES (%s, %s, %s) "
                                     "ON CONFLICT (id) DO NOTHING").format(self._releases),
                     (rel.id, rel.created_at, json.dumps(rel.as_dict())))
        found = self._get(conn, rel.id)
        assert found is not None
        return found

    def _get(self, conn: psycopg.Connection, rid: str) -> Release | None:
        row = conn.execute(sql.SQL("SELECT record FROM {} WHERE id = %s").format(self._releases),
                           (rid,)).fetchone()
        return None if row is None else Release.from_dict(row[0])

    def _require(self, conn: psycopg.Connection, rid: str | None) -> Release:
        if rid is None:
            raise ReleaseNotFound("no release is current yet; run `meshrag index` to build and publish one")
        found = self._get(conn, rid)
        if found is None:
            recent = conn.execute(sql.SQL("SELECT id FROM {} ORDER BY created_at DESC, id DESC LIMIT 5")
                                  .format(self._releases)).fetchall()
            known = ", ".join(r[0] for r in reversed(recent)) or "none"
            raise ReleaseNotFound(f"no release {rid!r}; recent releases: {known} (see `meshrag releases list`)")
        return found

    def _current(self, conn: psycopg.Connection) -> str | None:
        row = conn.execute(sql.SQL("SELECT release_id FROM {} WHERE name = %s").format(self._alias),
                           (CURRENT,)).fetchone()
        return row[0] if row else None

    def _lock_alias(self, conn: psycopg.Connection) -> str | None:
        """Lock the `current` row until the transaction ends; the release it names now."""
        row = conn.execute(sql.SQL("SELECT release_id FROM {} WHERE name = %s FOR UPDATE")
                           .format(self._alias), (CURRENT,)).fetchone()
        return row[0] if row else None

    def _move(self, conn: psycopg.Connection, previous: str | None, rid: str, reason: str) -> None:
        """Point the (locked) alias from `previous` to `rid`, log it, and queue the NOTIFY."""
        conn.execute(sql.SQL("UPDATE {} SET release_id = %s, moved_at = now(), previous = %s WHERE name = %s")
                     .format(self._alias), (rid, previous, CURRENT))
        conn.execute(sql.SQL("INSERT INTO {} (name, from_id, to_id, reason) VALUES (%s, %s, %s, %s)")
                     .format(self._log), (CURRENT, previous, rid, reason))
        self.db.notify(conn, ALIAS_CHANNEL, {"alias": CURRENT, "release_id": rid, "reason": reason})

    def _alias_log(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(sql.SQL("SELECT at, from_id, to_id, reason FROM {} WHERE name = %s ORDER BY seq")
                            .format(self._log), (CURRENT,)).fetchall()
        return [{"at": _iso(at), "from": f, "to": t, "reason": r} for at, f, t, r in rows]

    def _check_artefacts(self, conn: psycopg.Connection, rel: Release) -> None:
        """Every chunk and embedding version the release serves is in `artefacts` (replicas fetch them)."""
        needed = {}
        for e in _entries(rel):
            needed[chunk_prefix(e.chunk_version) + MANIFEST] = e.product_id
            needed[embedding_path(e.embedding_version)] = e.product_id
        rows = conn.execute(sql.SQL("SELECT path FROM {} WHERE path = ANY(%s)").format(self.db.table("artefacts")),
                            (list(needed),)).fetchall()
        missing = sorted(set(needed) - {r[0] for r in rows})
        if missing:
            products = ", ".join(sorted({needed[m] for m in missing}))
            raise ConfigError(f"release {rel.id} would serve files PostgreSQL lacks ({missing[0]}, …); run "
                              f"`meshrag index --product` for {products} to upload them")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")
