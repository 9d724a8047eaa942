"""A document's sections as the chunker sees them: heading paths, top-level groups, and the heading
path a span of text falls under (rule 1 of `indexing.chunking`)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from indexing.headings import Heading
from indexing.types import PiiFinding, SourceDocument


@dataclass(frozen=True)
class Section:
    """A heading's section of a document (the preamble before the first heading has an empty path)."""

    path: tuple[str, ...]
    start: int  # of the heading line (or of the document for the preamble)
    body_start: int
    end: int
    top: bool  # starts a top-level group


def document_sections(text: str, headings: Sequence[Heading]) -> list[Section]:
    """Sections in document order, each with its heading path and whether it starts a top-level group."""
    if not headings:
        return [Section((), 0, 0, len(text), True)] if text.strip() else []
    levels = [h.level for h in headings]
    top = min(levels)
    title_like = levels.count(top) == 1 and headings[0].level == top and not text[: headings[0].start].strip()
    if title_like and len(headings) > 1:
        top = min(levels[1:])

    sections: list[Section] = []
    if text[: headings[0].start].strip():
        sections.append(Section((), 0, 0, headings[0].start, True))
    stack: list[Heading] = []
    for index, heading in enumerate(headings):
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        end = headings[index + 1].start if index + 1 < len(headings) else len(text)
        sections.append(
            Section(tuple(h.title for h in stack), heading.start, heading.end, end, heading.level <= top)
        )
    return sections


def section_groups(sections: Sequence[Section]) -> list[list[Section]]:
    groups: list[list[Section]] = []
    for section in sections:
        if section.top or not groups:
            groups.append([section])
        else:
            groups[-1].append(section)
    return groups


def redact_headings(
    doc: SourceDocument, sections: Sequence[Section], findings: Sequence[PiiFinding]
) -> tuple[SourceDocument, list[Section]]:
    """`doc`'s title and the sections' heading paths with every string a finding covers in the text
    replaced by its placeholder, longest first (the findings cover every occurrence in the text)."""
    found = {doc.text[f.start:f.end]: f"<{f.entity_type}>" for f in findings if f.end > f.start}
    pattern = re.compile("|".join(re.escape(s) for s in sorted(found, key=len, reverse=True)))

    def redact(value: str) -> str:
        return pattern.sub(lambda m: found[m.group(0)], value) if value else value

    return (replace(doc, title=redact(doc.title)),
            [replace(s, path=tuple(redact(p) for p in s.path)) for s in sections])


def heading_path(
    sections: Sequence[Section], section_starts: Sequence[int], start: int, end: int
) -> tuple[str, ...]:
    """The heading path shared by every section that [start, end) touches."""
    first = max(bisect.bisect_right(section_starts, start) - 1, 0)
    last = max(bisect.bisect_left(section_starts, end) - 1, first)
    paths = [sections[i].path for i in range(first, last + 1)]
    common = paths[0]
    for path in paths[1:]:
        n = 0
        while n < min(len(common), len(path)) and common[n] == path[n]:
            n += 1
        common = common[:n]
    return common
