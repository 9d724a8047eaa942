"""Data-directory files kept in PostgreSQL (shared mode), so that a replica's data directory is a cache.

Rows of `artefacts` are keyed by the file's path relative to the data directory:

    chunks/<chunk-version>/{manifest.json, chunks.jsonl, keyword/…}   a chunk version, uploaded in one transaction
    embeddings/<embedding-version>.json                               an embedding version's manifest
    catalog/<sha256>                                                  a contract or descriptor (catalog snapshots)
    evals/<release-id>.json                                           a release's latest evaluation (replaced)

Content-addressed paths are immutable: the first run that has one uploads it, later runs skip it. A chunk
version is uploaded in one transaction, so its `manifest.json` in the table means the whole folder is there.
A replica missing a file fetches it into its data directory: written beside, sha256 checked, then renamed
(a chunk version as one folder rename), so readers see the file whole or not at all.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

import psycopg
from psycopg import sql

from indexing.atomic import publish_dir_atomic, staging_dir, write_bytes_atomic
from indexing.shared_db import SharedDb
from knowledge.errors import ConfigError

MANIFEST = "manifest.json"


def chunk_prefix(version_id: str) -> str:
    return f"chunks/{version_id}/"


def embedding_path(version_id: str) -> str:
    return f"embeddings/{version_id}.json"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _checked(path: str, sha256: str, content: bytes) -> bytes:
    if hashlib.sha256(content).hexdigest() != sha256:
        raise ConfigError(f"artefact {path} in PostgreSQL does not match its sha256; re-run `meshrag index` "
                          "for the product it belongs to")
    return content


class ArtefactStore:
    """Upload data-directory files to the `artefacts` table and fetch them back into a data directory."""

    def __init__(self, db: SharedDb) -> None:
        self.db = db
        self.table = db.table("artefacts")

    # ------------------------------------------------------------------------------------ queries
    def present(self, paths: Iterable[str]) -> set[str]:
        """Which of `paths` the table holds."""
        wanted = list(dict.fromkeys(paths))
        if not wanted:
            return set()
        with self.db.transaction() as conn:
            rows = conn.execute(self._q("SELECT path FROM {t} WHERE path = ANY(%s)"), (wanted,)).fetchall()
        return {r[0] for r in rows}

    def get(self, path: str) -> bytes | None:
        """One artefact's bytes (sha256 checked), or None when the table lacks it."""
        with self.db.transaction() as conn:
            row = conn.execute(self._q("SELECT sha256, content FROM {t} WHERE path = %s"), (path,)).fetchone()
        return None if row is None else _checked(path, row[0], bytes(row[1]))

    # ------------------------------------------------------------------------------------ uploads
    def put(self, path: str, data: bytes, *, replace: bool = False) -> None:
        """Store `data` at `path`: once for an immutable path, replacing what is there with `replace`."""
        with self.db.transaction() as conn:
            self.insert(conn, path, data, replace=replace)

    def upload_chunk_version(self, data_dir: Path, version_id: str) -> bool:
        """Upload a chunk version's folder unless the table has it already. Returns True if uploaded."""
        prefix = chunk_prefix(version_id)
        if prefix + MANIFEST in self.present([prefix + MANIFEST]):
            return False
        folder = Path(data_dir) / prefix
        if not (folder / MANIFEST).is_file():
            raise ConfigError(f"chunk version {version_id} is not in {folder.parent}; re-run `meshrag index`")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))
        with self.db.transaction() as conn:
            for file in files:
                self.insert(conn, prefix + file.relative_to(folder).as_posix(), file.read_bytes())
        return True

    def upload_file(self, data_dir: Path, path: str) -> bool:
        """Upload one immutable file (relative to `data_dir`) unless the table has it. True if uploaded."""
        if path in self.present([path]):
            return False
        local = Path(data_dir) / path
        if not local.is_file():
            raise ConfigError(f"{path} is neither in {data_dir} nor in PostgreSQL; re-run `meshrag index`")
        self.put(path, local.read_bytes())
        return True

    def insert(self, conn: psycopg.Connection, path: str, data: bytes, *, replace: bool = False) -> None:
        """`put` inside the caller's transaction."""
        conflict = ("DO UPDATE SET sha256 = EXCLUDED.sha256, size = EXCLUDED.size, content = EXCLUDED.content,"
                    " updated_at = now()") if replace else "DO NOTHING"
        conn.execute(self._q("INSERT INTO {t} (path, sha256, size, content) VALUES (%s, %s, %s, %s) "
                             f"ON CONFLICT (path) {conflict}"),
                     (path, hashlib.sha256(data).hexdigest(), len(data), data))

    # ------------------------------------------------------------------------------------ fetches
    def fetch_file(self, data_dir: Path, path: str) -> bool:
        """Write the artefact at `path` into `data_dir` (atomically). False when the table lacks it."""
        data = self.get(path)
        if data is None:
            return False
        write_bytes_atomic(Path(data_dir) / path, data)
        return True

    def fetch_chunk_version(self, data_dir: Path, version_id: str) -> bool:
        """Write a chunk version's folder into `data_dir/chunks/` with one rename. False when the table
        lacks it (no manifest)."""
        prefix = chunk_prefix(version_id)
        final = Path(data_dir) / prefix
        stage = staging_dir(final.parent, version_id)
        found = False
        try:
            with self.db.transaction() as conn, conn.cursor(name="meshrag_fetch") as cur:
                cur.execute(self._q("SELECT path, sha256, content FROM {t} WHERE path LIKE %s ORDER BY path"),
                            (_like_prefix(prefix),))
                for path, sha256, content in cur:
                    target = stage / path[len(prefix):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(_checked(path, sha256, bytes(content)))
                    found = found or path == prefix + MANIFEST
            if not found:
                shutil.rmtree(stage, ignore_errors=True)
                return False
            publish_dir_atomic(stage, final)  # another process may have fetched it meanwhile: theirs stays
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return True

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(t=self.table)
