"""JSONL and CSV sources rendered as one section per record: "## <name>", "key: value" metadata lines,
then prose paragraphs. A pure function of the file's bytes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from indexing.headings import escape_headings
from indexing.source_text import decode_text, normalise_text
from knowledge.errors import SourceError

# Record fields that name a record (JSONL/CSV), in order of preference.
_HEADING_FIELDS = ("question", "title", "term", "name", "id")
# Record fields that are prose: always rendered as their own paragraph, never as "key: value".
_PROSE_FIELDS = frozenset(
    {"answer", "text", "definition", "body", "content", "description", "summary", "details", "notes"}
)
# CSV: the column that names a row, if present; otherwise the first column.
_CSV_HEADING_COLUMNS = ("term", "name", "title", "question")
# Short scalar values are metadata lines ("key: value"); longer ones become paragraphs.
_METADATA_MAX_CHARS = 120


def render_jsonl(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(decode_text(raw, path))

    def records() -> Iterator[tuple[int, Mapping[str, Any]]]:
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(
                    f"{path}: line {lineno} is not valid JSON ({exc.msg}); fix or remove that line"
                ) from exc
            if not isinstance(record, dict):
                raise SourceError(f"{path}: line {lineno} is not a JSON object; each line must be one record")
            yield lineno, record

    sections = [_render_record(record, f"record {lineno}") for lineno, record in records()]
    return "\n\n".join(sections) + ("\n" if sections else ""), ""


def render_csv(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(decode_text(raw, path))
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise SourceError(f"{path}: not valid CSV ({exc}); check quoting and the delimiter (comma)") from exc
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return "", ""
    header = [cell.strip() or f"column_{i + 1}" for i, cell in enumerate(rows[0])]
    lowered = [h.lower() for h in header]
    heading_column = next((lowered.index(f) for f in _CSV_HEADING_COLUMNS if f in lowered), 0)
    sections: list[str] = []
    for rowno, row in enumerate(rows[1:], start=2):
        keys = header + [f"column_{i + 1}" for i in range(len(header), len(row))]
        record = {key: value.strip() for key, value in zip(keys, row)}
        heading_key = keys[heading_column] if heading_column < len(row) else None
        sections.append(_render_record(record, f"row {rowno}", heading_key=heading_key))
    return "\n\n".join(sections) + ("\n" if sections else ""), ""


def _render_record(record: Mapping[str, Any], fallback: str, heading_key: str | None = None) -> str:
    """One record as a section: "## <name>", then "key: value" metadata lines, then prose paragraphs."""
    if heading_key is None:
        lowered = {str(k).lower(): k for k in record}
        heading_key = next(
            (lowered[f] for f in _HEADING_FIELDS if f in lowered and _scalar_text(record[lowered[f]])), None
        )
    heading = " ".join(_scalar_text(record.get(heading_key)).split()) if heading_key is not None else ""
    metadata: list[str] = []
    prose: list[str] = []
    for key, value in record.items():
        if key == heading_key:
            continue
        rendered = _value_text(value)
        if not rendered:
            continue
        single_line = " ".join(rendered.split())
        if str(key).lower() in _PROSE_FIELDS or "\n" in rendered or len(single_line) > _METADATA_MAX_CHARS:
            prose.append(escape_headings(rendered.strip()))
        else:
            metadata.append(f"{key}: {single_line}")
    parts = ["## " + (heading or fallback)]
    if metadata:
        parts.append("\n".join(metadata))
    parts.extend(prose)
    return "\n\n".join(parts)


def _scalar_text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            return ", ".join(s for s in (_scalar_text(v) for v in value) if s)
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return _scalar_text(value)
