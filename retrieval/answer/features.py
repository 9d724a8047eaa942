"""Features of (question, candidate sentence) pairs that transfer across corpora and question styles.

A question is compared with a *candidate set*: every sentence an answer might quote (the sentences
of the retrieved chunks at serving time; an abstract's sentences or a Wikipedia summary's in the
benchmarks). Each candidate has its text, a context (its section heading or document title) and two
unit vectors from the embedder: of the sentence, and of "context: sentence". Features per candidate:

    cos_s, cos_c        cosine of the question with the sentence, and with "context: sentence"
    rel_s, rel_c        those minus their best value in the set (how far from the best candidate)
    lex, lex_c          share of the question's content words in the sentence (in context + sentence)
    lex_idf, lex_idf_rel  the same weighted by rarity within the set (log(1 + n / df)), and minus its best
    bigram              share of the question's adjacent content-word pairs found in the sentence
    missing_specific    share of the question's specific terms (figures, dates, capitalised names) found
                        neither in the sentence nor in its context: "churn in March 2026" asked of a
                        passage about September 2026 (a near miss: right entity, unstated fact)
    type_match          1 when the sentence holds a phrase of the kind the question asks for
                        (who → name, when → date, how many/much → number or amount, where → place) that
                        the question does not contain, 0 when it holds none, 0.5 when no kind is asked
    length              log(1 + words in the sentence)

Tokens are Unicode-aware (NFKC, case-folded `\\w` runs: "Ögedei" stays "ögedei") and lightly stemmed
(`retrieval.answer.support.content_words`). Bump FEATURES_VERSION whenever a value would change: a
model fitted on other features is refused on load.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np

from retrieval.answer.answer_types import AnswerType, expected_type, has_type
from retrieval.answer.support import content_words, ordered_content_words

FEATURES_VERSION = "answer-features-2"
FEATURE_NAMES = ("cos_s", "cos_c", "rel_s", "rel_c", "lex", "lex_c", "lex_idf", "lex_idf_rel", "bigram",
                 "missing_specific", "type_match", "length")
_QUESTION_OPENERS = frozenset(["what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "would", "will", "shall", "might", "has", "have", "had", "if", "in", "on", "at", "for", "to", "of", "the", "a", "an", "and", "or", "any", "our", "my", "we", "i"])


def candidate_features(question: str, question_vector: np.ndarray, texts: Sequence[str],
                       contexts: Sequence[str], sentence_vectors: np.ndarray, context_vectors: np.ndarray,
                       *, names: Sequence[str] = FEATURE_NAMES, kind: AnswerType | None | str = "auto") -> np.ndarray:
    """The (len(texts), len(names)) feature matrix of one candidate set; only the named columns are
    computed (answering computes the few its model uses)."""
    n = len(texts)
    if n == 0:
        return np.zeros((0, len(names)))
    wanted = content_words(question)
    words = [content_words(t) for t in texts]
    def with_context() -> list[frozenset[str]]:
        return [w | content_words(c) for w, c in zip(words, contexts, strict=True)]

    def lex_idf() -> np.ndarray:
        df = Counter(t for w in words for t in w & wanted)
        idf = {t: math.log(1.0 + n / (df[t] or 0.5)) for t in wanted}
        total = sum(idf.values())
        return np.array([sum(idf[t] for t in wanted & w) / total if total else 0.0 for w in words])

    def bigram() -> np.ndarray:
        pairs = _pairs(ordered_content_words(question))
        return np.array([len(pairs & _pairs(ordered_content_words(t))) / len(pairs) if pairs else 0.0
                         for t in texts])

    def missing() -> np.ndarray:
        specific = specific_terms(question)
        return np.array([len(specific - w) / len(specific) if specific else 0.0 for w in with_context()])

    def type_match() -> np.ndarray:
        asked = expected_type(question) if kind == "auto" else kind
        return np.array([has_type(t, asked, question) for t in texts])  # type: ignore[arg-type]

    def recall(sets: list[frozenset[str]]) -> np.ndarray:
        return np.array([len(wanted & w) / len(wanted) if wanted else 0.0 for w in sets])

    def relative(values: np.ndarray) -> np.ndarray:
        return values - values.max()

    columns: dict[str, Callable[[], np.ndarray]] = {
        "cos_s": lambda: sentence_vectors @ question_vector,
        "cos_c": lambda: context_vectors @ question_vector,
        "rel_s": lambda: relative(sentence_vectors @ question_vector),
        "rel_c": lambda: relative(context_vectors @ question_vector),
        "lex": lambda: recall(words),
        "lex_c": lambda: recall(with_context()),
        "lex_idf": lex_idf,
        "lex_idf_rel": lambda: relative(lex_idf()),
        "bigram": bigram,
        "missing_specific": missing,
        "type_match": type_match,
        "length": lambda: np.array([math.log1p(len(t.split())) for t in texts]),
    }
    return np.column_stack([columns[name]() for name in names])


def specific_terms(question: str) -> frozenset[str]:
    """The content words of the question that pin down one fact: figures and dates, and capitalised
    words that do not open the question ("churn in March 2026" → {"march", "2026"})."""
    words = question.split()
    picked = []
    for i, raw in enumerate(words):
        word = raw.strip("?!.,;:()[]\"'“”‘’")
        if not word:
            continue
        if any(ch.isdigit() for ch in word) or (i > 0 and word[:1].isupper() and word.casefold() not in
                                                 _QUESTION_OPENERS):
            picked.append(word)
    return content_words(" ".join(picked))


def _pairs(tokens: Sequence[str]) -> frozenset[tuple[str, str]]:
    return frozenset(pairwise(tokens))


def select(matrix: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The columns of `matrix` named by `names`, in that order."""
    index = [FEATURE_NAMES.index(name) for name in names]
    return matrix[:, index]
