"""One record checked against the chain, for its owner: the part of `ProvenanceLog.verify` (which walks the
whole log, for operators) that concerns this record and the link to the record before it."""

from __future__ import annotations

from dataclasses import dataclass

from knowledge.errors import ProvenanceNotFound
from retrieval.provenance.chain import GENESIS_HASH, record_hash
from retrieval.provenance.record import ProvenanceRecord
from retrieval.provenance.storage import ProvenanceLog


@dataclass(frozen=True)
class RecordCheck:
    """One record checked against the chain: its content still matches its hash, and the record before it
    exists, is intact and has the hash this record names (the first record names the genesis hash)."""

    content_ok: bool
    link_ok: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.content_ok and self.link_ok


def _intact(record: ProvenanceRecord) -> bool:
    try:
        return record_hash(record.as_dict()) == record.hash
    except (TypeError, ValueError):
        return False


def check_record(log: ProvenanceLog, record: ProvenanceRecord) -> RecordCheck:
    """This record's part of `ProvenanceLog.verify` (which walks the whole chain, for operators)."""
    content_ok = _intact(record)
    if record.prev_request_id is None:
        link_ok = record.seq == 1 and record.prev_hash == GENESIS_HASH
        link = "it is the first record of the log" if link_ok else "it claims to be first but is not seq 1"
    else:
        try:
            before = log.get(record.prev_request_id, admin=True)
        except ProvenanceNotFound:
            before = None
        if before is None:
            link_ok, link = False, "the record before it is missing: it was deleted"
        elif before.seq != record.seq - 1 or before.hash != record.prev_hash:
            link_ok, link = False, ("the record before it does not have the hash this record names: it was "
                                    "edited and re-hashed, replaced or reordered")
        elif not _intact(before):
            link_ok, link = False, "the record before it no longer matches its own hash: it was edited"
        else:
            link_ok, link = True, "it links to the record before it, which is intact"
    content = ("its content matches its hash" if content_ok
               else "its content no longer matches its hash: it was changed after it was written")
    return RecordCheck(content_ok, link_ok, f"{content}; {link}.")
