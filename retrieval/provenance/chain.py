"""Hashing and chaining: a record's canonical JSON, its hash, and how a batch of records is chained
after the head anchor.

hash = sha256(canonical JSON of the record's dict without `hash`), where canonical JSON means sorted
keys, no whitespace, UTF-8 (not ASCII-escaped) and floats with an integral value written as integers
(so the bytes survive a PostgreSQL jsonb round trip, which prints 1e16 without exponent and has no
-0.0). The dict includes `seq` (1..n), `prev_request_id` and `prev_hash` (64 zeros for the first
record), so each record commits to the whole chain before it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from retrieval.provenance.record import ProvenanceRecord, check_request_id, normalised
from retrieval.requests import RequestIdConflict, client_id_of

GENESIS_HASH = "0" * 64
_CHAIN_FIELDS = ("seq", "prev_request_id", "prev_hash", "hash")
Head = tuple[int, str | None, str]  # the anchor and the last record: seq, request_id, hash


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


def _content(data: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in data.items() if k not in _CHAIN_FIELDS})


def _existing_or_error(record: ProvenanceRecord, stored: ProvenanceRecord) -> ProvenanceRecord | RequestIdConflict:
    """A retry (same request id and content) gets the stored record; a different record gets the error."""
    if _content(stored.as_dict()) == _content(record.as_dict()):
        return stored
    return RequestIdConflict(f"request id {client_id_of(record.request_id)!r} already names one of your "
                             "earlier answers; send a new X-Request-ID, or none to get a generated one")


@dataclass(frozen=True)
class Prepared:
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


def chain_batch(prepared: Sequence[Prepared], stored: Mapping[str, ProvenanceRecord], head: Head
                ) -> tuple[list[ProvenanceRecord | BaseException], list[tuple[Any, ...]]]:
    """Chain a batch after `head`: a result per item (the chained record, the stored one for a retry,
    a RequestIdConflict for a different record under a used request id) and the rows to insert, in order."""
    results: list[ProvenanceRecord | BaseException] = []
    rows: list[tuple[Any, ...]] = []
    known = dict(stored)
    for item in prepared:
        record = item.record
        if record.request_id in known:
            results.append(_existing_or_error(record, known[record.request_id]))
            continue
        chained, text = item.chained(*head)
        rows.append((chained.seq, chained.request_id, chained.principal.id, chained.created_at, text,
                     chained.prev_hash, chained.hash))
        head = (chained.seq, chained.request_id, chained.hash)
        known[chained.request_id] = chained
        results.append(chained)
    return results, rows


def prepare(record: ProvenanceRecord) -> Prepared:
    """An unchained record made ready to chain (see Prepared); refuses one that is already chained."""
    if record.hash or record.seq:
        raise ValueError(f"provenance record {record.request_id!r} is already chained as seq {record.seq}; "
                         "append the unchained record from record_from()")
    check_request_id(record.request_id)
    normal, data = normalised(record)
    return Prepared(normal, tuple(sorted((k, _piece(k, v)) for k, v in data.items() if k not in _CHAIN_FIELDS)))


