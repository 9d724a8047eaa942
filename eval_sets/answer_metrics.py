"""Answer-quality metrics from ragas: offline ones always, LLM-judged ones when an LLM is configured.

Offline (no model but our own embedder, no network):
- `ragas_context_precision` / `ragas_context_recall`: `NonLLMContextPrecisionWithReference` and
  `NonLLMContextRecall`, retrieved contexts = the hits' chunk texts, reference contexts = the golden
  question's gold quotes. Their default distance (`NonLLMStringSimilarity`, Levenshtein over the whole
  strings) compares a ~1,000-character chunk with a ~120-character quote and can never reach their 0.5
  threshold even when the chunk contains the quote verbatim, so both are given `QuoteAlignment`: the
  best partial alignment of the quote inside the chunk (rapidfuzz `partial_ratio` / 100).
- `ragas_answer_similarity`: `NonLLMStringSimilarity` (normalised Levenshtein) of the answer, citation
  markers removed, against the reference answer.
- `ragas_semantic_similarity`: `SemanticSimilarity` (cosine) with our embedder (MiniLM by default)
  behind a LangChain `Embeddings` and ragas's `LangchainEmbeddingsWrapper`.

With an LLM (`MESHRAG_ANSWERER=llm`), through the answerer's own LangChain chat model:
`ragas_faithfulness` (Faithfulness), `ragas_answer_relevancy` (ResponseRelevancy; also uses our
embedder) and `ragas_llm_context_precision` (LLMContextPrecisionWithReference).

Importing ragas is made safe here (see `import_ragas`): its usage tracking is switched off, because it
posts events to ragas's server otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import re
import sys
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexing.types import Embedder

OFFLINE_METRICS = ("ragas_context_precision", "ragas_context_recall", "ragas_answer_similarity",
                   "ragas_semantic_similarity")
LLM_METRICS = ("ragas_faithfulness", "ragas_answer_relevancy", "ragas_llm_context_precision")
_MARKER = re.compile(r"\s*\[\d+(?:\s*[,;-]\s*\d+)*\]")


@dataclass(frozen=True)
class AnswerSample:
    """One answered golden question, as ragas scores it."""

    question_id: str
    question: str
    response: str  # the answer text, citation markers removed
    reference: str  # the golden reference answer
    retrieved_contexts: tuple[str, ...]
    reference_contexts: tuple[str, ...] = ()  # gold quotes; empty: context metrics are not measured


def strip_markers(text: str) -> str:
    return " ".join(_MARKER.sub("", text).split())


def import_ragas() -> types.ModuleType:
    """Import ragas with usage tracking off and its broken VertexAI import worked around.

    ragas 0.4.3 imports `langchain_community.chat_models.vertexai`, which no langchain-community 0.3.2x
    or 0.4.x release ships (vibrantlabsai/ragas#2745, #2995): `import ragas` fails. The class is only
    used there in an isinstance list of models that support n completions, so when the module is
    missing an empty stand-in module with a class nothing is an instance of takes its place."""
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    name = "langchain_community.chat_models.vertexai"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            stand_in = types.ModuleType(name)
            stand_in.ChatVertexAI = type("ChatVertexAI", (), {})  # type: ignore[attr-defined]
            sys.modules[name] = stand_in
        import ragas
        import ragas.metrics  # explicit: the submodule is loaded here, inside the workaround above
    return ragas


def langchain_embeddings(embedder: Embedder) -> Any:
    """Our (warmed-up) embedder as a LangChain `Embeddings`, computed in the calling thread."""
    from langchain_core.embeddings import Embeddings

    class MeshEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return np.asarray(embedder.embed_documents(texts), dtype=np.float64).tolist()

        def embed_query(self, text: str) -> list[float]:
            return np.asarray(embedder.embed_query(text), dtype=np.float64).tolist()

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.embed_documents(texts)

        async def aembed_query(self, text: str) -> list[float]:
            return self.embed_query(text)

    return MeshEmbeddings()


def _quote_alignment_metric() -> Any:
    """A ragas non-LLM distance: how well the shorter string aligns inside the longer one."""
    from ragas.metrics._string import NonLLMStringSimilarity
    from rapidfuzz import fuzz

    @dataclass
    class QuoteAlignment(NonLLMStringSimilarity):
        name: str = "quote_alignment"

        async def _single_turn_ascore(self, sample: Any, callbacks: Any) -> float:
            return fuzz.partial_ratio(sample.response or "", sample.reference or "") / 100

    return QuoteAlignment()


@dataclass
class AnswerMetrics:
    """Scores `AnswerSample`s with the offline ragas metrics and, given a chat model, the LLM ones."""

    embedder: Embedder
    chat_model: Any = None  # a LangChain chat model; None: offline metrics only
    _metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return OFFLINE_METRICS + (LLM_METRICS if self.chat_model is not None else ())

    def warm_up(self) -> None:
        if self._metrics:
            return
        import_ragas()
        from ragas.embeddings import LangchainEmbeddingsWrapper
        from ragas.metrics import (
            NonLLMContextPrecisionWithReference,
            NonLLMContextRecall,
            NonLLMStringSimilarity,
            SemanticSimilarity,
        )

        self.embedder.warm_up()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the wrapper is "deprecated", not replaced
            embeddings = LangchainEmbeddingsWrapper(langchain_embeddings(self.embedder))
        recall = NonLLMContextRecall()
        recall._distance_measure = _quote_alignment_metric()
        self._metrics = {
            "ragas_context_precision": NonLLMContextPrecisionWithReference(distance_measure=_quote_alignment_metric()),
            "ragas_context_recall": recall,
            "ragas_answer_similarity": NonLLMStringSimilarity(),
            "ragas_semantic_similarity": SemanticSimilarity(embeddings=embeddings),
        }
        if self.chat_model is not None:
            from ragas.llms import LangchainLLMWrapper
            from ragas.metrics import Faithfulness, LLMContextPrecisionWithReference, ResponseRelevancy

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                llm = LangchainLLMWrapper(self.chat_model)
            self._metrics |= {
                "ragas_faithfulness": Faithfulness(llm=llm),
                "ragas_answer_relevancy": ResponseRelevancy(llm=llm, embeddings=embeddings),
                "ragas_llm_context_precision": LLMContextPrecisionWithReference(llm=llm),
            }

    def score(self, samples: Sequence[AnswerSample]) -> dict[str, dict[str, float | None]]:
        """Per question id, each metric's score (None where the sample lacks what the metric needs)."""
        if not self._metrics:
            raise RuntimeError("AnswerMetrics is not warmed up: call warm_up() first")
        return asyncio.run(self._score_all(samples))

    async def _score_all(self, samples: Sequence[AnswerSample]) -> dict[str, dict[str, float | None]]:
        from ragas.dataset_schema import SingleTurnSample

        out: dict[str, dict[str, float | None]] = {}
        for s in samples:
            row = SingleTurnSample(user_input=s.question, response=s.response or " ", reference=s.reference,
                                   retrieved_contexts=list(s.retrieved_contexts) or [""],
                                   reference_contexts=list(s.reference_contexts) or None)
            scores: dict[str, float | None] = {}
            for name, metric in self._metrics.items():
                needs_quotes = name in ("ragas_context_precision", "ragas_context_recall")
                if (needs_quotes and not s.reference_contexts) or (name in LLM_METRICS and not s.reference):
                    scores[name] = None
                    continue
                # One at a time: the embedder is not shared across threads and an LLM endpoint is
                # rate-limited; ragas's own executor would gather them all at once.
                value = await metric.single_turn_ascore(row)
                scores[name] = None if value is None or math.isnan(value) else float(value)
            out[s.question_id] = scores
        return out


def create_answer_metrics(embedder: Embedder, answerer: Any) -> AnswerMetrics:
    """Offline metrics, plus the LLM-judged ones through the answerer's own LangChain chat model when
    it has one (the LLM answerer, `MESHRAG_ANSWERER=llm`)."""
    return AnswerMetrics(embedder, getattr(answerer, "chat_model", None))
