"""The one ask pipeline: retrieve → answer → record, as typed events.

Every entry point (REST JSON, SSE, chat, MCP, CLI) builds its request with `retrieval.requests` and runs
`AskPipeline.stages`; they differ only in how they render the events. The provenance record is durable
before the `Recorded` event, so no answer text can leave before its record exists.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from knowledge.catalog import Freshness
from retrieval.provenance import ProvenanceLog, ProvenanceRecord, record_from
from retrieval.requests import client_id_of
from retrieval.types import Answer, SearchRequest, SearchResult

# How answers of anonymous callers are recorded: "full" like every other answer; "refs" without the
# question's and answer's text (their sha256 instead) and without cited text, keeping which release,
# chunks and scores answered; "off": not recorded at all (the answer still carries a request id).
AnonymousRecording = Literal["full", "refs", "off"]


@dataclass(frozen=True)
class ProductFacts:
    """Catalog facts of a product an answer cites: who owns it, how it is classified, how fresh it is."""

    id: str
    name: str
    owner: str
    team: str
    classification: str
    freshness: Freshness


@dataclass(frozen=True)
class AskResult:
    request_id: str  # as the caller knows it (its own X-Request-ID, or the generated one)
    answer: Answer
    search: SearchResult
    record: ProvenanceRecord | None  # None when the policy records nothing for this caller
    products: tuple[ProductFacts, ...] = ()  # of the cited products
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Retrieved:
    """Stage one done: the hits (an SSE client gets them at once)."""

    request_id: str
    search: SearchResult


@dataclass(frozen=True)
class Recorded:
    """Stages two and three done: the answer, verified, and its provenance record written."""

    result: AskResult


AskEvent = Retrieved | Recorded


class AskPipeline:
    """The stages over a warmed-up service's parts. `question_filter` is applied to the question before
    it is stored (PII scanning); `products_of` gives the catalog facts of the products an answer cites."""

    def __init__(self, *, search: Callable[[SearchRequest], SearchResult],
                 answer: Callable[[str, tuple], Answer], provenance: Callable[[], ProvenanceLog],
                 products_of: Callable[[Answer, Any], tuple[ProductFacts, ...]],
                 question_filter: Callable[[str], str] = lambda q: q,
                 anonymous: AnonymousRecording = "full",
                 answer_versions: Callable[[str, SearchResult], Answer | None] = lambda q, found: None,
                 discover: Callable[[SearchRequest, SearchResult], Answer | None] = lambda req, found: None) -> None:
        self._search = search
        self._discover = discover  # questions about products, answered from catalog facts: retrieval/discovery/
        self._answer_versions = answer_versions  # "what changed between versions": retrieval/version_questions.py
        self._answer = answer
        self._provenance = provenance
        self._products_of = products_of
        self._question_filter = question_filter
        self._anonymous = anonymous
        # The question's PII scan runs beside retrieval: the query encoder releases the GIL, so on a machine with
        # a free core the scan costs an ask no time (it was the largest part of recording one).
        self._filtering = ThreadPoolExecutor(max_workers=4, thread_name_prefix="question-filter")

    def stages(self, req: SearchRequest, request_id: str) -> Iterator[AskEvent]:
        """`request_id` names the record (a client's id already scoped to its key: retrieval.requests)."""
        shown = client_id_of(request_id)
        t0 = time.perf_counter()
        stored_question = None if self._unrecorded(req) else self._filtering.submit(self._question_filter, req.query)
        found = self._search(req)
        yield Retrieved(shown, found)
        t1 = time.perf_counter()
        answer = (self._answer_versions(req.query, found) or self._discover(req, found)
                  or self._answer(req.query, found.hits))
        t2 = time.perf_counter()
        timings = {"search": found.timings_ms.get("total", round((t1 - t0) * 1000, 3)),
                   "answer": round((t2 - t1) * 1000, 3)}
        record = self._record(request_id, req, found, answer, timings, stored_question)
        timings["provenance"] = round((time.perf_counter() - t2) * 1000, 3)
        timings["total"] = round(timings["search"] + (time.perf_counter() - t1) * 1000, 3)
        yield Recorded(AskResult(request_id=shown, answer=answer, search=found, record=record,
                                 products=self._products_of(answer, req.principal), timings_ms=timings))

    def run(self, req: SearchRequest, request_id: str) -> AskResult:
        return finish(self.stages(req, request_id))

    def _unrecorded(self, req: SearchRequest) -> bool:
        return req.principal.id == "anonymous" and self._anonymous == "off"

    def _record(self, request_id: str, req: SearchRequest, found: SearchResult, answer: Answer,
                timings: dict[str, float], stored_question: Future[str] | None) -> ProvenanceRecord | None:
        if stored_question is None:
            return None
        anonymous = req.principal.id == "anonymous"
        record = record_from(request_id, req.principal, stored_question.result(), found, answer, timings)
        if anonymous and self._anonymous == "refs":
            record = replace(record, question=_digest(record.question), answer=_digest(record.answer),
                             citations=tuple(replace(c, text="") for c in record.citations), short=None)
        return self._provenance().append(record)


QUESTION_DIGEST = "sha256:"  # how a text kept only as its digest begins


def finish(stages: Iterator[AskEvent]) -> AskResult:
    """Run the remaining stages of an ask; its result (for entry points that render no early event)."""
    for event in stages:
        if isinstance(event, Recorded):
            return event.result
    raise AssertionError("the ask pipeline ended without a record")  # pragma: no cover


def _digest(text: str) -> str:
    return QUESTION_DIGEST + hashlib.sha256(text.encode("utf-8")).hexdigest()
