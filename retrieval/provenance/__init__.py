"""The provenance log: one append-only, hash-chained record per answer, durable before the answer returns.

record (the record and its stored JSON form) · chain (canonical JSON, hashes, chaining a batch) · verify
(walking the chain, the report) · storage (the ProvenanceLog protocol and the base both backends share) ·
sqlite and postgres (their SQL and connections) · factory (create_provenance_log).

Each record's hash covers its content, `seq` and the previous record's request id and hash (chain.py),
so each record commits to the whole chain before it. A head anchor (seq, request_id, hash of the last
record) is moved onto the last record in the same transaction as the appends (a trigger refuses any
other move), and appends chain from the anchor, not from the last row. Appends that arrive while a commit
is in flight share the next transaction (retrieval/group_commit.py); each caller returns only once its
own record has committed. Appends from several processes (API workers on one SQLite file, replicas on one
PostgreSQL schema) take turns on the anchor, which each transaction locks before reading it (SQLite's
BEGIN IMMEDIATE, PostgreSQL's SELECT … FOR UPDATE): one chain, no gap, no duplicate seq
(tests/shared/test_provenance_concurrency.py). `verify()` therefore detects an edited record (its content no longer matches
its hash), an edited-and-rehashed or reordered record (the next record's prev_hash no longer matches),
deleted records (a seq gap, naming the deleted record's request id from the record after it) and a
truncated tail (the log ends before the anchor). Triggers refuse UPDATE and DELETE, so accidents fail
loudly instead of needing verify.

What it cannot detect: someone with full write access to the database who drops the triggers and
rewrites the chain from the first changed record to the end, anchor included, leaves a log that
verifies. Exporting `verify().head_hash` elsewhere (a ticket, another system's log, a timestamping
service) and checking later that the record with that seq still has that hash closes this gap.
"""

from retrieval.provenance.chain import GENESIS_HASH, canonical_json, record_hash
from retrieval.provenance.factory import ProvenanceKind, create_provenance_log
from retrieval.provenance.postgres import PgProvenanceLog
from retrieval.provenance.record import (
    RECORD_VERSION,
    ProvenanceRecord,
    RetrievedRef,
    check_request_id,
    not_found,
    record_from,
)
from retrieval.provenance.sqlite import SqliteProvenanceLog
from retrieval.provenance.storage import MAX_LIST, ProvenanceLog
from retrieval.provenance.verify import ProblemKind, VerifyProblem, VerifyReport

__all__ = [
    "GENESIS_HASH",
    "MAX_LIST",
    "RECORD_VERSION",
    "PgProvenanceLog",
    "ProblemKind",
    "ProvenanceKind",
    "ProvenanceLog",
    "ProvenanceRecord",
    "RetrievedRef",
    "SqliteProvenanceLog",
    "VerifyProblem",
    "VerifyReport",
    "canonical_json",
    "check_request_id",
    "create_provenance_log",
    "not_found",
    "record_from",
    "record_hash",
]
