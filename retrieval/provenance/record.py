"""The provenance record: who asked what, which release and chunks answered it, and the answer; its
stored JSON form (record_version 1 and 2 read back) and how one is made from an answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knowledge.errors import ConfigError, ProvenanceCorrupt, ProvenanceNotFound
from knowledge.model import Principal
from retrieval.types import Answer, Citation, RetrievedRef, SearchResult, flat_dict

# 2: the answer's outcome (answered / possibly relevant / abstained), short answer and decision (answer
# model id, thresholds, answerability). Records of version 1 read with the outcome their `abstained` implies.
RECORD_VERSION = 2


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
                citations=tuple(Citation(**(c | {"heading_path": tuple(c["heading_path"]),
                                                 "flags": tuple(c.get("flags", ()))}))
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
h.retrieved_ref() for h in hits),
        answerer=answer.answerer, prompt_version=answer.prompt_version, model=answer.model,
        answer=answer.text,
        abstained=answer.abstained, support=answer.support, citations=answer.citations,
        outcome=answer.outcome, short=asdict(answer.short) if answer.short else None, decision=answer.decision,
        dropped_citations=answer.dropped_citations, timings={**search.timings_ms, **(timings or {})},
    )
    return normalised(draft)[0]


def check_request_id(request_id: str) -> None:
    """Refuse request ids that cannot name a record (empty, over 200 characters, control characters)."""
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 200 \
            or not request_id.isprintable():
        raise ValueError(f"a request id must be 1 to 200 printable characters, got {request_id!r}")


def not_found(request_id: str) -> ProvenanceNotFound:
    """The one error for "missing", "someone else's" and "cites what you cannot read": the caller must
    not learn which it is."""
    return ProvenanceNotFound(f"no provenance record with request id {request_id!r}; check the id "
                              "(answers return it as request_id)")


def normalised(record: ProvenanceRecord) -> tuple[ProvenanceRecord, dict[str, Any]]:
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

