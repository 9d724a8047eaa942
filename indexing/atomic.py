"""Crash-safe file writes: write beside the target, fsync, rename. A reader sees the old file or the
new one, never half of one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def publish_dir_atomic(staging: Path, final: Path) -> None:
    """Move a fully written staging folder to its final name in one rename. If another run already
    published the same content-addressed folder, keep that one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fsync_dir(staging)
    try:
        os.rename(staging, final)
    except OSError:
        if final.exists():
            shutil.rmtree(staging, ignore_errors=True)
            return
        raise
    fsync_dir(final.parent)


def staging_dir(parent: Path, name: str) -> Path:
    """A fresh folder beside where `name` will live; names starting with '.tmp-' are never listed."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=parent))


def remove_stale_staging(parent: Path) -> int:
    """Delete staging folders a killed run left behind. Returns how many were removed."""
    if not parent.is_dir():
        return 0
    stale = [p for p in parent.iterdir() if p.name.startswith(".tmp-")]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return len(stale)
