"""What a heading is, decided in one place: titles for the source loader, sections for the chunker, and
the escaping that keeps rendered text from reading as a heading."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    """A heading line of a document: `start`/`end` cover the whole heading line (setext: both lines)."""

    level: int
    title: str
    start: int
    end: int


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_ATX_EMPTY = re.compile(r"^ {0,3}(#{1,6})[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CAPS_HEADING_MAX = 60


def find_headings(text: str, fmt: str = "md") -> list[Heading]:
    """Headings of a document, in order.

    ATX headings ("## Title") in every format; setext headings (a line underlined by === or ---) in
    Markdown and plain text. Plain text also has "caps headings": a short line without lower-case
    letters (outside parentheses) after a blank line, e.g. "1. PURPOSE" — level 1 if it is the file's
    first line, else level 2. Lines inside fenced code blocks (Markdown) are never headings.
    """
    lines = text.split("\n")
    offsets: list[int] = []
    pos = 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1

    headings: list[Heading] = []
    fence: str | None = None
    setext = fmt in ("md", "txt")
    first_content = next((i for i, line in enumerate(lines) if line.strip()), -1)
    i = 0
    while i < len(lines):
        line = lines[i]
        fence_match = _FENCE.match(line) if fmt != "txt" else None
        if fence is not None:
            closing = fence_match.group(1) if fence_match else ""
            if closing[:1] == fence[0] and len(closing) >= len(fence):
                fence = None
            i += 1
            continue
        if fence_match:
            fence = fence_match.group(1)
            i += 1
            continue

        start, end = offsets[i], offsets[i] + len(line)
        atx = _ATX.match(line)
        if atx and atx.group(2).strip():
            headings.append(Heading(len(atx.group(1)), _clean_heading(atx.group(2)), start, end))
            i += 1
            continue
        if _ATX_EMPTY.match(line):
            i += 1
            continue
        after_break = i == 0 or not lines[i - 1].strip() or bool(_RULE.match(lines[i - 1]))
        if (
            setext
            and after_break
            and line.strip()
            and i + 1 < len(lines)
            and _RULE.match(lines[i + 1])
            and not _is_list_or_table_line(line)
        ):
            marker = lines[i + 1].strip()
            level = 1 if marker[0] == "=" else 2
            if i > 0 and _RULE.match(lines[i - 1]):
                start = offsets[i - 1]  # a rule above the title belongs to the heading, not the text before
            headings.append(Heading(level, _clean_heading(line), start, offsets[i + 1] + len(lines[i + 1])))
            i += 2
            continue
        if fmt == "txt" and after_break and _is_caps_heading(line):
            headings.append(Heading(1 if i == first_content else 2, _clean_heading(line), start, end))
        i += 1
    return headings


def _clean_heading(title: str) -> str:
    return " ".join(title.strip().split())


def _is_list_or_table_line(line: str) -> bool:
    stripped = line.lstrip()
    return stripped.startswith(("|", "- ", "* ", "+ ", ">"))


_RULE = re.compile(r"^ {0,3}(={3,}|-{3,})[ \t]*$")
_PARENTHESISED = re.compile(r"\([^)]*\)")


def _is_caps_heading(line: str) -> bool:
    if not line.strip() or len(line) > _CAPS_HEADING_MAX or line != line.lstrip():
        return False
    if _is_list_or_table_line(line) or _RULE.match(line):
        return False
    outside = _PARENTHESISED.sub("", line)
    letters = [c for c in outside if c.isalpha()]
    return len(letters) >= 3 and not any(c.islower() for c in letters)


def first_heading(text: str, fmt: str) -> str:
    headings = find_headings(text, fmt)
    return headings[0].title if headings else ""


def escape_headings(text: str) -> str:
    """Escape a text line that would read as a Markdown heading ("# of orders" -> "\\# of orders")."""
    return _ATX_LIKE.sub(r"\\\1", text)


_ATX_LIKE = re.compile(r"^( {0,3}#{1,6}(?:[ \t]|$))", re.MULTILINE)
