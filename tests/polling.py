"""Waiting for something a server picks up on its own schedule (a catalog re-check, a replica's alias
re-read): poll with a bound, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(check: Callable[[], bool], bound_s: float, interval_s: float = 0.05) -> bool:
    """Call `check` until it holds or `bound_s` has passed; the last call is made after the bound."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()
