"""Group commit: appends that arrive while a commit is in flight share the next one.

A durable append costs one fsync (SQLite with synchronous=FULL; PostgreSQL with synchronous_commit=on),
~10 ms on this kind of disk, and appends to a hash chain are serialised, so N concurrent answers used to
wait N fsyncs. Here every caller queues its item and then takes the writer's turn: the caller that gets
the turn (the leader) commits everything queued at that moment in one transaction, one fsync, and hands
each waiting caller its own result. A caller returns only after the transaction holding its item has
committed, so an acknowledged record is still durable before the answer returns; a failed transaction
fails every item in it, and none of them is acknowledged.

No extra thread: the leader is whichever caller gets the turn, so an idle log costs nothing and a single
caller pays exactly one commit, as before.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Commits a batch in one transaction; returns one result per item, in order. An item that cannot go in
# (e.g. a conflicting duplicate) gets an exception in its place while the others commit; an exception
# raised by the function itself fails the whole batch.
BatchCommit = Callable[[Sequence[T]], Sequence["R | BaseException"]]


@dataclass
class _Slot(Generic[T, R]):
    item: T
    done: bool = False
    result: R | None = None
    error: BaseException | None = None


@dataclass
class GroupCommitStats:
    items: int = 0  # items committed or refused
    commits: int = 0  # transactions attempted
    largest: int = 0  # the most items one transaction carried
    failed: int = 0  # transactions that failed as a whole

    def as_dict(self) -> dict[str, float | int]:
        return {"appends": self.items, "commits": self.commits, "largest_batch": self.largest,
                "failed_commits": self.failed,
                "mean_batch": round(self.items / self.commits, 2) if self.commits else 0.0}


@dataclass
class GroupCommitter(Generic[T, R]):
    """Serialises `commit` calls and batches every item queued while one is running."""

    commit: BatchCommit
    max_batch: int = 256
    stats: GroupCommitStats = field(default_factory=GroupCommitStats)
    _queue: list[_Slot[T, R]] = field(default_factory=list)
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)
    _turn: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")

    @property
    def queued(self) -> int:
        """Items waiting for a commit (not counting one in flight)."""
        with self._queue_lock:
            return len(self._queue)

    def report(self) -> dict[str, float | int]:
        """The counters plus the items queued now: what /readyz and the tests read."""
        return {**self.stats.as_dict(), "queued": self.queued}

    def submit(self, item: T) -> R:
        """Commit `item` (with whatever else is queued) and return its result once durable."""
        slot: _Slot[T, R] = _Slot(item)
        with self._queue_lock:
            self._queue.append(slot)
        while not slot.done:
            with self._turn:
                if not slot.done:
                    self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        if not batch:
            return
        self.stats.commits += 1
        self.stats.largest = max(self.stats.largest, len(batch))
        try:
            results = list(self.commit([slot.item for slot in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"a batch commit returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch, re-raised there
            self.stats.failed += 1
            # Each waiting caller raises its own copy, so tracebacks of different threads never mix.
            results = [exc if i == 0 else _copy(exc) for i in range(len(batch))]
        self.stats.items += len(batch)
        for slot, result in zip(batch, results):
            if isinstance(result, BaseException):
                slot.error = result
            else:
                slot.result = result
            slot.done = True


def _copy(exc: BaseException) -> BaseException:
    try:
        twin = copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception type that cannot be copied is shared instead
        return exc
    twin.__cause__ = exc.__cause__
    return twin
