"""The catalog in shared mode: every index run publishes the mesh's product files to PostgreSQL as a
snapshot, and replicas load their Catalog from that snapshot laid out under their data directory.

A snapshot holds, per product id, the files of its product folder that the catalog reads:

- descriptors and contracts (`product.yaml`, `contract.yaml`, also `history/<version>/contract.yaml`),
  byte for byte; their content is in `artefacts` as `catalog/<sha256>`;
- every source document as an empty placeholder carrying the source's modification time: the catalog
  lists documents and dates freshness from them but never reads them (pages show indexed chunks).

Paths are relative to the product's mesh root, so all roots are laid out in one folder,
`<data dir>/shared/catalog/mesh` (product ids are unique across roots anyway). A source outside its
product's mesh root (an input port pointing elsewhere) cannot be laid out there: the product then fails
validation on replicas, and the index run warns about it.

Snapshots merge like releases (indexing/shared_releases.py): a run replaces the products it indexed; a run
over the whole mesh replaces them all. `CatalogMirror.sync` makes the local folder equal to a snapshot
(each file written beside and renamed, files not in it removed); the serving Catalog then reloads on its
usual stat check, so a product whose new contract is invalid keeps its last valid version serving, as
in FAISS mode.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from indexing.artefacts import ArtefactStore
from indexing.shared_db import CATALOG_CHANNEL, SharedDb
from indexing.versions import content_id
from knowledge.catalog import PRODUCT_FILES, Catalog, find_product_folders, product_id_of
from knowledge.errors import ConfigError
from knowledge.model import SOURCE_SUFFIXES

log = logging.getLogger(__name__)

FORMAT = 1
Files = dict[str, dict[str, Any]]  # path under the mesh folder → {"sha256": hex or None (placeholder), "mtime_ns"}


@dataclass(frozen=True)
class Snapshot:
    """The product files of one index run's mesh, and the bytes of those that are kept whole."""

    products: dict[str, Files]
    contents: dict[str, bytes]  # sha256 → bytes


def build_snapshot(catalog: Catalog) -> Snapshot:
    """The product files of every product folder (valid or not) under the catalog's roots."""
    products: dict[str, Files] = {}
    contents: dict[str, bytes] = {}
    for root in catalog.roots:
        for folder in find_product_folders(root):
            pid = product_id_of(folder)
            files = products.setdefault(pid, {})
            paths = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
            product = catalog.products.get(pid)
            if product is not None and product.root == folder:
                paths += product.documents()
            for path in paths:
                if not path.resolve().is_relative_to(root):
                    log.warning("product %s reads %s, outside its mesh root %s: replicas in shared mode cannot "
                                "list it and will report the product invalid; move the source under the root",
                                pid, path, root)
                    continue
                rel = path.resolve().relative_to(root).as_posix()
                if path.name in PRODUCT_FILES:
                    data = path.read_bytes()
                    digest = hashlib.sha256(data).hexdigest()
                    contents[digest] = data
                    files[rel] = {"sha256": digest, "mtime_ns": path.stat().st_mtime_ns}
                elif path.suffix.lower() in SOURCE_SUFFIXES:
                    files[rel] = {"sha256": None, "mtime_ns": path.stat().st_mtime_ns}
    return Snapshot(products, contents)


def merge_snapshot(latest: dict[str, Files] | None, run: dict[str, Files], indexed: Collection[str],
                   whole_mesh: bool) -> dict[str, Files]:
    """The products of the snapshot a run publishes on top of `latest` (the rule releases follow)."""
    if whole_mesh:
        return dict(run)
    merged = dict(latest or {})
    for pid in indexed:
        if pid in run:
            merged[pid] = run[pid]
        else:
            merged.pop(pid, None)
    return merged


def publish_snapshot(conn: psycopg.Connection, db: SharedDb, snapshot: Snapshot, indexed: Collection[str],
                     whole_mesh: bool) -> str:
    """Merge `snapshot` into the current one and make the result current, in `conn`'s transaction
    (the release's). Returns the snapshot id."""
    current = db.table("catalog_current")
    row = conn.execute(sql.SQL("SELECT snapshot_id FROM {} WHERE name = 'current' FOR UPDATE").format(current)).fetchone()
    latest_id = row[0] if row else None
    latest = None
    if latest_id is not None:
        found = conn.execute(sql.SQL("SELECT manifest FROM {} WHERE id = %s").format(db.table("catalog_snapshots")),
                             (latest_id,)).fetchone()
        latest = found[0]["products"] if found else None
    products = merge_snapshot(latest, snapshot.products, indexed, whole_mesh)
    manifest = {"format": FORMAT, "products": products}
    sid = content_id("cat", manifest)
    used = {meta["sha256"] for files in products.values() for meta in files.values() if meta["sha256"]}
    artefacts = ArtefactStore(db)
    for digest in sorted(used & set(snapshot.contents)):
        artefacts.insert(conn, f"catalog/{digest}", snapshot.contents[digest])
    conn.execute(sql.SQL("INSERT INTO {} (id, manifest) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING")
                 .format(db.table("catalog_snapshots")), (sid, json.dumps(manifest)))
    if sid != latest_id:
        conn.execute(sql.SQL("UPDATE {} SET snapshot_id = %s, moved_at = now() WHERE name = 'current'").format(current),
                     (sid,))
        db.notify(conn, CATALOG_CHANNEL, {"snapshot_id": sid})
    return sid


class CatalogMirror:
    """A replica's copy of the current catalog snapshot: the folder its Catalog loads (`root`)."""

    def __init__(self, db: SharedDb, data_dir: Path) -> None:
        self.db = db
        self.artefacts = ArtefactStore(db)
        self.dir = Path(data_dir) / "shared" / "catalog"
        self.root = self.dir / "mesh"
        self.synced: str | None = None

    def sync(self, snapshot_id: str | None) -> Path:
        """Make `root` hold snapshot `snapshot_id` (an empty mesh when None); returns `root`."""
        self.root.mkdir(parents=True, exist_ok=True)
        if snapshot_id == self.synced and snapshot_id is not None:
            return self.root
        with self._locked():  # worker processes on one data directory take turns
            files: Files = {}
            if snapshot_id is not None:
                with self.db.transaction() as conn:
                    row = conn.execute(sql.SQL("SELECT manifest FROM {} WHERE id = %s")
                                       .format(self.db.table("catalog_snapshots")), (snapshot_id,)).fetchone()
                if row is None:
                    raise ConfigError(f"catalog snapshot {snapshot_id} is missing from PostgreSQL; run `meshrag index`")
                files = {rel: meta for product in row[0]["products"].values() for rel, meta in product.items()}
            for rel, meta in sorted(files.items()):
                self._write(self.root / rel, meta)
            self._remove_others(set(files))
        self.synced = snapshot_id
        return self.root

    def _write(self, path: Path, meta: dict[str, Any]) -> None:
        digest, mtime = meta["sha256"], int(meta["mtime_ns"])
        try:
            st = path.stat()
            same = (st.st_size == 0 if digest is None else _sha256(path) == digest) and st.st_mtime_ns == mtime
        except FileNotFoundError:
            same = False
        if same:
            return
        data = b""
        if digest is not None:
            found = self.artefacts.get(f"catalog/{digest}")
            if found is None:
                raise ConfigError(f"catalog file {path.name} ({digest[:12]}) is missing from PostgreSQL; run `meshrag index`")
            data = found
        # The folder is a disposable cache: replaced by rename for readers, not fsynced.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.utime(tmp, ns=(mtime, mtime))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _remove_others(self, keep: set[str]) -> None:
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=False):
            folder = Path(dirpath)
            for name in filenames:
                if (folder / name).relative_to(self.root).as_posix() not in keep:
                    (folder / name).unlink(missing_ok=True)
            if folder != self.root and not any(folder.iterdir()):
                folder.rmdir()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "sync.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
