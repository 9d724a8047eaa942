"""Values of the query side: search requests and hits, answers, citations, provenance records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import date
from functools import cache
from typing import Any, Literal

from indexing.types import Chunk
from knowledge.model import Principal

CURRENT = "current"


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def flat_dict(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, one level deep: dataclasses.asdict without its deep copies, for
    the records answers write on every request (asdict was most of a provenance append's time)."""
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


@dataclass(frozen=True)
class SearchRequest:
    """A retrieval query. Filters narrow what the principal may read; they never widen it."""

    query: str
    principal: Principal
    k: int = 8
    release: str = CURRENT
    products: tuple[str, ...] | None = None
    domains: tuple[str, ...] | None = None
    classifications: tuple[str, ...] | None = None
    documents: tuple[str, ...] | None = None
    rerank: bool | None = None  # None: as configured
    # Product versions: `products` may pin `<id>@<version>`; `as_of` serves each product at the version
    # current on that date (retrieval/versions.py). Neither: every product's current version.
    as_of: date | None = None


# Every score that ranked a chunk: score, rank, dense, dense_rank, keyword, keyword_rank, rerank (None
# where that list did not hold it); a citation adds "support".
Scores = dict[str, float | int | None]


# -- one record family: a chunk reference, plus scores, underlies the hit, the citation and the
# provenance reference; every wire shape (REST, MCP, CLI JSON, LangChain metadata) is one of these.
@dataclass(frozen=True)
class ChunkRef:
    """Where a chunk is: product and versions, document and revision, character span, section."""

    chunk_id: str
    product_id: str
    product_version: str
    chunk_version: str
    document: str
    doc_revision: str  # sha256 of the document's source
    start: int  # character span in the document's (normalised) text
    end: int
    heading_path: tuple[str, ...]


@dataclass(frozen=True)
class RetrievedRef(ChunkRef):
    """One retrieved chunk as provenance keeps it: where it came from and how it ranked, never its text."""

    embedding_version: str
    classification: str
    scores: Scores


@dataclass(frozen=True)
class Hit(RetrievedRef):
    """One retrieved chunk as a caller gets it: the reference, where it was served from, its index-time
    flags (e.g. `prompt_injection`: its text is data, never instructions) and its text."""

    release_id: str
    domain: str
    rank: int
    score: float
    flags: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class HitSnippet(ChunkRef):
    """A retrieved chunk as an answer reports it: the reference and the start of its text."""

    rank: int
    score: float
    flags: tuple[str, ...]  # index-time flags, as on hits and citations
    snippet: str  # the first SNIPPET_CHARS characters, whitespace collapsed


SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Citation(ChunkRef):
    """What `[marker]` in an answer cites: enough to find and re-check the text."""

    marker: int  # the n of "[n]" in the answer text
    release_id: str
    text: str  # the cited chunk text (redacted where the product's PII policy says so)
    scores: Scores = field(default_factory=dict)  # retrieval scores + "support"
    flags: tuple[str, ...] = ()  # the chunk's index-time flags, e.g. ("prompt_injection",)

    def as_dict(self) -> dict[str, Any]:
        """Flags only when there are some: a record stored before citations carried them hashes the same."""
        out = flat_dict(self) | {"heading_path": list(self.heading_path), "scores": dict(self.scores),
                                 "flags": list(self.flags)}
        if not self.flags:
            del out["flags"]
        return out


@dataclass(frozen=True)
class RetrievedChunk:
    """One hit as retrieval produces it: the chunk, where it was served from, and every score."""

    chunk: Chunk
    release_id: str
    product_version: str
    chunk_version: str
    embedding_version: str
    domain: str
    classification: str
    score: float  # final (fused, or reranked when a reranker ran)
    rank: int  # 1-based final rank
    dense_score: float | None = None
    dense_rank: int | None = None
    keyword_score: float | None = None
    keyword_rank: int | None = None
    rerank_score: float | None = None

    @property
    def chunk_id(self) -> str:
        return self.chunk.chunk_id

    @property
    def product_id(self) -> str:
        return self.chunk.product_id

    def scores(self) -> Scores:
        return {"score": self.score, "rank": self.rank, "dense": self.dense_score, "dense_rank": self.dense_rank,
                "keyword": self.keyword_score, "keyword_rank": self.keyword_rank, "rerank": self.rerank_score}

    def ref(self) -> dict[str, Any]:
        """The ChunkRef fields of this hit (the one place they are read off a hit)."""
        c = self.chunk
        return {"chunk_id": c.chunk_id, "product_id": c.product_id, "product_version": self.product_version,
                "chunk_version": self.chunk_version, "document": c.document, "doc_revision": c.doc_revision,
                "start": c.start, "end": c.end, "heading_path": c.heading_path}

    def retrieved_ref(self) -> RetrievedRef:
        return RetrievedRef(**self.ref(), embedding_version=self.embedding_version,
                            classification=self.classification, scores=self.scores())

    def hit(self) -> Hit:
        return Hit(**self.ref(), embedding_version=self.embedding_version, classification=self.classification,
                   scores=self.scores(), release_id=self.release_id, domain=self.domain, rank=self.rank,
                   score=self.score, flags=self.chunk.flags, text=self.chunk.text)

    def snippet(self) -> HitSnippet:
        text = " ".join(self.chunk.text.split())
        return HitSnippet(**self.ref(), rank=self.rank, score=self.score, flags=self.chunk.flags,
                          snippet=text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else ""))

    def cite(self, marker: int, support: float) -> Citation:
        """The citation `[marker]` of this hit: its reference, text and flags, retrieval scores + support."""
        return Citation(**self.ref(), marker=marker, release_id=self.release_id, text=self.chunk.text,
                        scores={**self.scores(), "support": round(support, 4)}, flags=self.chunk.flags)


@dataclass(frozen=True)
class SearchResult:
    release_id: str
    hits: tuple[RetrievedChunk, ...]
    params: dict[str, Any] = field(default_factory=dict)  # k, fusion constants, filters, reranker: for provenance
    timings_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"release_id": self.release_id, "hits": [asdict(h.hit()) for h in self.hits],
                "params": self.params, "timings_ms": self.timings_ms}


@dataclass(frozen=True)
class AnswerSentence:
    text: str
    markers: tuple[int, ...]
    support: float  # best support score of its citations (0 when none)


# answered: sentences that answer, each verified against what it cites; possibly_relevant: the best
# passages, flagged as not a confirmed answer; abstained: nothing readable supports an answer.
Outcome = Literal["answered", "possibly_relevant", "abstained"]
OUTCOMES: tuple[Outcome, ...] = ("answered", "possibly_relevant", "abstained")


@dataclass(frozen=True)
class ShortAnswer:
    """The phrase that answers a who / when / how many / how much / where question: its text and its
    span inside the text of citation `marker` (`citation.text[start:end] == text`)."""

    text: str
    kind: str  # person, date, number, amount or place
    marker: int
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    """One shape for every answerer (extractive or LLM)."""

    question: str
    text: str  # with [n] markers
    citations: tuple[Citation, ...]
    abstained: bool  # outcome == "abstained"
    support: float  # answerability: how likely the best candidate sentence answers the question
    answerer: str  # name@version
    prompt_version: str | None = None
    model: str | None = None
    sentences: tuple[AnswerSentence, ...] = ()
    dropped_citations: int = 0  # markers removed: unresolvable or unsupported
    closest_products: tuple[str, ...] = ()  # on abstention: readable products nearest the question
    outcome: Outcome = "answered"
    short: ShortAnswer | None = None
    # What decided the outcome: answer model id, its thresholds, answerability and retrieval strength.
    decision: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    def as_dict(self) -> dict[str, Any]:
        return {"question": self.question, "text": self.text, "outcome": self.outcome,
                "abstained": self.abstained, "support": self.support,
                "short": asdict(self.short) if self.short else None,
                "answerer": self.answerer, "prompt_version": self.prompt_version, "model": self.model,
                "citations": [c.as_dict() | {"flags": list(c.flags)} for c in self.citations],
                "sentences": [asdict(s) | {"markers": list(s.markers)} for s in self.sentences],
                "dropped_citations": self.dropped_citations, "closest_products": list(self.closest_products),
                "decision": dict(self.decision)}
