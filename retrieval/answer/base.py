"""The answer stage's contract: an `Answerer` turns a question and retrieved chunks into a grounded
`Answer`. Shared here: numbering the context, building citations from hits, and the abstention answer.

The context is numbered [1]..[n] in hit order; a marker `[n]` in an answer cites the n-th hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from indexing.types import Chunk
from retrieval.types import Answer, Citation, RetrievedChunk

ABSTENTION_TEXT = "Not found in the products you can read."
MAX_CLOSEST_PRODUCTS = 3


@runtime_checkable
class Answerer(Protocol):
    """Question + retrieved chunks (already access-trimmed) → Answer whose every citation was verified."""

    name: str
    version: str
    min_support: float  # the citation verifier's threshold

    def warm_up(self) -> None: ...

    def describe(self) -> dict[str, object]:
        """What decides its answers: answer model id, thresholds, scorer (recorded with each answer)."""
        ...

    def answer(self, question: str, hits: Sequence[RetrievedChunk]) -> Answer: ...

    def passages(self, chunk: Chunk) -> list[str]:
        """The passages whose vectors answering from `chunk` may need (embedded ahead by
        `MeshService.prepare_answer_vectors`); [] when the answerer embeds nothing."""
        ...


def answerer_id(answerer: Answerer) -> str:
    return f"{answerer.name}@{answerer.version}"


def number_context(hits: Sequence[RetrievedChunk]) -> dict[int, RetrievedChunk]:
    """{1: first hit, 2: second hit, …}: the numbers the answer's `[n]` markers refer to."""
    return {n: hit for n, hit in enumerate(hits, start=1)}


def citation_for(marker: int, hit: RetrievedChunk, support: float) -> Citation:
    """The citation `[marker]` of `hit`: provenance of the chunk, its text, retrieval scores + support."""
    return hit.cite(marker, support)


def closest_products(hits: Sequence[RetrievedChunk], limit: int = MAX_CLOSEST_PRODUCTS) -> tuple[str, ...]:
    """The distinct products of the hits, best hit first. Hits are access-trimmed, so all are readable."""
    return tuple(dict.fromkeys(hit.product_id for hit in hits))[:limit]


def abstention(question: str, hits: Sequence[RetrievedChunk], *, support: float, answerer: str,
               prompt_version: str | None = None, model: str | None = None, dropped: int = 0) -> Answer:
    """The explicit "not found" answer: no citations, the nearest readable products named."""
    closest = closest_products(hits)
    text = ABSTENTION_TEXT
    if closest:
        text += f" The closest readable products are: {', '.join(closest)}."
    return Answer(question=question, text=text, citations=(), abstained=True, support=round(support, 4),
                  answerer=answerer, prompt_version=prompt_version, model=model, dropped_citations=dropped,
                  closest_products=closest)
