"""The ProvenanceLog protocol, and the one base that both SQL backends share: warm-up, the group-committed
append (anchor → retries → chain → insert, one transaction per batch), the reader and limit checks, the
owner check on get, and the verify walk. A backend supplies only its connection, transactions and SQL."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from knowledge.errors import ConfigError, ProvenanceCorrupt
from knowledge.model import Principal
from retrieval.group_commit import GroupCommitter
from retrieval.provenance.chain import Head, Prepared, chain_batch, prepare
from retrieval.provenance.record import ProvenanceRecord, not_found
from retrieval.provenance.verify import ChainChecker, StoredRow, UnreadableLog, VerifyReport

MAX_LIST = 1000
APPEND_ONLY = "provenance is append-only"  # what the triggers of both backends raise


@runtime_checkable
class ProvenanceLog(Protocol):
    """Append-only, hash-chained store of provenance records."""

    name: str

    def warm_up(self) -> None:
        """Open the store and create its tables if missing."""

    def append(self, record: ProvenanceRecord) -> ProvenanceRecord:
        """Chain (seq, prev_request_id, prev_hash, hash) and store `record` atomically; durable on return.
        Re-appending the same content under the same request id returns the stored record."""

    def get(self, request_id: str, principal: Principal | None = None, *,
            admin: bool = False) -> ProvenanceRecord:
        """The record of `request_id`. Another principal's record raises ProvenanceNotFound exactly like
        a missing one unless `admin`; without a principal, `admin=True` is required. This checks the owner
        only: callers serving readers use `MeshService.own_record`, which also checks their current roles."""

    def list(self, limit: int = 20, principal_id: str | None = None) -> list[ProvenanceRecord]:
        """The newest records first, optionally only one principal's."""

    def verify(self) -> VerifyReport:
        """Walk the whole chain and the anchor; every problem names a seq and request id."""

    def close(self) -> None:
        """Release connections; the log reopens on the next call."""


class SqlProvenanceLog(ABC):
    """A ProvenanceLog in two tables, `provenance` (one row per record) and `provenance_head` (the anchor).
    Threads share one connection under a lock; appends queued while a commit is in flight share the next
    one (retrieval/group_commit.py), and each caller returns once its own record has committed."""

    name: str
    _label: str  # the log as error messages name it: a file, or a schema on a server (never a password)

    def __init__(self) -> None:
        self._conn: Any = None
        self._ready = False
        self._lock = threading.RLock()
        self._group: GroupCommitter[Prepared, ProvenanceRecord] = GroupCommitter(self._append_batch)

    def warm_up(self) -> None:
        if self._ready:  # set up already: no need to wait for a commit in flight
            return
        with self._lock:
            if not self._ready:
                self._set_up()
                self._ready = True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def append(self, record: ProvenanceRecord) -> ProvenanceRecord:
        """Durable when it returns (see the backend's `_writing`); appends queued meanwhile share the next
        commit."""
        prepared = prepare(record)
        self.warm_up()
        return self._group.submit(prepared)

    @property
    def commit_stats(self) -> dict[str, float | int]:
        return self._group.report()

    def get(self, request_id: str, principal: Principal | None = None, *,
            admin: bool = False) -> ProvenanceRecord:
        if principal is None and not admin:
            raise ValueError("pass the caller's principal, or admin=True for operator tools")
        self.warm_up()
        with self._reading() as conn:
            data = self._stored(conn, [request_id]).get(request_id)
        if data is None:
            raise not_found(request_id)
        owner = data.get("principal")
        if not admin and (principal is None or not isinstance(owner, Mapping)
                          or owner.get("id") != principal.id):
            raise not_found(request_id)
        return ProvenanceRecord.from_dict(data)

    def list(self, limit: int = 20, principal_id: str | None = None) -> list[ProvenanceRecord]:
        if not 1 <= limit <= MAX_LIST:
            raise ConfigError(f"limit must be between 1 and {MAX_LIST}, got {limit}")
        self.warm_up()
        with self._reading() as conn:
            found = self._newest(conn, limit, principal_id)
        return [ProvenanceRecord.from_dict(data) for data in found]

    def verify(self) -> VerifyReport:
        """Walks one snapshot on a connection of its own, so appends go on meanwhile."""
        checker = ChainChecker()
        try:
            with self._snapshot() as (head, rows):
                for row in rows:
                    checker.feed(row)
        except UnreadableLog as exc:
            return checker.unreadable(str(exc))
        return checker.report(head)

    def _append_batch(self, prepared: Sequence[Prepared]) -> list[ProvenanceRecord | BaseException]:
        """One transaction of a fixed number of statements whatever the batch size: each statement
        releases the GIL and must win it back, which under concurrent requests costs up to a switch
        interval (5 ms) per statement."""
        with self._writing() as conn:
            head = self._locked_head(conn)
            if head is None:
                raise ProvenanceCorrupt(f"the head anchor of {self._label} is missing; run "
                                        "`meshrag provenance verify` and restore the log from a backup")
            ids = list(dict.fromkeys(item.record.request_id for item in prepared))
            stored = {rid: ProvenanceRecord.from_dict(data) for rid, data in self._stored(conn, ids).items()}
            results, rows = chain_batch(prepared, stored, head)
            if rows:
                self._insert(conn, rows)
        return results

    # -- what a backend supplies ------------------------------------------------------------------

    @abstractmethod
    def _set_up(self) -> None:
        """Open the store and create the tables, triggers and anchor if missing (called under the lock)."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """This log's connection for reads, under the lock, its errors raised as domain errors."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Any]:
        """This log's connection inside one durable write transaction: committed on a clean exit, rolled
        back on an error."""

    @abstractmethod
    def _locked_head(self, conn: Any) -> Head | None:
        """The anchor, locked against other writers until the transaction ends; None if it is missing."""

    @abstractmethod
    def _stored(self, conn: Any, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records of those of `request_ids` that have one, by request id."""

    @abstractmethod
    def _insert(self, conn: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert chained rows (seq, request_id, principal_id, created_at, record text, prev_hash, hash)
        in one statement and move the anchor onto the last."""

    @abstractmethod
    def _newest(self, conn: Any, limit: int, principal_id: str | None) -> list[dict[str, Any]]:
        """Up to `limit` stored records, newest first, only `principal_id`'s if given."""

    @abstractmethod
    def _snapshot(self) -> AbstractContextManager[tuple[Head | None, Iterable[StoredRow]]]:
        """The anchor and every row in seq order from one snapshot, on a connection of its own. Raises
        UnreadableLog when the store as a whole cannot be read."""
