"""How well a text supports a sentence, and how well retrieved chunks support answering a question.

    support(sentence, cited) = 0.5 · semantic + 0.5 · lexical                      (both in [0, 1])
    semantic = max(0, cos(e(sentence), e(w))) for the best w among the cited text and each of its
               sentences (a one-sentence claim is not diluted by the rest of a long chunk)
    lexical  = |C(sentence) ∩ C(cited)| / |C(sentence)|    (recall of the sentence's content words;
               when the sentence has no content words, semantic alone counts)

C(t) = lower-cased word and number tokens of t minus stop-words, lightly stemmed ("refunds" → "refund",
"shipped" → "ship"); numbers are kept as written ("41.8", "150"), so a changed figure costs recall.
e(t) is the embedder's unit vector (MiniLM by default: cosines of unrelated sentences sit near 0.0-0.2,
of paraphrases near 0.6-0.9). Equal weights: the embedding catches paraphrase, the lexical part
catches a claim that sounds alike but names other things or other figures; neither alone separates
well (calibration figures: eval_sets/calibrate_abstention.py).

    relevance(question, text) = 0.5 · max(0, cos(e(question), e(text))) + 0.5 · recall of C(question) in text
    question_support(question, hits) = max over the hits' chunks of relevance(question, chunk), where a
               chunk is scored as a whole (breadcrumb + text) and by its best sentence

The answerers abstain when question_support falls below a threshold calibrated on the golden set.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from indexing.types import Embedder
from retrieval.answer.sentences import collapse, segments
from retrieval.types import RetrievedChunk

SEMANTIC_WEIGHT = 0.5
LEXICAL_WEIGHT = 0.5
MIN_SUPPORT = 0.5  # placeholder
ABSTAIN_THRESHOLD = 0.5  # placeholder

# English function words, question words and filler that say nothing about what a sentence claims.
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can cannot could did do does doing done down during each either else ever every few
for from further get gets got had has have having he her here hers herself him himself his how however
i if in into is it its itself just let lets like may me might more most much must my myself neither no
nor not now of off on once only or other others otherwise our ours ourselves out over own per please
quite rather same shall she should since so some such than that the their theirs them themselves then
there these they this those through thus to too under until up upon us use used using very via was we
were what whatever when whenever where whereas wherever whether which while who whom whose why will with
within without would yes yet you your yours yourself yourselves
anything anyone anybody something someone somebody everything everyone nothing
tell know need needs want wants happen happens happened kind sort way ways thing things
""".split())

_TOKEN = re.compile(r"[a-z0-9]+(?:[.,'’][a-z0-9]+)*")
_VOWEL = re.compile(r"[aeiouy]")


@lru_cache(maxsize=100_000)
def _stem(token: str) -> str:
    """A light, consistent stemmer: inflections of a word map to one key ("policy", "policies" →
    "polici"; "ship", "shipped", "shipping" → "ship"; "date", "dates", "dated" → "dat")."""
    if any(ch.isdigit() for ch in token):
        return token.replace(",", "")  # "1,000" and "1000" are the same figure
    word = token.replace("’", "'").removesuffix("'s").replace("'", "")
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        word = word[:-1]
    elif word.endswith("ied") and len(word) > 4:
        word = word[:-3] + "y"
    for suffix in ("ing", "ed"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3 and _VOWEL.search(stem) and not stem.endswith("e"):
            # "shipp" → "ship", but "fill", "pass", "buzz" keep their double letter
            word = stem[:-1] if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz" else stem
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    if word.endswith("y") and len(word) > 3:
        word = word[:-1] + "i"
    return word


def content_words(text: str) -> frozenset[str]:
    """C(text): the stemmed content words and numbers of `text`."""
    return frozenset(_stem(t.rstrip(".,")) for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS)


def lexical_recall(needle: str, haystack: str) -> float | None:
    """Share of the needle's content words found in the haystack; None when the needle has none."""
    wanted = content_words(needle)
    if not wanted:
        return None
    return len(wanted & content_words(haystack)) / len(wanted)


def _combine(cosine: float, recall: float | None) -> float:
    semantic = min(1.0, max(0.0, cosine))
    if recall is None:
        return semantic
    return SEMANTIC_WEIGHT * semantic + LEXICAL_WEIGHT * recall


class SupportScorer:
    """Support and relevance scores from one embedder (warmed up here) plus lexical overlap."""

    name = "embedding-lexical-support"
    version = "1"

    def __init__(self, embedder: Embedder, *, cache_size: int = 20_000) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """Scorer version and embedding model: the scores mean something only for this pair."""
        return f"{self.name}@{self.version}+{self.embedder.model_id}"

    def warm_up(self) -> None:
        self.embedder.warm_up()

    # ------------------------------------------------------------------------------------ vectors
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts` (rows in order), from an LRU cache where already computed."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            computed = self.embedder.embed_documents(missing)
            with self._lock:
                for text, vector in zip(missing, computed):
                    self._vectors[text] = vector
                while len(self._vectors) > self.cache_size:
                    self._vectors.popitem(last=False)
        with self._lock:
            rows = []
            for text in texts:
                vector = self._vectors.get(text)
                if vector is None:  # evicted by a concurrent call: recompute just this one
                    vector = self.embedder.embed_documents([text])[0]
                else:
                    self._vectors.move_to_end(text)
                rows.append(vector)
        return np.vstack(rows) if rows else np.zeros((0, self.embedder.dim), dtype=np.float32)

    # ------------------------------------------------------------------------------------ scores
    def support(self, sentence: str, cited_text: str) -> float:
        """How well `cited_text` supports the claim `sentence`, in [0, 1]."""
        return self.support_many([(sentence, cited_text)])[0]

    def support_many(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """support() for many (sentence, cited text) pairs, embedding each distinct text once."""
        if not pairs:
            return []
        windows = {cited: _windows(cited) for _, cited in pairs}
        texts = [s for s, _ in pairs] + [w for ws in windows.values() for w in ws]
        vectors = dict(zip(texts, self.embed(texts)))
        scores = []
        for sentence, cited in pairs:
            cited_vectors = np.vstack([vectors[w] for w in windows[cited]])
            cosine = float(np.max(cited_vectors @ vectors[sentence]))
            scores.append(_combine(cosine, lexical_recall(sentence, cited)))
        return scores

    def relevance(self, question: str, texts: Sequence[str]) -> list[float]:
        """How much each text says about the question, in [0, 1] (same weights as support)."""
        if not texts:
            return []
        vectors = self.embed([question, *texts])
        cosines = vectors[1:] @ vectors[0]
        return [_combine(float(c), lexical_recall(question, t)) for c, t in zip(cosines, texts)]

    def question_support(self, question: str, hits: Sequence[RetrievedChunk]) -> float:
        """How well the retrieved chunks support answering the question at all, in [0, 1] (0 without
        hits): 0.5 · the best cosine between the question and a chunk (breadcrumb + text) + 0.5 · the
        share of the question's content words found anywhere in the retrieved chunks."""
        if not hits:
            return 0.0
        texts = list(dict.fromkeys(collapse(hit.chunk.embedding_text) for hit in hits))
        vectors = self.embed([question, *texts])
        best_cosine = float(np.max(vectors[1:] @ vectors[0]))
        wanted = content_words(question)
        found = frozenset().union(*(content_words(t) for t in texts))
        coverage = len(wanted & found) / len(wanted) if wanted else None
        return _combine(best_cosine, coverage)


def _windows(text: str) -> list[str]:
    """The text itself, then its sentences (when there is more than one)."""
    pieces = [s.text for s in segments(text) if s.kind != "heading"]
    whole = collapse(text)
    return [whole, *(p for p in pieces if p != whole)] if len(pieces) > 1 else [whole]
