"""Where the chunker may cut a text: paragraphs, sentences and lines, the longest prefixes that fit a
limit, and the strongest boundary near the middle. Spans are (start, end) offsets, trimmed of whitespace."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*_]*\s+(?=[\"'“‘(\[*_`]*[A-Z0-9])")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
LINE_BREAK = re.compile(r"\n")
WHITESPACE = re.compile(r"\s+")


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def paragraphs(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in PARAGRAPH_BREAK.finditer(text, start, end):
        a, b = trim(text, cursor, match.start())
        if a < b:
            spans.append((a, b))
        cursor = match.end()
    a, b = trim(text, cursor, end)
    if a < b:
        spans.append((a, b))
    return spans


def sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentences and lines of [start, end), trimmed; together they cover all its non-space text."""
    cuts = {start, end}
    for match in SENTENCE_END.finditer(text, start, end):
        cuts.add(match.end())
    pos = text.find("\n", start, end)
    while pos != -1:
        cuts.add(pos + 1)
        pos = text.find("\n", pos + 1, end)
    ordered = sorted(cuts)
    spans = []
    for a, b in itertools.pairwise(ordered):
        a, b = trim(text, a, b)
        if a < b:
            spans.append((a, b))
    return spans


def split_to_fit(text: str, start: int, end: int, fits: Callable[[int, int], bool]) -> list[tuple[int, int]]:
    """Greedy left-to-right split of [start, end) into the longest prefixes that `fits`.

    Probes windows of doubling size first, so a huge run of text costs O(n log n), not O(n^2).
    """
    out: list[tuple[int, int]] = []
    cursor = start
    while cursor < end:
        lo, hi = cursor + 1, min(end, cursor + 256)
        while fits(cursor, hi) and hi < end:
            lo, hi = hi, min(end, cursor + 2 * (hi - cursor))
        if fits(cursor, hi):  # only when hi == end: the rest fits
            out.append(trim(text, cursor, end))
            break
        while hi - lo > 1:  # fits(cursor, lo) (or lo is one character); not fits(cursor, hi)
            mid = (lo + hi) // 2
            if fits(cursor, mid):
                lo = mid
            else:
                hi = mid
        cut = lo
        space = text.rfind(" ", cursor + (lo - cursor) // 2, lo)
        if space > cursor:
            cut = space
        a, b = trim(text, cursor, cut)
        if a < b:
            out.append((a, b))
        cursor = cut
        while cursor < end and text[cursor].isspace():
            cursor += 1
    return [(a, b) for a, b in out if a < b]


def split_near_middle(text: str, start: int, end: int) -> list[tuple[int, int]] | None:
    """Two trimmed halves of [start, end), cut at the strongest boundary near the middle; None if atomic."""
    middle = (start + end) // 2
    low, high = start + (end - start) // 5, start + (end - start) * 4 // 5
    for boundary in (PARAGRAPH_BREAK, LINE_BREAK, SENTENCE_END, WHITESPACE):
        # Only cut where both halves get a fair share; otherwise try a finer kind of boundary.
        candidates = [m.end() for m in boundary.finditer(text, start, end) if low <= m.end() <= high]
        if candidates:
            cut = min(candidates, key=lambda b: (abs(b - middle), b))
            halves = [trim(text, start, cut), trim(text, cut, end)]
            if all(a < b for a, b in halves):
                return halves
    if end - start >= 2:
        halves = [trim(text, start, middle), trim(text, middle, end)]
        if all(a < b for a, b in halves):
            return halves
    return None
