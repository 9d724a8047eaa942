"""Checking an answer's citations against the text they cite.

`verify_citations` reads `[n]` markers (also `[n, m]`, `[n; m]`, `[n-m]` and `[n][m]`) sentence by
sentence and keeps a marker only when it resolves to a context chunk (1 ≤ n ≤ number of hits) and that
chunk supports the sentence (`SupportScorer.support` ≥ `min_support`, measured against the chunk's
breadcrumb and text). Surviving citations are renumbered 1, 2, … in order of first use; every removed
marker is counted in `dropped` (a marker repeated within one sentence is merged, not counted).

A sentence left without a citation — none was given, or every one was removed — is kept in the text
with `markers=()` and `support=0.0`: the reader sees the claim is unsupported, and callers decide
(the LLM answerer abstains when *no* sentence kept a citation). The extractive answerer never produces
one: each of its sentences is copied from the chunk it cites. Markers are moved to the end of their
sentence, before its final punctuation ("… in October [1].").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from knowledge.errors import ConfigError
from retrieval.answer.base import citation_for
from retrieval.answer.sentences import sentence_spans
from retrieval.answer.support import SupportScorer
from retrieval.answer.support import cited_text as chunk_cited_text
from retrieval.types import AnswerSentence, Citation, RetrievedChunk

MARKER = re.compile(r"\[\s*(\d{1,4}(?:\s*(?:[,;]|[-–])\s*\d{1,4})*)\s*\]")
_SPACED_MARKER = re.compile(rf"\s*{MARKER.pattern}")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_TRAILING_PUNCT = re.compile(r"[.!?]+[\"'”’)*_]*$")
_MAX_RANGE = 20  # "[2-5]" expands; a longer range is taken as its two ends


class VerifiedText(NamedTuple):
    text: str  # the answer with only verified markers, renumbered densely
    citations: tuple[Citation, ...]  # one per surviving marker, in marker order
    sentences: tuple[AnswerSentence, ...]
    dropped: int  # markers removed: unresolvable or unsupported


@dataclass
class _Piece:
    line: int
    body: str
    markers: list[int] = field(default_factory=list)  # as written, duplicates removed, in order


def cited_text(hit: RetrievedChunk) -> str:
    """What a citation of `hit` is checked against: the chunk's breadcrumb, then its text."""
    return chunk_cited_text(hit.chunk)


def parse_markers(group: str) -> list[int]:
    """The numbers of one marker's inside: "3" → [3], "1, 4" → [1, 4], "2-4" → [2, 3, 4]."""
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group.strip()):
        ends = [int(x) for x in re.split(r"\s*[-–]\s*", part) if x]
        if len(ends) == 2 and ends[0] <= ends[1] and ends[1] - ends[0] < _MAX_RANGE:
            numbers.extend(range(ends[0], ends[1] + 1))
        else:
            numbers.extend(ends)
    return numbers


def _clean(raw: str) -> str:
    """The sentence without its markers (and the space before each), whitespace collapsed."""
    return " ".join(_SPACED_MARKER.sub("", raw).split())


def _pieces(answer_text: str) -> tuple[list[str], list[_Piece], int]:
    """Line prefixes (bullets), the sentences with their markers, and markers with no sentence."""
    prefixes: list[str] = []
    pieces: list[_Piece] = []
    orphans = 0
    for line_no, line in enumerate(answer_text.strip().split("\n")):
        bullet = _BULLET.match(line)
        prefix = bullet.group(0).strip() + " " if bullet else ""
        rest = line[bullet.end():] if bullet else line
        prefixes.append(prefix)
        for a, b in sentence_spans(rest):
            raw = rest[a:b]
            markers = list(dict.fromkeys(n for m in MARKER.finditer(raw) for n in parse_markers(m.group(1))))
            body = _clean(raw)
            if re.search(r"\w", body):
                pieces.append(_Piece(line_no, body, markers))
            elif pieces:  # markers standing alone ("…text.\n[2]") belong to the sentence before them
                pieces[-1].markers.extend(n for n in markers if n not in pieces[-1].markers)
            else:
                orphans += len(markers)
    return prefixes, pieces, orphans


def with_markers(body: str, markers: Sequence[int]) -> str:
    """`body` with its citation markers before its final punctuation ("… net of refunds [1]."): how an
    answer's text shows them, whichever stage wrote the sentence."""
    if not markers:
        return body
    tags = "".join(f"[{n}]" for n in markers)
    end = _TRAILING_PUNCT.search(body)
    return f"{body[:end.start()]} {tags}{body[end.start():]}" if end else f"{body} {tags}"


def verify_citations(answer_text: str, context_hits: Sequence[RetrievedChunk], scorer: SupportScorer,
                     min_support: float) -> VerifiedText:
    """Keep the citations of `answer_text` that resolve to `context_hits` ([1] = first hit) and
    support their sentence; renumber them densely; count what was removed."""
    if not 0.0 <= min_support <= 1.0:
        raise ConfigError(f"min_support must be within [0, 1], got {min_support}")
    prefixes, pieces, dropped = _pieces(answer_text)
    n_hits = len(context_hits)

    pairs: dict[tuple[str, int], float] = {}
    for piece in pieces:
        for n in piece.markers:
            if 1 <= n <= n_hits:
                pairs[(piece.body, n)] = 0.0
    keys = list(pairs)
    scores = scorer.support_many([(body, cited_text(context_hits[n - 1])) for body, n in keys])
    pairs = dict(zip(keys, scores))

    renumber: dict[int, int] = {}  # context number → marker in the answer
    best: dict[int, float] = {}  # context number → best support among the sentences citing it
    sentences: list[AnswerSentence] = []
    lines: list[list[str]] = [[] for _ in prefixes]
    for piece in pieces:
        kept: list[int] = []
        support = 0.0
        for n in piece.markers:
            score = pairs.get((piece.body, n))
            if score is None or score < min_support:
                dropped += 1
                continue
            renumber.setdefault(n, len(renumber) + 1)
            best[n] = max(best.get(n, 0.0), score)
            kept.append(renumber[n])
            support = max(support, score)
        sentences.append(AnswerSentence(text=piece.body, markers=tuple(kept), support=round(support, 4)))
        lines[piece.line].append(with_markers(piece.body, kept))

    text = "\n".join(prefix + " ".join(parts) if parts else "" for prefix, parts in zip(prefixes, lines))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    citations = tuple(citation_for(marker, context_hits[n - 1], best[n]) for n, marker in renumber.items())
    return VerifiedText(text, citations, tuple(sentences), dropped)
