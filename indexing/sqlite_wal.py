"""Opening a SQLite file in write-ahead-log mode when other processes may be opening it at the same moment.

`PRAGMA journal_mode=WAL` on a file another connection is creating, switching or checkpointing can answer
"database is locked" at once, without waiting for the busy timeout (seen with `meshrag serve --workers N`
starting together, and in CI under load). `connect_wal` retries that step until the busy timeout instead; a
file still locked then raises the last sqlite3.OperationalError for the caller to report.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect_wal(path: Path, *, busy_timeout_s: float, synchronous: str = "FULL") -> sqlite3.Connection:
    """An autocommit connection to `path` in WAL mode with `busy_timeout_s` and `synchronous` set; other
    failures (a damaged file, "not a database") raise at once."""
    deadline = time.monotonic() + busy_timeout_s
    pause = 0.01
    while True:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous={synchronous}")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
            continue
        except BaseException:
            conn.close()
            raise
        if mode != "wal":
            conn.close()
            raise sqlite3.OperationalError(f"journal mode {mode}: write-ahead logging is not available here "
                                           "(put the file on a local file system)")
        return conn
