"""The sentences of retrieved chunks an answer may quote (or that an answer model compares with the
question), and the texts each is embedded as.

Skipped: headings, table separator and header rows, fragments of fewer than `MIN_WORDS` words,
unpunctuated prose (bold pseudo-headings, signatures; a formula line "x = a − b" is kept), lines
that only introduce a list, "source:" / "see also" lines, separator dumps, and the cut-off first
sentence of an overlapping chunk. A sentence
opening with "It", "This", "They"… is taken together with the sentence before it.

Retrieved text is data, never instructions: any paragraph the prompt-injection detector flags
(`indexing.injection`) is excluded, whether or not the chunk was flagged at index time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from indexing.chunking import PROMPT_INJECTION_FLAG
from indexing.injection import detect_prompt_injection
from indexing.types import Chunk
from retrieval.answer.sentences import Segment, collapse, segments
from retrieval.answer.support import content_words
from retrieval.types import RetrievedChunk

MIN_WORDS = 4
_WORD = re.compile(r"\w*[^\W\d_]\w*")  # a word with at least one letter
_ENDS_LIKE_SENTENCE = re.compile(r"[.!?;][\"'”’)*_`]*$")
# "net revenue = gross sales − discounts − refunds": a definition written as a formula line.
_FORMULA = re.compile(r"^\W*[^\W\d_][\w ()/%-]{1,60}\s=\s\S.*[\w)]$")
_ANAPHOR = re.compile(r"(?:It|Its|This|That|These|Those|They|Their|Such|He|She|His|Her)\b")
# Bookkeeping lines that answer nothing: "source: x.md", "see also: …", "last reviewed: …".
_BOOKKEEPING = re.compile(r"^\W*(?:sources?|see also|related|references?|last (?:reviewed|updated)|updated|"
                          r"reviewed|owner review|tags?|file|path)\s*[:—-]", re.IGNORECASE)


@dataclass(frozen=True)
class Candidate:
    number: int  # the context number [n] of the chunk it comes from (1 = first hit)
    segment: Segment
    context: str  # its section heading (else its document), compared with the question alongside it

    @property
    def text(self) -> str:
        return self.segment.text

    @property
    def contextual(self) -> str:
        return contextual_text(self.context, self.segment.text)


def contextual_text(context: str, text: str) -> str:
    return f"{context}: {text}" if context else text


def chunk_context(chunk: Chunk) -> str:
    return chunk.heading_path[-1] if chunk.heading_path else chunk.document


def answer_candidates(chunk: Chunk) -> list[Segment]:
    """The sentences of `chunk` an answer may quote."""
    found = segments(chunk.text)
    blocks: dict[int, list[Segment]] = {}
    for seg in found:
        blocks.setdefault(seg.block, []).append(seg)
    injected = {b for b, segs in blocks.items() if detect_prompt_injection(" ".join(s.text for s in segs))}
    if not injected and (PROMPT_INJECTION_FLAG in chunk.flags or detect_prompt_injection(chunk.text)):
        return []  # flagged, but no single paragraph to blame (a pattern across paragraphs): quote nothing
    headings = {collapse(h).casefold() for h in chunk.heading_path}
    out: list[Segment] = []
    for i, seg in enumerate(found):
        if seg.block in injected or seg.kind == "heading" or seg.text.casefold() in headings:
            continue
        if len(_WORD.findall(seg.text)) < MIN_WORDS or len(content_words(seg.text)) < 2:
            continue  # "| Meets | 1.0 |", "updated: 2026-08-19": too little to answer anything
        if _BOOKKEEPING.match(seg.text) or sum(ch.isalnum() for ch in seg.text) < len(seg.text) / 2:
            continue  # "source: x.md", "=====", "| --- | --- |"
        if i == 0 and seg.text[:1].islower() and chunk.start > 0:
            continue  # the tail of a sentence that began in the previous, overlapping chunk
        if seg.kind == "prose" and not _ENDS_LIKE_SENTENCE.search(seg.text) and not _FORMULA.search(seg.text):
            continue  # bold pseudo-headings, signatures, a sentence cut at the chunk's end (not a formula)
        if seg.text.endswith(":"):
            continue  # introduces a list or table that is quoted on its own
        if _ANAPHOR.match(seg.text) and out and out[-1] == found[i - 1] and out[-1].block == seg.block:
            # "It was 97.1% for September 2026." means nothing without the sentence before it.
            prev = out[-1]
            seg = Segment(collapse(chunk.text[prev.start:seg.end]), prev.start, seg.end, seg.kind, seg.block)
        out.append(seg)
    return out


@lru_cache(maxsize=20_000)
def _cached_candidates(chunk: Chunk) -> tuple[Segment, ...]:
    return tuple(answer_candidates(chunk))


def collect(hits: Sequence[RetrievedChunk]) -> list[Candidate]:
    """The candidates of every hit, in hit order; a sentence repeated by overlapping chunks is kept once
    (the better-ranked copy)."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for number, hit in enumerate(hits, start=1):
        context = chunk_context(hit.chunk)
        for seg in _cached_candidates(hit.chunk):  # chunks are immutable: their candidates never change
            key = seg.text.casefold()
            if key not in seen:
                seen.add(key)
                out.append(Candidate(number, seg, context))
    return out


def candidate_passages(chunk: Chunk, *, sentences: bool = True) -> list[str]:
    """The texts answering embeds for `chunk`'s candidates: each in context ("section: sentence"), the
    sentence alone when `sentences`, and the quoted form when it differs (a table row as a sentence)."""
    context = chunk_context(chunk)
    out: list[str] = []
    for seg in answer_candidates(chunk):
        out += [contextual_text(context, seg.text), *([seg.text] if sentences else []),
                *([seg.quoted] if seg.quoted != seg.text else [])]
    return list(dict.fromkeys(out))
