"""How well a text supports a sentence (the citation check), and how relevant a text is to a question.

    support(sentence, cited) = 0.5 · semantic + 0.5 · lexical                      (each in [0, 1])
    semantic = max(0, cos(e(sentence), e(w))) for the best w among the cited text and each of its
               sentences (a one-sentence claim is not diluted by the rest of a long chunk)
    lexical  = |C(sentence) ∩ C(cited)| / |C(sentence)|   (recall of the sentence's content words;
               when the sentence has none — "Yes." — semantic alone counts)
    A verbatim quote of at least 3 content words scores 1 without embedding anything.

    relevance(question, text) = 0.5 · max(0, cos(e(question), e(text))) + 0.5 · |C(q) ∩ C(text)| / |C(q)|

Whether a question is answered at all is not decided here but by the fitted answer model
(retrieval/answer/model.py, retrieval/answer/grounded.py).

C(t) = case-folded word and number tokens of t (any script, NFKC) minus stop-words, lightly stemmed ("refunds" → "refund",
"shipped" → "ship"); numbers are kept as written ("41.8", "150"), so a changed figure costs recall.
e(t) is the embedder's unit vector (MiniLM by default: cosines of unrelated sentences sit near 0.0-0.2,
of paraphrases near 0.6-0.9). Equal weights: the embedding catches paraphrase, the lexical part
catches a claim that sounds alike but names other things or other figures.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from indexing.embedding_cache import EmbeddingCache, embed_with_cache, text_hash
from indexing.types import Chunk, Embedder
from retrieval.answer.sentences import collapse, segments, strip_emphasis

SEMANTIC_WEIGHT = 0.5
LEXICAL_WEIGHT = 0.5
# Calibrated with `python -m eval_sets.calibrate_citations` on the sample mesh's golden set (MiniLM,
# hybrid search, top 8 hits). Citations: 156 reference-answer sentences scored 0.53-1.00 (median 0.89) against the chunk holding
# their gold quote and 0.03-0.39 (median 0.13) against a chunk of another product. 0.50 is the
# strictest value on the 0.05 grid that keeps every gold pair (100% kept, 100% of the others dropped;
# 0.55 starts dropping gold pairs).
MIN_SUPPORT = 0.50
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
""".split())  # noqa: SIM905

# Letters and digits of any script ("Ögedei" → "ögedei", not "gedei"), case-folded after NFKC.
_TOKEN = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*")
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


def ordered_content_words(text: str) -> list[str]:
    """The stemmed content words and numbers of `text`, in order (repeats kept)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [_stem(t.rstrip(".,")) for t in _TOKEN.findall(folded) if t not in STOP_WORDS]


@lru_cache(maxsize=200_000)
def content_words(text: str) -> frozenset[str]:
    """C(text): the stemmed content words and numbers of `text`."""
    return frozenset(ordered_content_words(text))


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


def cited_text(chunk: Chunk) -> str:
    """What a citation of `chunk` is checked against: the chunk's breadcrumb, then its text."""
    return f"{chunk.context}\n\n{chunk.text}" if chunk.context else chunk.text


def chunk_passages(chunk: Chunk) -> list[str]:
    """The passages of `chunk` a citation of it is checked against when the cited sentence is not a
    verbatim quote (`support_many`): the chunk as cited, and its sentences."""
    return _windows(cited_text(chunk))


class SupportScorer:
    """Support and relevance scores from one embedder (warmed up here) plus lexical overlap.

    Passage vectors are kept in an in-memory LRU and, when `store` is given, in a persistent
    `EmbeddingCache` (keyed by model id and text hash) that `precompute` fills ahead of questions, so
    answering embeds only the question. Question vectors are never persisted."""

    name = "embedding-lexical-support"
    version = "1"

    def __init__(self, embedder: Embedder, *, cache_size: int = 50_000, store: EmbeddingCache | None = None) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self.store = store
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """Scorer version and embedding model: the scores mean something only for this pair."""
        return f"{self.name}@{self.version}+{self.embedder.model_id}"

    def warm_up(self) -> None:
        self.embedder.warm_up()
        if self.store is not None:
            self.store.warm_up()

    # ------------------------------------------------------------------------------------ vectors
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts` as passages (rows in order), cached (LRU, then the store) by text."""
        return self._cached(self._vectors, texts, self._passages)

    def _passages(self, texts: list[str]) -> np.ndarray:
        if self.store is None:
            return self.embedder.embed_documents(texts)
        return embed_with_cache(self.embedder, self.store, texts)[0]

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The texts (distinct, in order) whose passage vectors are neither in memory nor in the store."""
        with self._lock:
            todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if self.store is None or not todo:
            return todo
        hashes = {t: text_hash(t) for t in todo}
        known = self.store.get_many(self.embedder.model_id, hashes.values())
        return [t for t in todo if hashes[t] not in known]

    def embed_question(self, question: str) -> np.ndarray:
        """The question's unit vector through `embed_query` (an asymmetric embedder encodes queries
        differently from passages), cached like passages."""
        return self._cached(self._queries, [question],
                            lambda texts: np.vstack([self.embedder.embed_query(t) for t in texts]))[0]

    def _cached(self, cache: OrderedDict[str, np.ndarray], texts: Sequence[str],
                compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        with self._lock:
            known = {t: cache[t] for t in texts if t in cache}
            for text in known:
                cache.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            computed = dict(zip(missing, compute(missing), strict=True))
            known.update(computed)
            with self._lock:
                cache.update(computed)
                while len(cache) > self.cache_size:
                    cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.vstack([known[t] for t in texts])

    # ------------------------------------------------------------------------------------ scores
    def support(self, sentence: str, cited_text: str) -> float:
        """How well `cited_text` supports the claim `sentence`, in [0, 1]."""
        return self.support_many([(sentence, cited_text)])[0]

    def support_many(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """support() for many (sentence, cited text) pairs, embedding each distinct text once."""
        if not pairs:
            return []
        # A verbatim quote (of a few content words at least) is fully supported: lexical recall 1 and
        # cosine 1 with itself, so nothing needs embedding.
        verbatim = [_quotes(sentence, cited) for sentence, cited in pairs]
        to_embed = [pair for pair, quoted in zip(pairs, verbatim) if not quoted]
        windows = {cited: _windows(cited) for _, cited in to_embed}
        texts = [s for s, _ in to_embed] + [w for ws in windows.values() for w in ws]
        vectors = dict(zip(texts, self.embed(texts))) if texts else {}
        scores = []
        for (sentence, cited), quoted in zip(pairs, verbatim):
            if quoted:
                scores.append(1.0)
                continue
            cited_vectors = np.vstack([vectors[w] for w in windows[cited]])
            cosine = float(np.max(cited_vectors @ vectors[sentence]))
            scores.append(_combine(cosine, lexical_recall(sentence, cited)))
        return scores

    def relevance(self, question: str, texts: Sequence[str]) -> list[float]:
        """How much each text says about the question, in [0, 1] (same weights as support)."""
        if not texts:
            return []
        cosines = self.embed(texts) @ self.embed_question(question)
        return [_combine(float(c), lexical_recall(question, t)) for c, t in zip(cosines, texts, strict=True)]


def _quotes(sentence: str, cited: str) -> bool:
    """A verbatim quote, Markdown emphasis aside (answers quote "a missed pickup" from "a **missed** pickup")."""
    if len(content_words(sentence)) < 3:
        return False
    return collapse(strip_emphasis(sentence)).casefold() in collapse(strip_emphasis(cited)).casefold()


def _windows(text: str) -> list[str]:
    """The text itself, then its sentences (when there is more than one)."""
    pieces = [s.text for s in segments(text) if s.kind != "heading"]
    whole = collapse(text)
    return [whole, *(p for p in pieces if p != whole)] if len(pieces) > 1 else [whole]
