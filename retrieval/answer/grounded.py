"""The one grounded-answer template both answerers share: judge → draft → verify → decide.

1. **Judge.** Every candidate sentence of the hits (`retrieval.answer.candidates`) is scored by the
   fitted answer model (`retrieval.answer.model`): p(sentence answers the question). Answerability =
   the best p; retrieval strength = the best cosine of the question with "section: sentence".
2. **Decide before drafting.** answerability ≥ thresholds.answer → draft an answer; else retrieval
   strength ≥ thresholds.relevant → *possibly relevant* (the best passages, flagged as no confirmed
   answer); else *abstained* (with the closest readable products).
3. **Draft** (the only step that differs): the extractive answerer quotes the best sentences; the LLM
   answerer asks its chat model. A draft of nothing ("NOT FOUND") is decided as in step 2's fallback.
4. **Verify** every citation against the text it cites (`verify_citations`); an answer left with no
   supported citation falls back the same way.
5. **Short answer**: when the question asks for a name, date, number, amount or place, the phrase of
   that kind in the best-scored quoted sentence of a cited chunk, with its span in the cited text.

The model id, thresholds, answerability and retrieval strength go into `Answer.decision`, and from
there into the provenance record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from indexing.types import Chunk
from knowledge.errors import ConfigError
from retrieval.answer.answer_types import expected_type, spans
from retrieval.answer.base import abstention
from retrieval.answer.candidates import Candidate, candidate_passages, collect
from retrieval.answer.citations import MARKER as _MARKER
from retrieval.answer.citations import verify_citations
from retrieval.answer.features import FEATURES_VERSION, candidate_features
from retrieval.answer.model import AnswerModel, Thresholds
from retrieval.answer.sentences import sentence_spans
from retrieval.answer.support import MIN_SUPPORT, SupportScorer, chunk_passages
from retrieval.types import Answer, Outcome, RetrievedChunk, ShortAnswer

POSSIBLY_RELEVANT_TEXT = "No confirmed answer in the products you can read. Possibly relevant passages"
MAX_POSSIBLY_RELEVANT = 2


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    p: float  # the answer model's probability that this sentence answers the question


@dataclass(frozen=True)
class Judgement:
    ranked: tuple[Scored, ...]  # best first
    answerability: float
    retrieval: float
    outcome: Outcome  # what the scores alone decide (drafting may still fall back)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # of "context: sentence", as ranked


class GroundedAnswerer:
    """The template; subclasses implement `draft` (and may add to `describe`)."""

    name = "grounded"
    version = "2"

    def __init__(self, scorer: SupportScorer, model: AnswerModel, *, max_sentences: int = 3,
                 min_support: float = MIN_SUPPORT, thresholds: Thresholds | None = None) -> None:
        if max_sentences < 1:
            raise ConfigError(f"max_sentences must be >= 1, got {max_sentences}")
        if not 0.0 <= min_support <= 1.0:
            raise ConfigError(f"min_support must be within [0, 1], got {min_support}")
        self.scorer = scorer
        self.model = model
        self.max_sentences = max_sentences
        self.min_support = min_support
        self.thresholds = thresholds or model.thresholds

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def describe(self) -> dict[str, Any]:
        """The configuration that decides answers (recorded in every answer's `decision`)."""
        return {"answerer": self.id, "answer_model": self.model.id, "features_version": FEATURES_VERSION,
                "thresholds": self.thresholds.as_dict(),
                "scorer": self.scorer.id, "max_sentences": self.max_sentences, "min_support": self.min_support}

    def warm_up(self) -> None:
        self.scorer.warm_up()

    @property
    def _needs_sentences(self) -> bool:
        return any(name in ("cos_s", "rel_s") for name in self.model.features)

    def passages(self, chunk: Chunk) -> list[str]:
        """Every text answering from `chunk` may embed (for `MeshService.prepare_answer_vectors`)."""
        return list(dict.fromkeys([*chunk_passages(chunk),
                                   *candidate_passages(chunk, sentences=self._needs_sentences)]))

    # ------------------------------------------------------------------------------------ judge
    def judge(self, question: str, hits: Sequence[RetrievedChunk]) -> Judgement:
        candidates = collect(hits)
        if not candidates:
            return Judgement((), 0.0, 0.0, "abstained")
        contextual = self.scorer.embed([c.contextual for c in candidates])
        # The sentence alone is embedded only when the model uses its cosine.
        alone = self.scorer.embed([c.text for c in candidates]) if self._needs_sentences else contextual
        names = tuple(dict.fromkeys([*self.model.features, "cos_c"]))
        features = candidate_features(question, self.scorer.embed_question(question),
                                      [c.text for c in candidates], [c.context for c in candidates],
                                      alone, contextual, names=names)
        p = self.model.probabilities(features[:, : len(self.model.features)])
        order = np.argsort(-p, kind="stable")
        ranked = tuple(Scored(candidates[i], float(p[i])) for i in order)
        answerability = float(p.max())
        retrieval = float(features[:, names.index("cos_c")].max())
        return Judgement(ranked, answerability, retrieval, self._outcome(answerability, retrieval),
                         contextual[order])

    def _outcome(self, answerability: float, retrieval: float) -> Outcome:
        if answerability >= self.thresholds.answer:
            return "answered"
        return self._unanswered(retrieval)

    def _unanswered(self, retrieval: float) -> Outcome:
        """The outcome when there is no answer (scores too low, or a draft that failed): never "answered",
        whatever the answer threshold (0 forces drafting, not answering)."""
        return "possibly_relevant" if retrieval >= self.thresholds.relevant else "abstained"

    # ------------------------------------------------------------------------------------ template
    def answer(self, question: str, hits: Sequence[RetrievedChunk]) -> Answer:
        hits = list(hits)
        judgement = self.judge(question, hits)
        common = self._common(judgement)
        if judgement.outcome != "answered":
            return self._fallback(question, hits, judgement, common)
        draft = self.draft(question, hits, judgement)
        if not draft:
            return self._fallback(question, hits, replace(judgement, outcome=self._unanswered(judgement.retrieval)),
                                  common)
        verified = verify_citations(draft, hits, self.scorer, self.min_support)
        if not verified.citations:
            return self._fallback(question, hits, replace(judgement, outcome=self._unanswered(judgement.retrieval)),
                                  common, dropped=verified.dropped)
        answer = Answer(question=question, text=verified.text, citations=verified.citations, abstained=False,
                        support=round(judgement.answerability, 4), sentences=verified.sentences,
                        dropped_citations=verified.dropped, outcome="answered",
                        **common | {"decision": common["decision"] | {"outcome": "answered"}})
        return replace(answer, short=short_answer(question, hits, judgement, answer))

    def draft(self, question: str, hits: Sequence[RetrievedChunk], judgement: Judgement) -> str:
        """The answer text with `[n]` markers citing hits (1 = first hit); "" when there is none."""
        raise NotImplementedError

    def _common(self, judgement: Judgement) -> dict[str, Any]:
        decision = self.describe() | {"answerability": round(judgement.answerability, 4),
                                      "retrieval": round(judgement.retrieval, 4)}
        return {"answerer": self.id, "decision": decision, **self.extra_fields()}

    def extra_fields(self) -> dict[str, Any]:
        """Answer fields a subclass sets on every answer (prompt version, model)."""
        return {}

    def _fallback(self, question: str, hits: Sequence[RetrievedChunk], judgement: Judgement,
                  common: dict[str, Any], dropped: int = 0) -> Answer:
        if judgement.outcome == "possibly_relevant" and judgement.ranked:
            return self._possibly_relevant(question, hits, judgement, common, dropped)
        decision = common["decision"] | {"outcome": "abstained"}
        return replace(abstention(question, hits, support=judgement.answerability, dropped=dropped,
                                  **{k: v for k, v in common.items() if k != "decision"}),
                       outcome="abstained", decision=decision)

    def _possibly_relevant(self, question: str, hits: Sequence[RetrievedChunk], judgement: Judgement,
                           common: dict[str, Any], dropped: int) -> Answer:
        """The best passages (one per chunk), quoted and cited, under a line saying they are not a
        confirmed answer."""
        picked: list[Scored] = []
        for scored in judgement.ranked:
            if all(scored.candidate.number != s.candidate.number for s in picked):
                picked.append(scored)
            if len(picked) == MAX_POSSIBLY_RELEVANT:
                break
        lines = [quote_line(s.candidate) for s in picked]
        verified = verify_citations("\n".join(lines), hits, self.scorer, self.min_support)
        text = f"{POSSIBLY_RELEVANT_TEXT}:\n{verified.text}" if verified.citations else verified.text
        return Answer(question=question, text=text, citations=verified.citations, abstained=False,
                      support=round(judgement.answerability, 4), sentences=verified.sentences,
                      dropped_citations=dropped + verified.dropped, outcome="possibly_relevant",
                      closest_products=tuple(dict.fromkeys(c.product_id for c in verified.citations)),
                      **common | {"decision": common["decision"] | {"outcome": "possibly_relevant"}})


def quote_line(candidate: Candidate) -> str:
    """One quoted passage, each of its sentences followed by its chunk's marker. Bracketed numbers in
    the quote ("see note [2]") would read as citations: they are written as "(2)"."""
    quote = _MARKER.sub(lambda m: f"({m.group(1)})", candidate.segment.quoted)
    return " ".join(f"{quote[a:b]} [{candidate.number}]" for a, b in sentence_spans(quote))


def short_answer(question: str, hits: Sequence[RetrievedChunk], judgement: Judgement,
                 answer: Answer) -> ShortAnswer | None:
    """The phrase of the asked-for kind in the best-scored candidate of a cited chunk, located in that
    chunk's text (= the citation's text); None when the question asks for no phrase or none is found."""
    kind = expected_type(question)
    if kind is None:
        return None
    asked = question.casefold()
    by_chunk = {c.chunk_id: c for c in answer.citations}
    for scored in judgement.ranked[:5]:
        if scored.p < judgement.answerability * 0.5:
            break
        hit = hits[scored.candidate.number - 1]
        citation = by_chunk.get(hit.chunk_id)
        if citation is None:
            continue
        seg = scored.candidate.segment
        raw = citation.text[seg.start:seg.end]
        for a, b in spans(raw, kind):
            phrase = raw[a:b].strip(" ,;:.")
            if phrase and phrase.casefold() not in asked:
                start = seg.start + a + raw[a:b].index(phrase)
                return ShortAnswer(text=phrase, kind=kind, marker=citation.marker, start=start,
                                   end=start + len(phrase))
    return None
