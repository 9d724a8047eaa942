"""Turning a chat follow-up into a standalone question, deterministically and offline.

Only user turns count (assistant and system turns are ignored). Each user turn is made standalone in
order, using the previous turn's standalone form, so chains of follow-ups keep their subject.

The *key phrase* of a question is its longest run of content words (words that are not question words,
pronouns, determiners, auxiliaries, prepositions or generic verbs/nouns such as "owns", "defines",
"product"); ties go to the later run. Its *subject* is the key phrase with the determiner before it and
a following "product(s)": "Who owns the revenue reporting product?" → "the revenue reporting product".

A turn is a follow-up of the previous one when one of these holds, checked in this order:

1. **Connector** — it starts with "and", "also", "what about", "how about" (optionally "and what
   about", …). The rest replaces the subject in the previous question:
   "Who owns the churn rate metric?" + "and net revenue?" → "Who owns net revenue?"
2. **Pronoun** — it contains it/its/they/them/their/theirs, or ends with this/that/these/those. The
   first such pronoun is replaced by the subject (possessives get "'s"):
   "How fresh is it?" → "How fresh is the churn rate metric?"
3. **Short** — it has at most three words and does not start with a question word or auxiliary
   (ellipsis): "of <subject>" is appended: "Owner?" → "Owner of the churn rate metric?"

Anything else is already standalone and is used as written. The rule never looks at answers, so the
same conversation always gives the same question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

STOP = frozenset(
    [
        "a", "an", "the", "this", "that", "these", "those", "there", "here", "it", "its", "they", "them",
        "their", "theirs", "he", "she", "his", "her", "we", "us", "our", "you", "your", "i", "me", "my",
        "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "does", "do", "did", "is",
        "are", "was", "were", "am", "be", "been", "being", "can", "could", "should", "would", "will", "shall",
        "may", "might", "must", "of", "in", "on", "at", "to", "for", "from", "by", "with", "about", "into",
        "over", "under", "as", "and", "or", "but", "if", "then", "than", "so", "not", "no", "also", "any",
        "some", "all", "each", "every", "much", "many", "more", "most", "own", "owns", "owned", "owner",
        "define", "defines", "defined", "definition", "mean", "means", "meant", "tell", "show", "give",
        "list", "find", "get", "need", "needs", "use", "used", "uses", "say", "says", "said", "explain",
        "describe", "work", "works", "happen", "happens", "apply", "applies", "product", "products", "data",
        "document", "documents", "thing", "things", "please", "know",
    ]
)
_WORD = re.compile(r"[\w'’-]+")
_CONNECTOR = re.compile(
    r"^\s*(?:and\s+|also\s+)?(?:what\s+about|how\s+about)\s+|^\s*(?:and|also)\s+", re.IGNORECASE
)
_PRONOUN = re.compile(r"\b(it|its|they|them|their|theirs)\b", re.IGNORECASE)
_TRAILING_DEMONSTRATIVE = re.compile(r"\b(this|that|these|those)\s*([?.!]*)\s*$", re.IGNORECASE)
_POSSESSIVE = {"its", "their", "theirs"}
_DET_BEFORE = re.compile(r"\b(?:the|a|an|this|that|these|those|our|your)\s+$", re.IGNORECASE)
_HEAD_AFTER = re.compile(r"^\s+(?:data\s+)?products?\b", re.IGNORECASE)
MAX_SHORT_WORDS = 3
_QUESTION_START = frozenset(
    [
        "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "does", "do", "did", "is",
        "are", "was", "were", "can", "could", "should", "would", "will", "may", "might", "must",
    ]
)


@dataclass(frozen=True)
class Rewrite:
    question: str  # the standalone question
    rewritten: bool
    rule: str  # "none", "connector", "pronoun", "short"


def _key_span(question: str) -> tuple[int, int] | None:
    """Character span of the longest run of content words (later wins a tie)."""
    runs: list[list[re.Match[str]]] = [[]]
    for word in _WORD.finditer(question):
        if word.group().lower().strip("'’") in STOP:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(word)
    best: list[re.Match[str]] = []
    for run in runs:
        if run and len(run) >= len(best):
            best = run
    return (best[0].start(), best[-1].end()) if best else None


def key_phrase(question: str) -> str | None:
    """The longest run of content words (later wins a tie), as written in the question."""
    span = _key_span(question)
    return question[span[0] : span[1]] if span else None


def referent(question: str) -> tuple[int, int] | None:
    """Span of what a follow-up refers back to: the key phrase with the determiner before it and a
    generic head noun after it ("the revenue reporting product")."""
    span = _key_span(question)
    if span is None:
        return None
    start, end = span
    before = _DET_BEFORE.search(question[:start])
    after = _HEAD_AFTER.match(question[end:])
    return (before.start() if before else start, end + (after.end() if after else 0))


def rewrite_turn(question: str, previous: str | None) -> Rewrite:
    """`question` made standalone against the previous turn's standalone question."""
    question = " ".join(question.split())
    span = referent(previous) if previous else None
    if previous is None or span is None:
        return Rewrite(question, False, "none")
    subject = previous[span[0] : span[1]]

    connector = _CONNECTOR.match(question)
    if connector:
        rest = question[connector.end() :].strip().rstrip("?.! ")
        if rest:
            return Rewrite(previous[: span[0]] + rest + previous[span[1] :], True, "connector")

    pronoun = _PRONOUN.search(question)
    if pronoun:
        replacement = subject + "'s" if pronoun.group(1).lower() in _POSSESSIVE else subject
        return Rewrite(question[: pronoun.start()] + replacement + question[pronoun.end() :], True, "pronoun")
    demonstrative = _TRAILING_DEMONSTRATIVE.search(question)
    if demonstrative:
        return Rewrite(question[: demonstrative.start()] + subject + demonstrative.group(2), True, "pronoun")

    words = _WORD.findall(question)
    if (
        words
        and len(words) <= MAX_SHORT_WORDS
        and words[0].lower() not in _QUESTION_START
        and subject.lower() not in question.lower()
    ):
        body = question.rstrip("?.! ")
        end = question[len(body) :].strip() or "?"
        return Rewrite(f"{body} of {subject}{end[:1]}", True, "short")
    return Rewrite(question, False, "none")


def standalone_question(user_turns: Sequence[str]) -> Rewrite:
    """The last user turn as a standalone question, each earlier turn made standalone first."""
    if not user_turns:
        raise ValueError("no user turn")
    previous: str | None = None
    result = Rewrite(user_turns[0], False, "none")
    for turn in user_turns:
        result = rewrite_turn(turn, previous)
        previous = result.question
    return result
