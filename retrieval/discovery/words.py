"""Word matching of discovery and version questions: the lower-cased words of a text, the function words
that never link a product, `same_word` (whether two words are forms of one another: a prefix, a shared stem
with word endings, or a typo) and `respelt` (a misspelt word read as the word it is one edit from)."""

from __future__ import annotations

import re
from functools import lru_cache

from knowledge.catalog_search import QUESTION_WORDS

_WORD = re.compile(r"[a-z0-9]+")

# Words that never link a product: question and function words and common words of questions (the
# recognizer also drops the cue words of every ask and the product nouns).
_FUNCTION = frozenset(QUESTION_WORDS | {
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or", "about", "as",
    "s", "t", "re", "ve", "ll", "d", "m", "whats", "who's", "if", "so", "up", "out", "into", "than", "then",
    "some", "all", "every", "each", "still", "now", "also", "just", "please", "tell", "know", "get", "go", "got",
    "has", "have", "had", "be", "not", "no", "yes", "ok", "one", "ones", "thing", "things", "team", "teams",
    "person", "people's", "someone", "somebody", "anyone", "whoever", "supposed", "required", "allowed",
    "often", "long", "old", "need", "needs", "must", "official", "currently", "right", "there", "here",
    "look", "looks", "looked", "over", "after", "knowledge", "base", "cover", "covers", "contain",
    "contains", "hold", "holds", "include", "includes", "find", "use", "read", "see", "open", "check",
    "actually", "really", "anybody", "everyone", "everything", "anything", "something", "last", "under",
    "stuff", "going", "learn", "want", "like", "would", "could", "ever", "yet", "already",
})
FUNCTION_WORDS = _FUNCTION


@lru_cache(maxsize=4096)
def _words(text: str) -> tuple[str, ...]:
    """Lower-case words (names, teams and titles recur on every question: remembered)."""
    return tuple(_WORD.findall(text.lower()))


def words(text: str) -> list[str]:
    """The lower-cased words of a text."""
    return list(_words(text))


# Endings that make another form of the same word ("roasted"–"roasting", "defined"–"definition").
_ENDINGS = frozenset({
    "", "s", "es", "e", "ed", "d", "ing", "er", "ers", "ly", "y", "ies", "ied", "ion", "ions", "ation", "ations",
    "ition", "itions", "ication", "ications", "cation", "cations", "ment", "ments", "al", "ive", "ity", "ness", "able", "ible", "ise",
    "ize", "ised", "ized", "or", "ors", "ance", "ence", "ant", "ent", "ic", "ics", "ical", "age", "ages"})


def _one_edit(a: str, b: str) -> bool:
    """One letter inserted, dropped, replaced, or two neighbours swapped."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    if len(a) < len(b):
        return a[i:] == b[i + 1:]
    return a[i + 1:] == b[i + 1:] or (a[i + 2:] == b[i + 2:] and a[i:i + 2] == b[i:i + 2][::-1])


@lru_cache(maxsize=1 << 16)
def _match(q: str, w: str) -> bool:
    """Same word, or one a form of the other: the shorter (4+ letters) begins the longer ("comp"–
    "compensation", "refund"–"refunds"); a shared stem of 4+ letters with word endings after it ("roasted"–
    "roasting", "defined"–"definition", "cancelled"–"cancels", not "handles"–"handbook"); or a typo in a
    word of 7+ letters ("fulfillment"–"fulfilment")."""
    if q == w:
        return True
    short, long_ = (q, w) if len(q) <= len(w) else (w, q)
    if len(short) >= 4 and long_.startswith(short):
        return True
    common = 0
    for a, b in zip(q, w, strict=False):
        if a != b:
            break
        common += 1
    if common >= 4:
        rest_q, rest_w = q[common:], w[common:]
        # a doubled final consonant ("cancel-led", "ship-ping") belongs to the ending
        rest_q = rest_q[1:] if rest_q[:1] == q[common - 1] else rest_q
        rest_w = rest_w[1:] if rest_w[:1] == w[common - 1] else rest_w
        if rest_q in _ENDINGS and rest_w in _ENDINGS:
            return True
    return len(short) >= 7 and q[0] == w[0] and _one_edit(q, w)


same_word = _match


@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """Whole words of the bundled embedder's vocabulary (WordPiece, 30k): a word outside it may be a typo."""
    from indexing.embedder import bundled_minilm_path

    vocab = bundled_minilm_path() / "vocab.txt"
    return frozenset(w for w in vocab.read_text(encoding="utf-8").split() if w.isalpha())


def respelt(word: str, spellings: tuple[str, ...]) -> str | None:
    """A misspelt word of 6+ letters spelt as one of `spellings` (a word or a word's start, "classif") is,
    when it is no known word and one edit from it: "mantains" → "maintains", "clasified" → "classified"."""
    if len(word) < 6 or word in known_words() or any(word.startswith(s) or s.startswith(word) for s in spellings):
        return None  # short, a known word, or already a form of one of the spellings
    for spelling in spellings:
        for k in (len(spelling) - 1, len(spelling), len(spelling) + 1):
            if k <= len(word) and word[:k] != spelling and _one_edit(word[:k], spelling):
                return spelling + word[k:]
    return None


@lru_cache(maxsize=4096)
def respelt_words(text: str, spellings: tuple[str, ...]) -> str:
    """The text with each misspelt word (`respelt`) spelt as the spelling it is one edit from."""
    for w in set(_words(text)):
        right = respelt(w, spellings)
        if right is not None:
            text = re.sub(rf"\b{w}\b", right, text, flags=re.IGNORECASE)
    return text
