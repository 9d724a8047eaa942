"""Verification: walk the stored rows in seq order and the head anchor, and name every problem.

An edited record no longer matches its hash; an edited-and-rehashed or reordered one breaks the next
record's prev_hash; deleted records leave a seq gap (named by the request id of the record after it);
a truncated tail ends before the anchor. See retrieval/provenance/__init__.py for what it cannot detect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from retrieval.provenance.chain import GENESIS_HASH, Head, record_hash

ProblemKind = Literal["edited", "chain_broken", "seq_gap", "tail_truncated", "anchor", "unreadable"]


@dataclass(frozen=True)
class VerifyProblem:
    kind: ProblemKind
    seq: int | None
    request_id: str | None
    detail: str

    def __str__(self) -> str:
        where = "the log" if self.seq is None else f"seq {self.seq} (request {self.request_id or 'unknown'})"
        return f"{self.kind}: {where}: {self.detail}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of walking the whole chain; `head_hash` is worth exporting elsewhere."""

    records: int
    head_seq: int | None
    head_hash: str | None
    problems: tuple[VerifyProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq,
                "head_hash": self.head_hash,
                "problems": [asdict(p) | {"message": str(p)} for p in self.problems]}


@dataclass(frozen=True)
class StoredRow:
    """A stored row as read back: columns, the parsed record (None if unreadable) and what was wrong."""

    seq: int
    request_id: str
    prev_hash: str
    hash: str
    record: dict[str, Any] | None
    defect: str | None = None


class ChainChecker:
    """Fed rows in seq order; collects every problem (not just the first) so a report names them all."""

    def __init__(self) -> None:
        self.problems: list[VerifyProblem] = []
        self.records = 0
        self._last: Head = (0, None, GENESIS_HASH)

    def feed(self, row: StoredRow) -> None:
        self.records += 1
        data = row.record
        if data is None:
            self._problem("unreadable", row.seq, row.request_id,
                          f"the stored record cannot be read ({row.defect})")
            self._last = (row.seq, row.request_id, row.hash)
            return
        edits = [row.defect] if row.defect else []
        for name in ("seq", "request_id", "prev_hash", "hash"):
            if data.get(name) != getattr(row, name):
                edits.append(f"its {name} column ({getattr(row, name)!r}) differs from the record "
                             f"({data.get(name)!r})")
        try:
            if record_hash(data) != data.get("hash"):
                edits.append("its content no longer matches its hash")
        except (TypeError, ValueError) as exc:
            edits.append(f"its content cannot be hashed ({exc})")
        if edits:
            self._problem("edited", row.seq, row.request_id,
                          "; ".join(edits) + " — it was changed after it was written")
        seq, request_id = data.get("seq", row.seq), data.get("request_id", row.request_id)
        if not isinstance(seq, int):
            seq = row.seq
        last_seq, last_rid, last_hash = self._last
        if seq > last_seq + 1:
            missing = f"seq {last_seq + 1}" if seq == last_seq + 2 else f"seqs {last_seq + 1}..{seq - 1}"
            self._problem("seq_gap", seq - 1, data.get("prev_request_id"),
                          f"{missing} missing before seq {seq} (request {request_id}) — deleted")
        elif seq <= last_seq:
            self._problem("chain_broken", seq, request_id, f"comes after seq {last_seq} — reordered")
        elif data.get("prev_hash") != last_hash or data.get("prev_request_id") != last_rid:
            before = f"seq {last_seq} (request {last_rid})" if last_seq else "the start of the log"
            self._problem("chain_broken", seq, request_id,
                          f"its prev_hash does not match {before}: a record before it was edited and "
                          "re-hashed, replaced or reordered")
        self._last = (seq, request_id, data.get("hash", row.hash))

    def report(self, head: Head | None) -> VerifyReport:
        last_seq, last_rid, last_hash = self._last
        if head is None:
            self._problem("anchor", last_seq or None, last_rid,
                          "the head anchor is missing, so a deleted tail cannot be ruled out")
            return self._report(None, None)
        head_seq, head_rid, head_hash = head
        if head_seq > last_seq:
            missing = f"seq {head_seq}" if head_seq == last_seq + 1 else f"seqs {last_seq + 1}..{head_seq}"
            self._problem("tail_truncated", head_seq, head_rid,
                          f"the anchor says the log ends here but the last record is seq {last_seq}: "
                          f"{missing} deleted")
        elif head_seq < last_seq:
            self._problem("anchor", last_seq, last_rid,
                          f"records after the anchor (seq {head_seq}) were written outside the log, "
                          "or the anchor was moved back")
        elif head_hash != last_hash or head_rid != last_rid:
            self._problem("anchor", last_seq, last_rid,
                          "the last record does not match the anchor: it was replaced, or the anchor edited")
        return self._report(head_seq, head_hash)

    def unreadable(self, detail: str) -> VerifyReport:
        self._problem("unreadable", None, None, detail)
        return self._report(None, None)

    def _problem(self, kind: ProblemKind, seq: int | None, request_id: str | None, detail: str) -> None:
        self.problems.append(VerifyProblem(kind, seq, request_id, detail))

    def _report(self, head_seq: int | None, head_hash: str | None) -> VerifyReport:
        return VerifyReport(self.records, head_seq, head_hash, tuple(self.problems))


class UnreadableLog(Exception):
    """Raised by a backend's snapshot when the store as a whole cannot be read (not one record: the file
    or the table); verify reports it as an `unreadable` problem instead of raising."""
