"""The FAISS store's files: one folder per collection (the collection name, percent-quoted) under the root.

A collection folder holds:

    manifest.json           written last; a folder without it is not (yet) a collection
    index-<token>.faiss     the FAISS index: inner product over unit vectors, i.e. cosine
    records-<token>.jsonl   one {"id", "metadata"} line per FAISS row, in row order

Each file is written to a temporary path, fsynced and renamed into place, and the manifest names the
data files of the current generation, so a crash at any point leaves the last complete state visible.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote, unquote

import faiss
import numpy as np

from indexing.atomic import fsync_dir
from indexing.stores.faiss_collection import FaissCollection, make_collection
from knowledge.errors import ConfigError

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
MANIFEST = "manifest.json"
_FOLDER_SAFE = "@+=,"  # besides letters, digits and "_.-~", kept readable in folder names


def collection_folder(root: Path, collection: str) -> Path:
    """The folder that holds `collection` under `root`."""
    return root / quote(collection, safe=_FOLDER_SAFE)


def folder_collection(folder: Path) -> str:
    """The collection name a folder holds (the inverse of `collection_folder`)."""
    return unquote(folder.name)


def read_collection(folder: Path, collection: str, ef_search: int) -> FaissCollection | None:
    """The collection's current generation; None when the folder has no manifest."""
    for attempt in (1, 2):
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        try:
            index = faiss.read_index(str(folder / manifest["index_file"]))  # already downcast
            lines = (folder / manifest["records_file"]).read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, RuntimeError):
            if attempt == 2:
                raise
            continue  # another process replaced the generation between our reads
        break
    records = [json.loads(line) for line in lines]
    if manifest.get("format") != STORE_FORMAT or not index.ntotal == len(records) == manifest["count"]:
        raise ConfigError(
            f"collection {collection!r} in {folder} is inconsistent or of an unknown format; "
            "drop it and index the product again"
        )
    if index.d != manifest["dim"]:
        raise ConfigError(
            f"collection {collection!r} index has dimension {index.d}, manifest says {manifest['dim']}"
        )
    _warn_on_version_change(collection, manifest.get("versions", {}))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search
    return make_collection(
        collection,
        manifest["dim"],
        index,
        [r["id"] for r in records],
        [json.dumps(r["metadata"], ensure_ascii=False) for r in records],
    )


def write_generation(folder: Path, col: FaissCollection) -> set[str]:
    """Write `col` as a new generation, manifest last; the names of the files that make it up."""
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    index_file, records_file = f"index-{token}.faiss", f"records-{token}.jsonl"
    _write_atomic(folder / index_file, lambda p: faiss.write_index(col.index, str(p)))
    lines = (
        json.dumps({"id": i, "metadata": json.loads(m)}, ensure_ascii=False) + "\n"
        for i, m in zip(col.ids, col.metadata)
    )
    _write_atomic(folder / records_file, lambda p: _write_text(p, lines))
    manifest = {
        "format": STORE_FORMAT,
        "name": col.name,
        "dim": col.dim,
        "count": col.size,
        "metric": "cosine",
        "index_type": col.index_type,
        "index_file": index_file,
        "records_file": records_file,
        "versions": {"faiss": faiss.__version__, "numpy": np.__version__},
    }
    _write_atomic(folder / MANIFEST, lambda p: _write_text(p, [json.dumps(manifest, indent=2)]))
    fsync_dir(folder)
    return {MANIFEST, index_file, records_file}


def remove_stale_files(folder: Path, current: set[str]) -> None:
    """Remove the files of earlier generations (and leftover temporary files)."""
    for stale in folder.iterdir():
        if stale.name not in current:
            stale.unlink()


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary sibling, fsync it, then rename it over `path`."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_text(path: Path, chunks: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(chunks)


def _warn_on_version_change(collection: str, saved: dict[str, str]) -> None:
    was = saved.get("faiss", "")
    if was.split(".")[:2] != faiss.__version__.split(".")[:2]:
        logger.warning(
            "collection %r was written by faiss %s and is read by faiss %s; re-index it if results look off",
            collection,
            was or "unknown",
            faiss.__version__,
        )
