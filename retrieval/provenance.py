"""The provenance log: one append-only, hash-chained record per answer, durable before the answer returns.

hash = sha256(canonical JSON of the record's dict without `hash`), where canonical JSON means sorted
keys, no whitespace, UTF-8 (not ASCII-escaped) and floats with an integral value written as integers
(so the bytes survive a PostgreSQL jsonb round trip, which prints 1e16 without exponent and has no
-0.0). The dict includes `seq` (1..n), `prev_request_id` and `prev_hash` (64 zeros for the first
record), so each record commits to the whole chain before it.

A head anchor (seq, request_id, hash of the last record) is moved onto the last record in the same
transaction as the appends (a trigger refuses any other move), and appends chain from the anchor, not
from the last row. Appends that arrive while a commit is in flight share the next transaction
(retrieval/group_commit.py); each caller returns only once its own record has committed. `verify()` therefore detects an
edited record (its content no longer matches its hash), an edited-and-rehashed or reordered record
(the next record's prev_hash no longer matches), deleted records (a seq gap, naming the deleted
record's request id from the record after it) and a truncated tail (the log ends before the anchor).
Triggers refuse UPDATE and DELETE, so accidents fail loudly instead of needing verify.

What it cannot detect: someone with full write access to the database who drops the triggers and
rewrites the chain from the first changed record to the end, anchor included, leaves a log that
verifies. Exporting `verify().head_hash` elsewhere (a ticket, another system's log, a timestamping
service) and checking later that the record with that seq still has that hash closes this gap.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from knowledge.errors import ConfigError, ProvenanceCorrupt, ProvenanceNotFound, StoreUnavailable
from knowledge.model import Principal
from retrieval.group_commit import GroupCommitter
from retrieval.types import Answer, Citation, SearchResult, flat_dict

# 2: the answer's outcome (answered / possibly relevant / abstained), short answer and decision (answer
# model id, thresholds, answerability). Records of version 1 read with the outcome their `abstained` implies.
RECORD_VERSION = 2
GENESIS_HASH = "0" * 64
MAX_LIST = 1000
ProvenanceKind = Literal["sqlite", "postgres"]
ProblemKind = Literal["edited", "chain_broken", "seq_gap", "tail_truncated", "anchor", "unreadable"]
_CHAIN_FIELDS = ("seq", "prev_request_id", "prev_hash", "hash")


# -- the record ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievedRef:
    """One retrieved chunk as provenance keeps it: where it came from and how it ranked, never its text."""

    chunk_id: str
    product_id: str
    product_version: str
    chunk_version: str
    embedding_version: str
    document: str
    doc_revision: str
    start: int
    end: int
    heading_path: tuple[str, ...]
    classification: str
    scores: dict[str, float | int | None]


@dataclass(frozen=True)
class ProvenanceRecord:
    """Who asked what, which release and chunks (in rank order) answered it, and the answer with its
    citations. Enough to replay the request: release id + retrieval params + principal + question."""

    request_id: str
    created_at: str  # UTC, ISO 8601
    principal: Principal
    question: str
    release_id: str
    retrieval_params: dict[str, Any]
    retrieved: tuple[RetrievedRef, ...]  # in rank order
    answerer: str  # name@version
    prompt_version: str | None
    model: str | None
    answer: str
    abstained: bool
    support: float
    citations: tuple[Citation, ...]  # cited text only, already PII-redacted
    dropped_citations: int
    timings: dict[str, float]
    outcome: str = "answered"
    short: dict[str, Any] | None = None  # text, kind, marker, start, end (span in the cited text)
    decision: dict[str, Any] = field(default_factory=dict)  # answer model id, thresholds, scores
    # Assigned by ProvenanceLog.append:
    seq: int = 0
    prev_request_id: str | None = None
    prev_hash: str = ""
    hash: str = ""
    record_version: int = RECORD_VERSION

    @property
    def chunk_ids(self) -> tuple[str, ...]:
        return tuple(r.chunk_id for r in self.retrieved)

    @property
    def product_ids(self) -> frozenset[str]:
        """Every product the record retrieved or cites: a reader must be able to read all of them."""
        return frozenset(r.product_id for r in self.retrieved) | {c.product_id for c in self.citations}

    def as_dict(self) -> dict[str, Any]:
        """The JSON form that is stored and hashed."""
        return {
            "record_version": self.record_version, "request_id": self.request_id,
            "created_at": self.created_at,
            "principal": {"id": self.principal.id, "roles": sorted(self.principal.roles)},
            "question": self.question, "release_id": self.release_id,
            "retrieval_params": self.retrieval_params,
            "retrieved": [flat_dict(r) | {"heading_path": list(r.heading_path), "scores": dict(r.scores)}
                          for r in self.retrieved],
            "answerer": self.answerer, "prompt_version": self.prompt_version, "model": self.model,
            "answer": self.answer, "abstained": self.abstained, "support": self.support,
            "citations": [c.as_dict() for c in self.citations], "dropped_citations": self.dropped_citations,
            "timings": self.timings, "seq": self.seq, "prev_request_id": self.prev_request_id,
            "prev_hash": self.prev_hash, "hash": self.hash,
        } | ({"outcome": self.outcome, "short": self.short, "decision": self.decision}
             if self.record_version >= 2 else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProvenanceRecord:
        version = data.get("record_version") if isinstance(data, Mapping) else None
        if isinstance(version, int) and version > RECORD_VERSION:
            raise ConfigError(f"provenance record {data.get('request_id')!r} has format {version}, newer "
                              f"than this meshrag reads ({RECORD_VERSION}); upgrade meshrag")
        try:
            return cls(
                request_id=data["request_id"], created_at=data["created_at"],
                principal=Principal(id=data["principal"]["id"], roles=frozenset(data["principal"]["roles"])),
                question=data["question"], release_id=data["release_id"],
                retrieval_params=data["retrieval_params"],
                retrieved=tuple(RetrievedRef(**(r | {"heading_path": tuple(r["heading_path"])}))
                                for r in data["retrieved"]),
                answerer=data["answerer"], prompt_version=data["prompt_version"], model=data["model"],
                answer=data["answer"], abstained=data["abstained"], support=data["support"],
                citations=tuple(Citation(**(c | {"heading_path": tuple(c["heading_path"])}))
                                for c in data["citations"]),
                dropped_citations=data["dropped_citations"], timings=data["timings"],
                outcome=data.get("outcome", "abstained" if data["abstained"] else "answered"),
                short=data.get("short"), decision=data.get("decision", {}), seq=data["seq"],
                prev_request_id=data["prev_request_id"], prev_hash=data["prev_hash"], hash=data["hash"],
                record_version=data["record_version"],
            )
        except (KeyError, TypeError) as exc:
            rid = data.get("request_id") if isinstance(data, Mapping) else None
            raise ProvenanceCorrupt(f"provenance record {rid!r} does not have the expected shape ({exc!r}); "
                                    "run `meshrag provenance verify`") from exc


def record_from(
    request_id: str,
    principal: Principal,
    question: str,
    search: SearchResult,
    answer: Answer,
    timings: Mapping[str, float] | None = None,
    *,
    created_at: datetime | None = None,
) -> ProvenanceRecord:
    """The unchained record of one answer; `ProvenanceLog.append` assigns seq and hashes. Keeps no chunk
    text except the cited text inside citations (already PII-redacted by the answerer). `timings` (ms)
    are merged over `search.timings_ms`."""
    check_request_id(request_id)
    when = created_at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError(f"created_at must be timezone-aware, got {when!r}")
    hits = sorted(search.hits, key=lambda h: h.rank)
    draft = ProvenanceRecord(
        request_id=request_id, created_at=when.astimezone(UTC).isoformat(timespec="microseconds"),
        principal=principal, question=question, release_id=search.release_id,
        retrieval_params=dict(search.params),
        retrieved=tuple(
            RetrievedRef(chunk_id=h.chunk_id, product_id=h.product_id, product_version=h.product_version,
                         chunk_version=h.chunk_version, embedding_version=h.embedding_version,
                         document=h.chunk.document, doc_revision=h.chunk.doc_revision, start=h.chunk.start,
                         end=h.chunk.end, heading_path=h.chunk.heading_path, classification=h.classification,
                         scores=h.scores())
            for h in hits),
        answerer=answer.answerer, prompt_version=answer.prompt_version, model=answer.model,
        answer=answer.text,
        abstained=answer.abstained, support=answer.support, citations=answer.citations,
        outcome=answer.outcome, short=asdict(answer.short) if answer.short else None, decision=answer.decision,
        dropped_citations=answer.dropped_citations, timings={**search.timings_ms, **(timings or {})},
    )
    return _normalised(draft)[0]


def check_request_id(request_id: str) -> None:
    """Refuse request ids that cannot name a record (empty, over 200 characters, control characters)."""
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 200 \
            or not request_id.isprintable():
        raise ValueError(f"a request id must be 1 to 200 printable characters, got {request_id!r}")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, integral floats as integers; NaN and infinity are refused."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def record_hash(data: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a stored record's dict, every field except `hash`."""
    return hashlib.sha256(canonical_json({k: v for k, v in data.items() if k != "hash"})).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"provenance records hold finite numbers only, got {value!r}")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _normalised(record: ProvenanceRecord) -> tuple[ProvenanceRecord, dict[str, Any]]:
    """The record exactly as it will read back from storage (JSON-native values only), and its dict."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "item"):  # numpy scalars
            return obj.item()
        if isinstance(obj, set | frozenset):
            return sorted(obj)
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"provenance record {record.request_id!r} holds a {type(obj).__name__}, "
                        "which cannot be stored as JSON")

    try:
        data = json.loads(json.dumps(record.as_dict(), default=default, allow_nan=False))
    except ValueError as exc:
        raise ValueError(f"provenance record {record.request_id!r} holds NaN or infinity ({exc})") from exc
    return ProvenanceRecord.from_dict(data), data


def _content(data: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in data.items() if k not in _CHAIN_FIELDS})


def _existing_or_error(record: ProvenanceRecord, stored: ProvenanceRecord) -> ProvenanceRecord | ConfigError:
    """A retry (same request id and content) gets the stored record; a different record gets the error."""
    if _content(stored.as_dict()) == _content(record.as_dict()):
        return stored
    return ConfigError(f"request id {record.request_id!r} already has a different provenance record "
                       f"(seq {stored.seq}); every answer needs its own request id")


@dataclass(frozen=True)
class _Prepared:
    """A normalised, unchained record and its canonical JSON cut into one piece per field, made before
    an append waits for the writer. Chaining then only splices in `seq`, `prev_request_id`, `prev_hash`
    and `hash` and hashes the bytes: the serialisation, most of the cost, stays out of the commit that
    every concurrent append waits for. The result equals canonical_json of the chained record's dict
    (canonical JSON is the fields sorted by key, so one field's text does not depend on the others')."""

    record: ProvenanceRecord
    pieces: tuple[tuple[str, str], ...]  # (field, '"field":<canonical value>') of every non-chain field

    def chained(self, head_seq: int, head_request_id: str | None, head_hash: str
                ) -> tuple[ProvenanceRecord, str]:
        """The record as the next after the head, and its stored (canonical JSON) text."""
        chain: dict[str, Any] = {"seq": head_seq + 1, "prev_request_id": head_request_id, "prev_hash": head_hash}
        hash_ = hashlib.sha256(self._joined(chain).encode("utf-8")).hexdigest()
        record = replace(self.record, seq=head_seq + 1, prev_request_id=head_request_id, prev_hash=head_hash,
                         hash=hash_)
        return record, self._joined(chain | {"hash": hash_})

    def _joined(self, chain: Mapping[str, Any]) -> str:
        pieces = sorted((*self.pieces, *((k, _piece(k, v)) for k, v in chain.items())))
        return "{" + ",".join(text for _, text in pieces) + "}"


def _piece(key: str, value: Any) -> str:
    return canonical_json({key: value}).decode("utf-8")[1:-1]


def _chain_batch(prepared: Sequence[_Prepared], stored: Mapping[str, ProvenanceRecord],
                 head: tuple[int, str | None, str] | None
                 ) -> tuple[list[ProvenanceRecord | BaseException], list[tuple[Any, ...]]]:
    """Chain a batch after `head`: a result per item (the chained record, the stored one for a retry,
    a ConfigError for a different record under a used request id) and the rows to insert, in order."""
    results: list[ProvenanceRecord | BaseException] = []
    rows: list[tuple[Any, ...]] = []
    known = dict(stored)
    for item in prepared:
        record = item.record
        if record.request_id in known:
            results.append(_existing_or_error(record, known[record.request_id]))
            continue
        assert head is not None  # the callers refuse a missing anchor before
        chained, text = item.chained(*head)
        rows.append((chained.seq, chained.request_id, chained.principal.id, chained.created_at, text,
                     chained.prev_hash, chained.hash))
        head = (chained.seq, chained.request_id, chained.hash)
        known[chained.request_id] = chained
        results.append(chained)
    return results, rows


def _prepared(record: ProvenanceRecord) -> _Prepared:
    if record.hash or record.seq:
        raise ValueError(f"provenance record {record.request_id!r} is already chained as seq {record.seq}; "
                         "append the unchained record from record_from()")
    check_request_id(record.request_id)
    normal, data = _normalised(record)
    return _Prepared(normal, tuple(sorted((k, _piece(k, v)) for k, v in data.items() if k not in _CHAIN_FIELDS)))


def not_found(request_id: str) -> ProvenanceNotFound:
    """The one error for "missing", "someone else's" and "cites what you cannot read": the caller must
    not learn which it is."""
    return ProvenanceNotFound(f"no provenance record with request id {request_id!r}; check the id "
                              "(answers return it as request_id)")


def _visible(request_id: str, data: Mapping[str, Any] | None, principal: Principal | None,
             admin: bool) -> ProvenanceRecord:
    if data is None:
        raise not_found(request_id)
    owner = data.get("principal")
    if not admin and (principal is None or not isinstance(owner, Mapping) or owner.get("id") != principal.id):
        raise not_found(request_id)
    return ProvenanceRecord.from_dict(data)


def _check_reader(principal: Principal | None, admin: bool) -> None:
    if principal is None and not admin:
        raise ValueError("pass the caller's principal, or admin=True for operator tools")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST:
        raise ConfigError(f"limit must be between 1 and {MAX_LIST}, got {limit}")


# -- verification ---------------------------------------------------------------------------------


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
class _Row:
    """A stored row as read back: columns, the parsed record (None if unreadable) and what was wrong."""

    seq: int
    request_id: str
    prev_hash: str
    hash: str
    record: dict[str, Any] | None
    defect: str | None = None


class _ChainChecker:
    """Fed rows in seq order; collects every problem (not just the first) so a report names them all."""

    def __init__(self) -> None:
        self.problems: list[VerifyProblem] = []
        self.records = 0
        self._last: tuple[int, str | None, str] = (0, None, GENESIS_HASH)  # seq, request_id, hash

    def feed(self, row: _Row) -> None:
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

    def report(self, head: tuple[int, str | None, str] | None) -> VerifyReport:
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


# -- the interface --------------------------------------------------------------------------------


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


def create_provenance_log(kind: ProvenanceKind, data_dir: Path, dsn: str | None = None,
                          schema: str = "meshrag", *, create: bool = True) -> ProvenanceLog:
    """A log of `kind` (not yet warmed up): SQLite at `data_dir/provenance.sqlite`, or PostgreSQL at `dsn`
    (default: the embedded server under `data_dir/postgres`). `create=False` refuses a missing SQLite file."""
    data_dir = Path(data_dir)
    if kind == "sqlite":
        return SqliteProvenanceLog(data_dir / "provenance.sqlite", create=create)
    if kind == "postgres":
        if dsn is None:
            from indexing.stores.embedded_pg import start_postgres

            dsn = start_postgres(data_dir / "postgres")
        return PgProvenanceLog(dsn, schema)
    raise ConfigError(f"unknown provenance log kind {kind!r}; use 'sqlite' or 'postgres'")


# -- SQLite ---------------------------------------------------------------------------------------

_APPEND_ONLY = "provenance is append-only"
_SQLITE_HEAD = "SELECT seq, request_id, hash FROM provenance_head WHERE id = 1"
_SQLITE_DDL = (
    ("CREATE TABLE IF NOT EXISTS provenance (seq INTEGER PRIMARY KEY CHECK (seq > 0),"
     " request_id TEXT NOT NULL UNIQUE, principal_id TEXT NOT NULL, created_at TEXT NOT NULL,"
     " record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"),
    "CREATE INDEX IF NOT EXISTS provenance_principal ON provenance (principal_id, seq)",
    ("CREATE TABLE IF NOT EXISTS provenance_head (id INTEGER PRIMARY KEY CHECK (id = 1),"
     " seq INTEGER NOT NULL, request_id TEXT, hash TEXT NOT NULL)"),
    # Seed the anchor only for a new log: a deleted anchor must not quietly restart the chain.
    (f"INSERT INTO provenance_head (id, seq, request_id, hash) SELECT 1, 0, NULL, '{GENESIS_HASH}'"
     " WHERE NOT EXISTS (SELECT 1 FROM provenance) AND NOT EXISTS (SELECT 1 FROM provenance_head)"),
    (f"CREATE TRIGGER IF NOT EXISTS provenance_no_update BEFORE UPDATE ON provenance"
     f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"),
    (f"CREATE TRIGGER IF NOT EXISTS provenance_no_delete BEFORE DELETE ON provenance"
     f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"),
    (f"CREATE TRIGGER IF NOT EXISTS provenance_head_no_delete BEFORE DELETE ON provenance_head"
     f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"),
    # The anchor moves forward only, and only onto the last record (seq and hash): a batch of appends
    # moves it once. Replaced on every open, so logs made by older versions (one step per record) get it.
    "DROP TRIGGER IF EXISTS provenance_head_forward",
    ("CREATE TRIGGER provenance_head_forward BEFORE UPDATE ON provenance_head"
     " WHEN NEW.seq <= OLD.seq OR NEW.seq IS NOT (SELECT max(seq) FROM provenance)"
     " OR NEW.hash IS NOT (SELECT hash FROM provenance WHERE seq = NEW.seq)"
     f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}: the anchor only moves forward, onto the last record');"
     " END"),
)


class SqliteProvenanceLog:
    """ProvenanceLog in one SQLite file (WAL, synchronous=FULL): the embedded default. Appends from
    threads share one connection under a lock; appends from other processes wait on BEGIN IMMEDIATE."""

    name = "sqlite"

    def __init__(self, path: Path, *, create: bool = True, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser().absolute()
        self._create = create
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._group: GroupCommitter[_Prepared, ProvenanceRecord] = GroupCommitter(self._append_batch)

    def warm_up(self) -> None:
        if self._conn is not None:  # open already: no need to wait for a commit in flight
            return
        with self._lock:
            if self._conn is not None:
                return
            self._check_exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._errors():
                conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
                try:
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                    if mode != "wal":
                        raise StoreUnavailable(f"{self.path} cannot use write-ahead logging (journal mode "
                                               f"{mode}); put the data dir on a local file system")
                    conn.execute("PRAGMA synchronous=FULL")
                    conn.execute("BEGIN IMMEDIATE")
                    for statement in _SQLITE_DDL:
                        conn.execute(statement)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.close()
                    raise
            self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def append(self, record: ProvenanceRecord) -> ProvenanceRecord:
        """Durable (fsynced) when it returns; appends queued meanwhile share the next commit."""
        record = _prepared(record)
        self.warm_up()
        return self._group.submit(record)

    @property
    def commit_stats(self) -> dict[str, float | int]:
        return self._group.report()

    def _append_batch(self, prepared: Sequence[_Prepared]) -> list[ProvenanceRecord | BaseException]:
        """One transaction of a fixed number of statements whatever the batch size: each statement
        releases the GIL and must win it back, which under concurrent requests costs up to a switch
        interval (5 ms) per statement."""
        with self._lock, self._errors():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                head = conn.execute(_SQLITE_HEAD).fetchone()
                if head is None:
                    raise ProvenanceCorrupt(f"the head anchor of {self.path} is missing; run "
                                            "`meshrag provenance verify` and restore the log from a backup")
                ids = list(dict.fromkeys(item.record.request_id for item in prepared))
                stored = {rid: ProvenanceRecord.from_dict(self._parsed(text)) for rid, text in conn.execute(
                    f"SELECT request_id, record FROM provenance WHERE request_id IN ({','.join('?' * len(ids))})",
                    ids)}
                results, rows = _chain_batch(prepared, stored, head)
                if rows:
                    conn.execute("INSERT INTO provenance (seq, request_id, principal_id, created_at, record,"
                                 " prev_hash, hash) VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows)),
                                 [value for row in rows for value in row])
                    last = rows[-1]
                    conn.execute("UPDATE provenance_head SET seq = ?, request_id = ?, hash = ? WHERE id = 1",
                                 (last[0], last[1], last[6]))
                    conn.execute("COMMIT")
                else:
                    conn.execute("ROLLBACK")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return results

    def get(self, request_id: str, principal: Principal | None = None, *,
            admin: bool = False) -> ProvenanceRecord:
        _check_reader(principal, admin)
        self.warm_up()
        with self._lock, self._errors():
            row = self._connection().execute("SELECT record FROM provenance WHERE request_id = ?",
                                             (request_id,)).fetchone()
        return _visible(request_id, None if row is None else self._parsed(row[0]), principal, admin)

    def list(self, limit: int = 20, principal_id: str | None = None) -> list[ProvenanceRecord]:
        _check_limit(limit)
        self.warm_up()
        where, params = ("WHERE principal_id = ?", (principal_id, limit)) if principal_id else ("", (limit,))
        with self._lock, self._errors():
            rows = self._connection().execute(
                f"SELECT record FROM provenance {where} ORDER BY seq DESC LIMIT ?", params).fetchall()
        return [ProvenanceRecord.from_dict(self._parsed(text)) for (text,) in rows]

    def verify(self) -> VerifyReport:
        """Reads a snapshot on its own read-only connection, so appends go on meanwhile. Does not need
        warm_up(): a file too damaged to open is reported as unreadable rather than raised."""
        if not self.path.exists():
            raise ConfigError(f"no provenance log at {self.path}; it is created when the first answer is "
                              "logged — check --data-dir")
        checker = _ChainChecker()
        try:
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=self._busy_timeout_s,
                                   isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot open {self.path} ({exc}); check the path and its "
                                   "permissions") from exc
        try:
            conn.text_factory = lambda b: b.decode("utf-8", "replace")
            conn.execute("BEGIN")  # one snapshot for the rows and the anchor
            head = conn.execute(_SQLITE_HEAD).fetchone()
            rows = conn.execute("SELECT seq, request_id, prev_hash, hash, CAST(record AS BLOB)"
                                " FROM provenance ORDER BY seq")
            for seq, request_id, prev_hash, hash_, raw in rows:
                checker.feed(_sqlite_row(seq, request_id, prev_hash, hash_, raw))
            return checker.report(head)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreUnavailable(f"{self.path} is locked ({exc}); retry in a moment") from exc
            return checker.unreadable(f"{self.path} cannot be read ({exc}); restore it from a backup")
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            return checker.unreadable(f"{self.path} is damaged ({exc}); restore it from a backup")
        finally:
            conn.close()

    def _check_exists(self) -> None:
        if not self._create and not self.path.exists():
            raise ConfigError(f"no provenance log at {self.path}; it is created when the first answer is "
                              "logged — check --data-dir")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"the provenance log {self.path} was closed while in use; retry")
        return self._conn

    def _parsed(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProvenanceCorrupt(f"a record in {self.path} is not valid JSON ({exc}); run "
                                    "`meshrag provenance verify`") from exc
        if not isinstance(data, dict):
            raise ProvenanceCorrupt(f"a record in {self.path} is not a JSON object; run "
                                    "`meshrag provenance verify`")
        return data

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, I/O error
            raise StoreUnavailable(f"the provenance log {self.path} is unavailable ({exc}); "
                                   "retry later") from exc
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # IntegrityError etc.: a bug, not damage
                raise
            raise ProvenanceCorrupt(f"the provenance log {self.path} is damaged ({exc}); run "
                                    "`meshrag provenance verify` and restore it from a backup") from exc


def _sqlite_row(seq: int, request_id: str, prev_hash: str, hash_: str, raw: bytes | None) -> _Row:
    try:
        text = (raw or b"").decode("utf-8")
        data = json.loads(text)
    except ValueError as exc:  # bad UTF-8 or bad JSON
        return _Row(seq, request_id, prev_hash, hash_, None, str(exc))
    if not isinstance(data, dict):
        return _Row(seq, request_id, prev_hash, hash_, None, "not a JSON object")
    try:
        canonical = canonical_json(data) == raw
    except (TypeError, ValueError):
        canonical = False
    # Records are written in canonical form; any other byte sequence was written by something else.
    return _Row(seq, request_id, prev_hash, hash_, data,
                None if canonical else "its stored text is not canonical")


# -- PostgreSQL -----------------------------------------------------------------------------------

_PG_DDL = (
    "SELECT pg_advisory_xact_lock(hashtext('meshrag.provenance.ddl'))",
    "CREATE SCHEMA IF NOT EXISTS {s}",
    ("CREATE TABLE IF NOT EXISTS {s}.provenance (seq bigint PRIMARY KEY CHECK (seq > 0),"
     " request_id text NOT NULL UNIQUE, principal_id text NOT NULL, created_at timestamptz NOT NULL,"
     " record jsonb NOT NULL, prev_hash text NOT NULL, hash text NOT NULL)"),
    "CREATE INDEX IF NOT EXISTS provenance_principal ON {s}.provenance (principal_id, seq)",
    ("CREATE TABLE IF NOT EXISTS {s}.provenance_head (id smallint PRIMARY KEY CHECK (id = 1),"
     " seq bigint NOT NULL, request_id text, hash text NOT NULL)"),
    # Seed the anchor only for a new log: a deleted anchor must not quietly restart the chain.
    (f"INSERT INTO {{s}}.provenance_head (id, seq, request_id, hash) SELECT 1, 0, NULL, '{GENESIS_HASH}'"
     " WHERE NOT EXISTS (SELECT 1 FROM {s}.provenance) AND NOT EXISTS (SELECT 1 FROM {s}.provenance_head)"),
    ("CREATE OR REPLACE FUNCTION {s}.provenance_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
     f" BEGIN RAISE EXCEPTION '{_APPEND_ONLY}: % on % refused', TG_OP, TG_TABLE_NAME; END $$"),
    ("CREATE OR REPLACE FUNCTION {s}.provenance_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN IF NEW.seq <= OLD.seq OR NEW.seq IS DISTINCT FROM (SELECT max(seq) FROM {s}.provenance)"
     " OR NEW.hash IS DISTINCT FROM (SELECT hash FROM {s}.provenance WHERE seq = NEW.seq) THEN"
     f" RAISE EXCEPTION '{_APPEND_ONLY}: the anchor only moves forward, onto the last record';"
     " END IF; RETURN NEW; END $$"),
    ("CREATE OR REPLACE TRIGGER provenance_append_only BEFORE UPDATE OR DELETE ON {s}.provenance"
     " FOR EACH ROW EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_no_truncate BEFORE TRUNCATE ON {s}.provenance"
     " FOR EACH STATEMENT EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_head_no_delete BEFORE DELETE ON {s}.provenance_head"
     " FOR EACH ROW EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_head_no_truncate BEFORE TRUNCATE ON {s}.provenance_head"
     " FOR EACH STATEMENT EXECUTE FUNCTION {s}.provenance_append_only()"),
    ("CREATE OR REPLACE TRIGGER provenance_head_forward BEFORE UPDATE ON {s}.provenance_head"
     " FOR EACH ROW EXECUTE FUNCTION {s}.provenance_head_forward()"),
)
_PG_HEAD = "SELECT seq, request_id, hash FROM {s}.provenance_head WHERE id = 1"


class PgProvenanceLog:
    """ProvenanceLog in PostgreSQL: `provenance` and `provenance_head` in `schema`. Appends lock the head
    row (SELECT … FOR UPDATE), so appends from any number of processes form one chain. A lost connection
    raises StoreUnavailable; the next call reconnects."""

    name = "postgres"

    def __init__(self, dsn: str, schema: str = "meshrag", *, connect_timeout: int = 5) -> None:
        if not schema or len(schema) > 63:
            raise ConfigError(f"schema name {schema!r} must have 1 to 63 characters")
        self.schema = schema
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        params = conninfo_to_dict(dsn)
        self._where = f"{params.get('host', 'localhost')}/{params.get('dbname', '')}"  # never the password
        self._conn: psycopg.Connection | None = None
        self._lock = threading.RLock()
        self._ready = False
        self._group: GroupCommitter[_Prepared, ProvenanceRecord] = GroupCommitter(self._append_batch)

    def warm_up(self) -> None:
        if self._ready:  # set up already: no need to wait for a commit in flight
            return
        with self._lock:
            if self._ready:
                return
            with self._transaction() as conn:
                for statement in _PG_DDL:
                    conn.execute(self._sql(statement))
            self._ready = True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def append(self, record: ProvenanceRecord) -> ProvenanceRecord:
        """Durable (committed with synchronous_commit=on) when it returns; appends queued meanwhile share
        the next commit."""
        record = _prepared(record)
        self.warm_up()
        return self._group.submit(record)

    @property
    def commit_stats(self) -> dict[str, float | int]:
        return self._group.report()

    def _append_batch(self, prepared: Sequence[_Prepared]) -> list[ProvenanceRecord | BaseException]:
        """One transaction of a fixed number of statements whatever the batch size (see SQLite's)."""
        with self._transaction() as conn:
            conn.execute("SET LOCAL synchronous_commit = on")  # durable at commit whatever the server default
            head = conn.execute(self._sql(_PG_HEAD + " FOR UPDATE")).fetchone()
            ids = list(dict.fromkeys(item.record.request_id for item in prepared))
            stored = {rid: ProvenanceRecord.from_dict(data) for rid, data in conn.execute(
                self._sql("SELECT request_id, record FROM {s}.provenance WHERE request_id = ANY(%s)"), (ids,))}
            if head is None and len(stored) < len(ids):
                raise ProvenanceCorrupt(f"the head anchor of schema {self.schema!r} at {self._where} is "
                                        "missing; run `meshrag provenance verify` and restore the log from a "
                                        "backup")
            results, rows = _chain_batch(prepared, stored, head)
            if rows:
                conn.execute(
                    self._sql("INSERT INTO {s}.provenance (seq, request_id, principal_id, created_at, record,"
                              " prev_hash, hash) VALUES ")
                    + sql.SQL(",").join([sql.SQL("(%s, %s, %s, %s::timestamptz, %s::jsonb, %s, %s)")] * len(rows)),
                    [value for row in rows for value in row])
                last = rows[-1]
                conn.execute(self._sql("UPDATE {s}.provenance_head SET seq = %s, request_id = %s, hash = %s"
                                       " WHERE id = 1"), (last[0], last[1], last[6]))
        return results

    def get(self, request_id: str, principal: Principal | None = None, *,
            admin: bool = False) -> ProvenanceRecord:
        _check_reader(principal, admin)
        self.warm_up()
        with self._transaction() as conn:
            row = conn.execute(self._sql("SELECT record FROM {s}.provenance WHERE request_id = %s"),
                               (request_id,)).fetchone()
        return _visible(request_id, None if row is None else row[0], principal, admin)

    def list(self, limit: int = 20, principal_id: str | None = None) -> list[ProvenanceRecord]:
        _check_limit(limit)
        self.warm_up()
        where, params = ("WHERE principal_id = %s", (principal_id, limit)) if principal_id else ("", (limit,))
        with self._transaction() as conn:
            rows = conn.execute(self._sql(f"SELECT record FROM {{s}}.provenance {where} ORDER BY seq DESC"
                                          " LIMIT %s"), params).fetchall()
        return [ProvenanceRecord.from_dict(data) for (data,) in rows]

    def verify(self) -> VerifyReport:
        """Streams one REPEATABLE READ snapshot on its own connection, so appends go on meanwhile."""
        checker = _ChainChecker()
        with (
            _pg_errors(self._where),
            psycopg.connect(self._dsn, connect_timeout=self._connect_timeout) as conn,
        ):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                head = conn.execute(self._sql(_PG_HEAD)).fetchone()
            except psycopg.errors.UndefinedTable as exc:
                raise ConfigError(f"no provenance log in schema {self.schema!r} at {self._where}; check "
                                  "the DSN and schema") from exc
            with conn.cursor(name="meshrag_provenance_verify") as cur:
                cur.itersize = 500
                cur.execute(self._sql("SELECT seq, request_id, prev_hash, hash, record"
                                      " FROM {s}.provenance ORDER BY seq"))
                for seq, request_id, prev_hash, hash_, data in cur:
                    ok = isinstance(data, dict)
                    checker.feed(_Row(seq, request_id, prev_hash, hash_, data if ok else None,
                                      None if ok else "not a JSON object"))
        return checker.report(head)

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(s=sql.Identifier(self.schema))

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction on this log's connection (a lock keeps threads off each other's transactions).
        A dropped idle connection is replaced once; a failure mid-transaction is StoreUnavailable."""
        with self._lock:
            conn = self._connection()
            try:
                with _pg_errors(self._where), conn.transaction():
                    yield conn
            except StoreUnavailable:
                self.close()
                raise

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("")  # ping: the server may have restarted since the last call
                return self._conn
            except psycopg.OperationalError:
                self.close()
        with _pg_errors(self._where):
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout)
        return self._conn


@contextmanager
def _pg_errors(where: str) -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(f"PostgreSQL at {where} is unavailable ({reason}); retry in a few seconds, "
                               "the provenance log reconnects by itself") from exc
