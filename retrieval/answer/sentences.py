"""Cutting text into sentences: chunk text into candidate answer sentences, and answer text (with `[n]`
citation markers) into the sentences whose citations get checked.

Chunk text is Markdown-like: headings, wrapped prose lines, list items, table rows, `key: value`
fields. Each candidate is a `Segment` whose `text` is the source span with its whitespace collapsed,
so ``" ".join(chunk.text[seg.start:seg.end].split()) == seg.text`` always holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

SegmentKind = Literal["prose", "list", "table", "field", "heading"]

# Words whose trailing period does not end a sentence ("e.g.", "vs.", "approx.").
_ABBREVIATIONS = frozenset({
    "e.g", "i.e", "etc", "vs", "cf", "approx", "incl", "excl", "est", "dept", "fig", "no", "nos", "vol", "pp",
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun",
})
_MARKER_GROUP = r"\[\s*\d+(?:\s*(?:[,;]|[-–])\s*\d+)*\s*\]"
# End of a sentence: terminal punctuation, closing quotes/brackets/emphasis, then any citation markers.
_BOUNDARY = re.compile(rf"[.!?]+[\"'”’)*_]*(?:\s*{_MARKER_GROUP})*")
_NEXT_STARTS_SENTENCE = re.compile(r"\s+(?=[A-Z0-9\"'“‘(\[*`$£€])")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_TABLE_ROW = re.compile(r"^\s*\|")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^(\s*)(?:[-*+•]|\d{1,3}[.)]|[a-z][.)])\s+")
_FIELD = re.compile(r"^\s*[A-Za-z_][\w .-]{0,30}:\s+\S")
_CODE_FENCE = re.compile(r"^ {0,3}(```|~~~).*?(?:^ {0,3}\1[^\n]*$|\Z)", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Segment:
    """One candidate sentence of a chunk: collapsed text, its span in the chunk text, what it came from."""

    text: str
    start: int
    end: int
    kind: SegmentKind
    block: int  # index of the blank-line-separated block (paragraph, list, table) holding it
    # How an answer quotes it: a table row as "Column: value; Column: value." under its header; else
    # the text itself.
    display: str = ""

    @property
    def quoted(self) -> str:
        """The text an answer quotes: the display form, without Markdown emphasis or quote marks."""
        return strip_emphasis(_BLOCKQUOTE.sub("", self.display or self.text))


_BLOCKQUOTE = re.compile(r"^(?:>\s*)+")
_EMPHASIS = re.compile(r"\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)|`")


def strip_emphasis(text: str) -> str:
    """"A **missed** `pickup`" → "A missed pickup" (also what a quote is matched against)."""
    return _EMPHASIS.sub("", text)


def collapse(text: str) -> str:
    return " ".join(text.split())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of running text, leading/trailing whitespace excluded.

    A sentence ends at . ! or ? (plus closing quotes and any `[n]` markers right after it) when the
    next word starts like a sentence (capital, digit, quote, bracket) and the word before the period is
    not an abbreviation or an initial."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        nxt = _NEXT_STARTS_SENTENCE.match(text, m.end())
        if nxt is None or _is_abbreviation(text, m.start(), text[nxt.end():nxt.end() + 1]):
            continue
        spans.append((start, m.end()))
        start = nxt.end()
    spans.append((start, len(text)))
    return [trimmed for a, b in spans if (trimmed := _trim(text, a, b)) is not None]


def _is_abbreviation(text: str, punct_at: int, next_char: str) -> bool:
    if text[punct_at] != ".":
        return False
    word = re.search(r"[\w.]*$", text[:punct_at]).group(0).lower()  # type: ignore[union-attr]
    if not word:
        return False
    if word == "no":  # "No. 5" is a number; "No. The credit…" is an answer
        return next_char.isdigit()
    if word in _ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.)+[a-z]", word):
        return True
    return len(word) == 1 and word.isalpha() and text[punct_at - 1].isupper()  # an initial: "J. Feld"


def _trim(text: str, a: int, b: int) -> tuple[int, int] | None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return (a, b) if a < b else None


def _blocks(text: str) -> Iterator[list[tuple[int, str]]]:
    """Blank-line-separated blocks as lists of (offset, line), lines without their newline."""
    lines: list[tuple[int, str]] = []
    offset = 0
    for raw in text.split("\n"):
        if raw.strip():
            lines.append((offset, raw))
        elif lines:
            yield lines
            lines = []
        offset += len(raw) + 1
    if lines:
        yield lines


def _cells(line: str) -> list[str]:
    return [" ".join(c.split()).strip("*_` ") for c in line.strip().strip("|").split("|")]


def table_row_sentence(header: list[str], row: list[str]) -> str:
    """A table row as a sentence that keeps the column names: "Metric: churn; Value: 2.1%."."""
    pairs = [(h, v) for h, v in zip(header, row) if v and v not in ("-", "—", "–")]
    if not pairs:
        return ""
    body = "; ".join(f"{h}: {v}" if h else v for h, v in pairs)
    return body if body.endswith((".", "!", "?")) else body + "."


def _units(lines: list[tuple[int, str]]) -> Iterator[tuple[SegmentKind, int, int, str]]:
    """(kind, start, end, display) of each heading, table row, field, list item and prose paragraph of
    a block; display is set for table rows under a header."""
    header: list[str] | None = None
    all_fields = all(_FIELD.match(line) and len(line) <= 80 for _, line in lines)
    kind: SegmentKind = "prose"
    start: int | None = None  # of the prose paragraph or list item being collected
    end = 0
    for i, (off, line) in enumerate(lines):
        line_end = off + len(line)
        item = _LIST_ITEM.match(line)
        if kind == "list" and start is not None and item is None and line[:1].isspace():
            end = line_end  # an indented continuation of the list item
            continue
        if start is not None and (kind == "list" or item is not None or _HEADING.match(line)
                                  or _TABLE_ROW.match(line) or all_fields):
            yield kind, start, end, ""
            start = None
        if _HEADING.match(line):
            body = line.lstrip().lstrip("#")
            yield "heading", line_end - len(body), line_end, ""
        elif _TABLE_ROW.match(line):
            is_header = i + 1 < len(lines) and bool(_TABLE_SEPARATOR.match(lines[i + 1][1]))
            if is_header:
                header = _cells(line)
            elif not _TABLE_SEPARATOR.match(line):
                yield "table", off, line_end, table_row_sentence(header, _cells(line)) if header else ""
        elif all_fields:
            yield "field", off, line_end, ""
        elif item is not None:
            kind, start, end = "list", off + item.end(), line_end
        else:
            if start is None:
                kind, start = "prose", off
            end = line_end
    if start is not None:
        yield kind, start, end, ""


def segments(text: str) -> list[Segment]:
    """Every sentence-like piece of chunk text, in order: prose sentences, list-item sentences, table
    rows and fields, plus headings (kind "heading"). Table separator and header rows and fenced code
    are left out."""
    out: list[Segment] = []
    # Code is not prose: blank fenced blocks out (same length, so offsets stay true).
    text_without_code = _CODE_FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    for block_no, lines in enumerate(_blocks(text_without_code)):
        for kind, start, end, display in _units(lines):
            if kind in ("prose", "list"):
                out.extend(_segment(text, start + a, start + b, kind, block_no)
                           for a, b in sentence_spans(text[start:end]))
            else:
                out.append(_segment(text, start, end, kind, block_no, display))
    return [s for s in out if s.text]


def _segment(text: str, start: int, end: int, kind: SegmentKind, block: int, display: str = "") -> Segment:
    trimmed = _trim(text, start, end) or (start, start)
    return Segment(collapse(text[trimmed[0]:trimmed[1]]), trimmed[0], trimmed[1], kind, block, display)
