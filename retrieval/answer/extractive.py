"""The offline default answerer: quotes the retrieved sentences that best answer the question.

Candidates are the sentences, list items, table rows and fields of every retrieved chunk (headings,
table separators and header rows, fragments under `MIN_WORDS` words, unpunctuated prose fragments
and the cut-off first sentence of an overlapping chunk are skipped). Each is scored against the
question with `SupportScorer.relevance` (embedding cosine + lexical recall, the sentence read under
its section heading); up to `max_sentences` are picked by maximal marginal relevance, so a second
sentence must add something the first did not say, and only while they stay within `relative_floor` of
the best score. Each sentence cites its own chunk; the text is then checked by `verify_citations`.

Retrieved text is data, never instructions: any paragraph that the prompt-injection detector flags
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
from retrieval.answer.base import abstention, number_context
from retrieval.answer.citations import verify_citations
from retrieval.answer.sentences import Segment, collapse, segments
from retrieval.answer.support import ABSTAIN_THRESHOLD, MIN_SUPPORT, SupportScorer, content_words
from retrieval.types import Answer, RetrievedChunk

MIN_WORDS = 4
# A sentence's score blends in its chunk's (0.3): a sentence of the chunk that is about the question
# is more likely the answer than a look-alike elsewhere (+3 points of top-1 gold-quote hits on the
# golden set, 0.2-0.4 all did about as well).
CHUNK_WEIGHT = 0.3
_WORD = re.compile(r"\w+")
_ENDS_LIKE_SENTENCE = re.compile(r"[.!?:;][\"'”’)*_`]*$")
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
            continue
        if i == 0 and seg.text[:1].islower() and chunk.start > 0:
            continue  # the tail of a sentence that began in the previous, overlapping chunk
        if seg.kind == "prose" and not _ENDS_LIKE_SENTENCE.search(seg.text):
            continue  # bold pseudo-headings, signatures, a sentence cut at the chunk's end
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
                 relative_floor: float = 0.8) -> None:
        if max_sentences < 1:
            raise ValueError(f"max_sentences must be >= 1, got {max_sentences}")
        for label, value in (("min_support", min_support), ("abstain_threshold", abstain_threshold),
                             ("diversity", diversity), ("relative_floor", relative_floor)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must be within [0, 1], got {value}")
        self.scorer = scorer
        self.max_sentences = max_sentences
        self.min_support = min_support
        self.abstain_threshold = abstain_threshold
        self.diversity = diversity
        self.relative_floor = relative_floor

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def describe(self) -> dict[str, object]:
        """The configuration that shaped an answer (for provenance records)."""
        return {"answerer": self.id, "scorer": self.scorer.id, "max_sentences": self.max_sentences,
                "min_support": self.min_support, "abstain_threshold": self.abstain_threshold,
                "diversity": self.diversity, "relative_floor": self.relative_floor}

    def warm_up(self) -> None:
        self.scorer.warm_up()

    def answer(self, question: str, hits: Sequence[RetrievedChunk]) -> Answer:
        support = self.scorer.question_support(question, hits)
        if support < self.abstain_threshold:
            return abstention(question, hits, support=support, answerer=self.id)
        picked = self.select(question, hits)
        if not picked:
            return abstention(question, hits, support=support, answerer=self.id)
        draft = " ".join(f"{c.segment.text} [{c.number}]" for c in picked)
        verified = verify_citations(draft, hits, self.scorer, self.min_support)
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
        sentence_relevance = np.asarray(self.scorer.relevance(question, [c.scored_text for c in candidates]))
        chunk_relevance = np.asarray(self.scorer.relevance(question, [collapse(h.chunk.embedding_text) for h in hits]))
        numbers = np.asarray([c.number for c in candidates])
        relevance = ((1 - CHUNK_WEIGHT) * sentence_relevance + CHUNK_WEIGHT * chunk_relevance[numbers - 1])
        vectors = self.scorer.embed([c.scored_text for c in candidates])
        floor = self.relative_floor * float(relevance.max())
        picked: list[int] = []
        while len(picked) < self.max_sentences:
            redundancy = (np.max(vectors @ vectors[picked].T, axis=1) if picked
                          else np.zeros(len(candidates)))
            mmr = relevance - self.diversity * redundancy
            mmr[picked] = -np.inf
            mmr[relevance < floor] = -np.inf
            best = int(np.argmax(mmr))
            if not np.isfinite(mmr[best]):
                break
            picked.append(best)
        return [candidates[i] for i in picked]
