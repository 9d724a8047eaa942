"""The lock an index run holds while it works.

FAISS mode: one run per data directory (a second is refused). Shared mode (pgvector): the data directory is
a cache that runs share, so the file lock is only held shared while the run's products are locked in the
database; stale staging folders are swept only by a run that holds the directory alone.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from indexing.atomic import remove_stale_staging
from indexing.shared_index import SharedIndexRun
from knowledge.errors import ConfigError


@contextmanager
def index_run_lock(data_dir: Path, staging: Sequence[Path], shared: SharedIndexRun | None,
                   selected: Sequence[str], wait: bool) -> Iterator[None]:
    """Hold the run's lock until the block ends; `staging`: the folders whose stale staging is swept."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "index.lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            if shared is None:
                raise ConfigError(f"another `meshrag index` is running on {data_dir}; wait for it to finish") from None
            alone = False
        if alone:
            for parent in staging:
                remove_stale_staging(parent)
        try:
            if shared is None:
                yield
            else:
                fcntl.flock(fh, fcntl.LOCK_SH)
                with shared.locked(selected, wait=wait):
                    yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
