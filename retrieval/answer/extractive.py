"""The offline default answerer: quotes the retrieved sentences that best answer the question.

Candidates are the sentences, list items, table rows and fields of every retrieved chunk. Skipped:
headings, table separator and header rows, fragments of fewer than `MIN_WORDS` words, unpunctuated
prose (bold pseudo-headings, signatures), lines that only introduce a list, and the cut-off first
sentence of an overlapping chunk. A sentence opening with "It", "This", "They"… is quoted together
with the sentence before it.

Scoring: 0.7 · `SupportScorer.relevance(question, "section heading: sentence")` + 0.3 · the
relevance of the sentence's chunk (`CHUNK_WEIGHT`). Only the `max_candidates` best by a cheap
estimate (lexical recall instead of the embedding) are embedded. Up to `max_sentences` are picked by
maximal marginal relevance, so each further sentence must add something, and only while they stay
within `relative_floor` of the best score. Each sentence cites its own chunk, and the draft goes
through `verify_citations` like any other answer.

Retrieved text is data, never instructions: any paragraph the prompt-injection detector flags
(`indexing.injection`) is excluded from the candidates, whether or not the chunk was flagged at index
time, and nothing read from a chunk changes how this answerer behaves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexing.chunking import PROMPT_INJECTION_FLAG
from indexing.injection import detect_prompt_injection
from indexing.types import Chunk
from knowledge.errors import ConfigError
from retrieval.answer.base import abstention, number_context
from retrieval.answer.citations import verify_citations
from retrieval.answer.sentences import Segment, collapse, segments, sentence_spans
from retrieval.answer.support import (
    ABSTAIN_THRESHOLD,
    MIN_SUPPORT,
    SupportScorer,
    chunk_passages,
    content_words,
    lexical_recall,
)
from retrieval.types import Answer, RetrievedChunk

MIN_WORDS = 4
# Measured on the golden set (gold quote among the quoted sentences): blending in the chunk's relevance
# lifted the first sentence's hit rate from 45% to 49%; weights 0.2-0.4 did about as well.
CHUNK_WEIGHT = 0.3
NEAR_DUPLICATE = 0.95  # cosine above which two passages say the same thing
_MARKER_LIKE = re.compile(r"\[(\s*\d[\d\s,;–-]*)\]")
_WORD = re.compile(r"\w*[^\W\d_]\w*")  # a word with at least one letter
_ENDS_LIKE_SENTENCE = re.compile(r"[.!?;][\"'”’)*_`]*$")
_ANAPHOR = re.compile(r"(?:It|Its|This|That|These|Those|They|Their|Such|He|She|His|Her)\b")


@dataclass(frozen=True)
class Candidate:
    number: int  # the context number [n] of the chunk it comes from
    segment: Segment
    scored_text: str  # what is compared with the question: the sentence under its section heading


def answer_candidates(chunk: Chunk) -> list[Segment]:
    """The sentences of `chunk` an answer may quote."""
    found = segments(chunk.text)
    # Paragraphs written to steer an AI reader are data at most; never quote them.
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
        if i == 0 and seg.text[:1].islower() and chunk.start > 0:
            continue  # the tail of a sentence that began in the previous, overlapping chunk
        if seg.kind == "prose" and not _ENDS_LIKE_SENTENCE.search(seg.text):
            continue  # bold pseudo-headings, signatures, a sentence cut at the chunk's end
        if seg.text.endswith(":"):
            continue  # introduces a list or table that is quoted on its own
        if _ANAPHOR.match(seg.text) and out and out[-1] == found[i - 1] and out[-1].block == seg.block:
            # "It was 97.1% for September 2026." means nothing without the sentence before it.
            prev = out[-1]
            seg = Segment(collapse(chunk.text[prev.start:seg.end]), prev.start, seg.end, seg.kind, seg.block)
        out.append(seg)
    return out


class ExtractiveAnswerer:
    """Answers with up to `max_sentences` sentences quoted from the hits, each citing its chunk."""

    name = "extractive"
    version = "1"

    def __init__(self, scorer: SupportScorer, *, max_sentences: int = 3, min_support: float = MIN_SUPPORT,
                 abstain_threshold: float = ABSTAIN_THRESHOLD, diversity: float = 0.5,
                 relative_floor: float = 0.8, max_candidates: int = 16) -> None:
        if max_sentences < 1 or max_candidates < max_sentences:
            raise ConfigError(f"need 1 <= max_sentences <= max_candidates, got {max_sentences} and "
                              f"{max_candidates}")
        for label, value in (("min_support", min_support), ("abstain_threshold", abstain_threshold),
                             ("diversity", diversity), ("relative_floor", relative_floor)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{label} must be within [0, 1], got {value}")
        self.scorer = scorer
        self.max_sentences = max_sentences
        self.min_support = min_support
        self.abstain_threshold = abstain_threshold
        self.diversity = diversity
        self.relative_floor = relative_floor
        self.max_candidates = max_candidates

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def describe(self) -> dict[str, object]:
        """The configuration that shaped an answer (for provenance records)."""
        return {"answerer": self.id, "scorer": self.scorer.id, "max_sentences": self.max_sentences,
                "min_support": self.min_support, "abstain_threshold": self.abstain_threshold,
                "diversity": self.diversity, "relative_floor": self.relative_floor,
                "max_candidates": self.max_candidates}

    def warm_up(self) -> None:
        self.scorer.warm_up()

    def passages(self, chunk: Chunk) -> list[str]:
        """Every text this answerer may embed when answering from `chunk` (for `SupportScorer.precompute`)."""
        section = chunk.heading_path[-1] if chunk.heading_path else ""
        scored = [f"{section}: {seg.text}" if section else seg.text for seg in answer_candidates(chunk)]
        return list(dict.fromkeys([*chunk_passages(chunk), *scored]))

    def answer(self, question: str, hits: Sequence[RetrievedChunk]) -> Answer:
        support = self.scorer.question_support(question, hits)
        if support < self.abstain_threshold:
            return abstention(question, hits, support=support, answerer=self.id)
        picked = self.select(question, hits)
        if not picked:
            return abstention(question, hits, support=support, answerer=self.id)
        # One quoted passage per line, each of its sentences followed by its chunk's number, so the
        # check splits the draft exactly where the passages and sentences are. Bracketed numbers in a
        # quote ("see note [2]") would read as citations: they are written as "(2)".
        lines = []
        for candidate in picked:
            quote = _MARKER_LIKE.sub(r"(\1)", candidate.segment.text)
            lines.append(" ".join(f"{quote[a:b]} [{candidate.number}]" for a, b in sentence_spans(quote)))
        verified = verify_citations("\n".join(lines), hits, self.scorer, self.min_support)
        if not verified.citations:
            return abstention(question, hits, support=support, answerer=self.id, dropped=verified.dropped)
        return Answer(question=question, text=verified.text, citations=verified.citations, abstained=False,
                      support=round(support, 4), answerer=self.id, sentences=verified.sentences,
                      dropped_citations=verified.dropped)

    def select(self, question: str, hits: Sequence[RetrievedChunk]) -> list[Candidate]:
        """The sentences to quote, best first."""
        candidates: list[Candidate] = []
        seen: set[str] = set()
        for number, hit in number_context(hits).items():
            section = hit.chunk.heading_path[-1] if hit.chunk.heading_path else ""
            for seg in answer_candidates(hit.chunk):
                key = seg.text.casefold()
                if key in seen:  # overlapping chunks repeat sentences; keep the better-ranked copy
                    continue
                seen.add(key)
                candidates.append(Candidate(number, seg, f"{section}: {seg.text}" if section else seg.text))
        if not candidates:
            return []
        chunk_texts = [collapse(hit.chunk.embedding_text) for hit in hits]
        chunk_relevance = np.asarray(self.scorer.relevance(question, chunk_texts))
        of_chunk = chunk_relevance[[c.number - 1 for c in candidates]]
        # Embedding every sentence is the slow part: only the best few by words and chunk get embedded.
        cheap = np.asarray([lexical_recall(question, c.scored_text) or 0.0 for c in candidates])
        shortlist = np.argsort(-((1 - CHUNK_WEIGHT) * cheap + CHUNK_WEIGHT * of_chunk), kind="stable")
        shortlist = shortlist[: self.max_candidates]
        candidates = [candidates[i] for i in shortlist]
        texts = [c.scored_text for c in candidates]
        relevance = ((1 - CHUNK_WEIGHT) * np.asarray(self.scorer.relevance(question, texts))
                     + CHUNK_WEIGHT * of_chunk[shortlist])
        vectors = self.scorer.embed(texts)
        floor = self.relative_floor * float(relevance.max())
        picked: list[int] = []
        available = relevance >= floor
        while len(picked) < self.max_sentences and available.any():
            redundancy = np.max(vectors @ vectors[picked].T, axis=1) if picked else np.zeros(len(candidates))
            mmr = np.where(available, relevance - self.diversity * redundancy, -np.inf)
            best = int(np.argmax(mmr))
            picked.append(best)
            available[best] = False
            chosen = candidates[best].segment.text
            for i, c in enumerate(candidates):  # a passage never repeats another it contains or is part of
                if available[i] and (c.segment.text in chosen or chosen in c.segment.text
                                     or float(vectors[i] @ vectors[best]) >= NEAR_DUPLICATE):
                    available[i] = False
        return [candidates[i] for i in picked]
