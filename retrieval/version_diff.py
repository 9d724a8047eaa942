"""What differs between two versions of a product's documents: `sentence_units` splits chunks into
sentences (list items and, when asked, table rows) in document order, and `document_changes` diffs each
document both versions hold, sentence by sentence (difflib), keeping the chunk each sentence came from so
either side can be cited. Used by the version stage (retrieval/version_questions.py)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from knowledge.cards import CATALOG_DOCUMENT

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'*(])")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s+")


def _rows(lines: Sequence[str]) -> list[str]:
    """The data rows of a Markdown table as "cell: cell; cell" (header and rule rows left out)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.strip().startswith("|")]
    return [": ".join((r[0], "; ".join(r[1:]))) if len(r) > 1 else r[0] for r in rows[2:]
            if not all(set(c) <= set("-: ") for c in r)]


def sentence_units(chunks: Sequence[Any], tables: bool = False) -> list[tuple[str, Any]]:
    """(normalised sentence, first chunk holding it) in document order; code and headings left out, and
    tables unless `tables` (then each data row is a unit)."""
    out: dict[str, Any] = {}
    for chunk in sorted(chunks, key=lambda c: (c.start, c.end)):
        fenced = False
        for paragraph in re.split(r"\n\s*\n", chunk.text):
            lines = paragraph.strip().splitlines()
            if any(line.strip().startswith("```") for line in lines):
                fenced = not fenced if sum(line.strip().startswith("```") for line in lines) % 2 else fenced
                continue
            if tables and not fenced and lines and lines[0].lstrip().startswith("|"):
                for row in _rows(lines):
                    out.setdefault(" ".join(row.split()), chunk)
                continue
            if fenced or not lines or lines[0].lstrip().startswith(("|", "#", "--")):
                continue
            items: list[str] = []
            for line in lines:  # a list item starts a unit of its own; other lines continue the last one
                bare = _LIST_ITEM.sub("", line.strip())
                if items and bare == line.strip():
                    items[-1] += " " + bare
                else:
                    items.append(bare)
            for sentence in (s for item in items for s in _SENTENCE.split(item)):
                key = " ".join(sentence.split())
                if len(key) > 20 and key not in out:
                    out[key] = chunk
    return list(out.items())


@dataclass(frozen=True)
class Change:
    document: str
    old: tuple[tuple[str, Any], ...]  # (sentence, chunk) of the older version
    new: tuple[tuple[str, Any], ...]


def document_changes(old_chunks: Sequence[Any], new_chunks: Sequence[Any], tables: bool = False) -> list[Change]:
    """Sentences (and with `tables`, table rows) that differ between two versions of each document both
    versions hold, in document order."""
    docs_old: dict[str, list[Any]] = {}
    docs_new: dict[str, list[Any]] = {}
    for c in old_chunks:
        docs_old.setdefault(c.document, []).append(c)
    for c in new_chunks:
        docs_new.setdefault(c.document, []).append(c)
    changes = []
    for doc in sorted(set(docs_old) & set(docs_new) - {CATALOG_DOCUMENT}):
        a, b = sentence_units(docs_old[doc], tables), sentence_units(docs_new[doc], tables)
        matcher = difflib.SequenceMatcher(None, [s for s, _ in a], [s for s, _ in b], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op != "equal":
                changes.append(Change(doc, tuple(a[i1:i2]), tuple(b[j1:j2])))
    return changes
