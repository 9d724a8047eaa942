"""The offline default answerer: quotes the retrieved sentences that best answer the question.

It drafts inside the grounded template (`retrieval.answer.grounded`): the candidates arrive scored by
the fitted answer model, best first. The draft leads with the best one; a further sentence is quoted
(up to `max_sentences`) when the model gives it at least the `sentence` threshold, or — when the
question names two things or asks to compare or combine — when it brings question words the quoted
ones lack (evidence for the other side, from another document if need be). A sentence is never quoted
twice in other words: not when it contains, or is contained in, a quoted one, not when its embedding
nearly equals one (cosine ≥ `NEAR_DUPLICATE`), and not when it only repeats figures already quoted.
Among near-equal leads for a "how much / how many" question that names no part, a sentence stating a
total is preferred over one giving its parts. Table rows are quoted as "Column: value; …" sentences.
Each sentence cites its own chunk, and the draft goes through `verify_citations` like any other.

Nothing read from a chunk changes how this answerer behaves (flagged paragraphs never become
candidates, see `retrieval.answer.candidates`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from retrieval.answer.answer_types import expected_type
from retrieval.answer.candidates import answer_candidates  # noqa: F401  (re-exported for callers)
from retrieval.answer.grounded import GroundedAnswerer, Judgement, Scored, quote_line
from retrieval.answer.support import content_words
from retrieval.types import RetrievedChunk

NEAR_DUPLICATE = 0.95  # cosine above which two passages say the same thing
# A lead within this share of the best probability may give way to a sentence that states a total.
TOTAL_MARGIN = 0.8
_FIGURE = re.compile(r"\d[\d,.]*")
_TOTAL = re.compile(r"\b(?:total|overall|in all|altogether|combined|sum)\b", re.IGNORECASE)
_PART = re.compile(r"\b(?:each|per|by|split|breakdown|channel|segment|region|part)\b", re.IGNORECASE)
_COMPARE = re.compile(r"\b(?:compare[sd]?|comparison|versus|vs\.?|difference|differ|both|between|"
                      r"than|and how|as well as|combined?|together)\b", re.IGNORECASE)


class ExtractiveAnswerer(GroundedAnswerer):
    """Answers with up to `max_sentences` sentences quoted from the hits, each citing its chunk."""

    name = "extractive"
    version = "2"

    def draft(self, question: str, hits: Sequence[RetrievedChunk], judgement: Judgement) -> str:
        picked = self.pick(question, judgement)
        return "\n".join(quote_line(s.candidate) for s in picked)

    def pick(self, question: str, judgement: Judgement) -> list[Scored]:
        """The sentences to quote, the lead first."""
        ranked = list(judgement.ranked)
        if not ranked:
            return []
        lead = ranked[0]
        if expected_type(question) in ("number", "amount") and not _PART.search(question):
            totals = [s for s in ranked[:5] if s.p >= TOTAL_MARGIN * lead.p and _TOTAL.search(s.candidate.text)]
            if totals and not _TOTAL.search(lead.candidate.text):
                lead = totals[0]
        wanted = content_words(question)
        covered = set(content_words(lead.candidate.segment.quoted)) | content_words(lead.candidate.context)
        compare = bool(_COMPARE.search(question))
        picked_at = [ranked.index(lead)]
        for at, scored in enumerate(ranked):
            if len(picked_at) == self.max_sentences:
                break
            if at in picked_at or scored.p < self.thresholds.answer * 0.5:
                continue
            words = content_words(scored.candidate.segment.quoted) | content_words(scored.candidate.context)
            adds = (wanted & words) - covered
            strong = scored.p >= self.thresholds.sentence
            if not (strong or (compare and adds)):
                continue
            if self._repeats(at, picked_at, ranked, judgement.vectors):
                continue
            picked_at.append(at)
            covered |= words
        return [ranked[i] for i in picked_at]

    @staticmethod
    def _repeats(at: int, picked_at: list[int], ranked: list[Scored], vectors: np.ndarray) -> bool:
        """Whether `ranked[at]` says again what the picked sentences say (contained, near-duplicate
        embedding, or only figures already quoted)."""
        text = ranked[at].candidate.text
        quoted = [ranked[i].candidate.text for i in picked_at]
        if any(text in other or other in text for other in quoted):
            return True
        if any(float(vectors[at] @ vectors[i]) >= NEAR_DUPLICATE for i in picked_at):
            return True
        figures = set(_FIGURE.findall(text))
        return bool(figures) and figures <= {f for other in quoted for f in _FIGURE.findall(other)}
