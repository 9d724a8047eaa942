"""Load one source file of a product into a normalised `SourceDocument`.

Markdown and plain text keep the file's own text (only NFC, "\\n" line endings and no NUL bytes), so a
chunk's span reads the same text from the file. HTML, PDF, JSONL and CSV are rendered into readable text
with Markdown-style headings ("# ", "## "); the rendering is a pure function of the file's bytes.
`find_headings` is the one place that decides what a heading is, for titles here and sections in the
chunker.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexing.types import SourceDocument
from knowledge.errors import SourceError

NAME = "source-loader"
# Bump when any format's rendering changes: the text (and so every chunk id) of those files changes.
VERSION = "1"

FORMATS: Mapping[str, str] = {
    ".md": "md",
    ".markdown": "md",
    ".txt": "txt",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
    ".csv": "csv",
}

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


@dataclass(frozen=True)
class Heading:
    """A heading line of a document: `start`/`end` cover the whole heading line (setext: both lines)."""

    level: int
    title: str
    start: int
    end: int


def load_document(product_id: str, path: Path, doc_id: str) -> SourceDocument:
    """Read `path` and return its normalised text; raise SourceError if it cannot be read or parsed."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(
            f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(sorted(FORMATS))} "
            "or move the file out of the product's source folder"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot be read ({exc.strerror or exc}); check it exists and is readable"
        ) from exc

    render = _RENDERERS[fmt]
    text, title = render(raw, path)
    text = normalise_text(text)
    title = " ".join(normalise_text(title).split())
    return SourceDocument(
        product_id=product_id,
        path=doc_id,
        format=fmt,
        text=text,
        revision=hashlib.sha256(raw).hexdigest(),
        title=title or path.stem,
    )


def normalise_text(text: str) -> str:
    """NFC, "\\n" line endings, no NUL bytes. Nothing else changes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return unicodedata.normalize("NFC", text)


# --------------------------------------------------------------------------------------------- headings

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


def _first_heading(text: str, fmt: str) -> str:
    headings = find_headings(text, fmt)
    return headings[0].title if headings else ""


# --------------------------------------------------------------------------------------------- decoding


def _decode(raw: bytes, path: Path, fallback_encoding: str | None = None) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fallback_encoding:
            try:
                return raw.decode(fallback_encoding)
            except (UnicodeDecodeError, LookupError):
                pass
        raise SourceError(
            f"{path}: not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from exc


# --------------------------------------------------------------------------------------------- renderers


def _render_markdown(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(_decode(raw, path))
    return text, _first_heading(text, "md")


def _render_text(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(_decode(raw, path))
    return text, _first_heading(text, "txt")


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)


def _render_html(raw: bytes, path: Path) -> tuple[str, str]:
    from bs4 import BeautifulSoup  # import here: loading bs4 is work, and only HTML needs it

    declared = _META_CHARSET.search(raw[:4096])
    markup = _decode(raw, path, declared.group(1).decode("ascii") if declared else None)
    try:
        soup = BeautifulSoup(markup, "html.parser")  # stdlib parser: same output whatever is installed
    except Exception as exc:  # bs4 raises assorted parser errors on broken markup
        raise SourceError(
            f"{path}: HTML cannot be parsed ({exc}); fix the markup or convert it to Markdown"
        ) from exc
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(["script", "style", "nav", "noscript", "template", "head", "svg"]):
        tag.decompose()
    root = soup.body or soup
    blocks: list[str] = []
    _html_blocks(root, blocks)
    text = "\n\n".join(blocks) + ("\n" if blocks else "")
    return text, _first_heading(text, "html") or page_title


_BR = "\ue000"  # a private-use character marks <br> until lines are collapsed
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "dd", "details", "dialog", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "ol", "p",
        "pre", "section", "summary", "table", "ul", "caption", "html",
    }
)  # fmt: skip


def _html_blocks(node: Any, out: list[str]) -> None:
    """Append the readable blocks under `node` to `out`: loose inline text between blocks is a paragraph."""
    from bs4 import NavigableString, Tag
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    inline: list[str] = []

    def flush() -> None:
        text = _escape_headings(_collapse_lines("".join(inline)))
        if text:
            out.append(text)
        inline.clear()

    for child in node.children:
        if isinstance(child, (Comment, Declaration, Doctype, ProcessingInstruction)):
            continue
        if isinstance(child, NavigableString):
            inline.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name.lower()
        if name == "br":
            inline.append(_BR)
        elif name in _HTML_HEADINGS:
            flush()
            title = " ".join(child.get_text(" ").split())
            if title:
                out.append("#" * _HTML_HEADINGS[name] + " " + title)
        elif name in ("ul", "ol"):
            flush()
            lines = _html_list_lines(child, depth=0)
            if lines:
                out.append("\n".join(lines))
        elif name == "table":
            flush()
            rows = _html_table_rows(child)
            if rows:
                out.append("\n".join(rows))
        elif name == "pre":
            flush()
            text = child.get_text().strip("\n")
            if text.strip():
                out.append(f"```\n{text}\n```")  # fenced, so a "# comment" in code is no heading
        elif name == "hr":
            flush()
        elif name in _HTML_BLOCKS:
            flush()
            _html_blocks(child, out)
        else:
            inline.append(_inline_text(child))
    flush()


def _inline_text(tag: Any) -> str:
    from bs4 import NavigableString, Tag

    parts: list[str] = []
    for child in tag.descendants:
        if isinstance(child, Tag) and child.name.lower() == "br":
            parts.append(_BR)
        elif isinstance(child, NavigableString) and type(child) is NavigableString:
            parts.append(str(child))
    return "".join(parts)


def _escape_headings(text: str) -> str:
    """Escape a text line that would read as a Markdown heading ("# of orders" -> "\\# of orders")."""
    return _ATX_LIKE.sub(r"\\\1", text)


_ATX_LIKE = re.compile(r"^( {0,3}#{1,6}(?:[ \t]|$))", re.MULTILINE)


def _collapse_lines(text: str) -> str:
    """Whitespace in markup collapses to one space; only <br> breaks a line."""
    lines = (" ".join(line.split()) for line in text.split(_BR))
    return "\n".join(line for line in lines if line)


def _html_list_lines(list_tag: Any, depth: int) -> list[str]:
    from bs4 import Tag

    lines: list[str] = []
    for index, item in enumerate(list_tag.find_all("li", recursive=False), start=1):
        nested = [c for c in item.children if isinstance(c, Tag) and c.name.lower() in ("ul", "ol")]
        for sub in nested:
            sub.extract()
        own_blocks: list[str] = []
        _html_blocks(item, own_blocks)
        marker = f"{index}." if list_tag.name.lower() == "ol" else "-"
        own = " ".join(" ".join(block.split()) for block in own_blocks)
        if own:
            lines.append("  " * depth + f"{marker} {own}")
        for sub in nested:
            lines.extend(_html_list_lines(sub, depth + 1))
    return lines


def _html_table_rows(table: Any) -> list[str]:
    rows: list[str] = []
    caption = table.find("caption")
    if caption is not None:
        text = " ".join(caption.get_text(" ").split())
        if text:
            rows.append(text)
    header_done = False
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue  # rows of nested tables are rendered inside their cell text
        cells = tr.find_all(["th", "td"], recursive=False)
        if not cells:
            continue
        values = [" ".join(cell.get_text(" ").split()).replace("|", "\\|") for cell in cells]
        rows.append("| " + " | ".join(values) + " |")
        if not header_done and all(cell.name == "th" for cell in cells):
            rows.append("|" + "|".join("---" for _ in cells) + "|")
        header_done = True
    return rows


def _render_pdf(raw: bytes, path: Path) -> tuple[str, str]:
    from pypdf import PdfReader  # import here: only PDFs need it
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise SourceError(f"{path}: the PDF is encrypted; provide an unencrypted copy")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        meta_title = (reader.metadata.title or "") if reader.metadata else ""
    except SourceError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise SourceError(
            f"{path}: the PDF cannot be parsed ({exc}); re-export it or provide the text as Markdown"
        ) from exc
    text = "\n\n".join(page for page in pages if page)
    if not text.strip():
        raise SourceError(
            f"{path}: the PDF has no extractable text (a scanned image?); add a text layer (OCR) or "
            "provide the text as Markdown"
        )
    return text + "\n", str(meta_title).strip()


def _render_jsonl(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(_decode(raw, path))

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


def _render_csv(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(_decode(raw, path))
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
            prose.append(_escape_headings(rendered.strip()))
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


_RENDERERS: Mapping[str, Callable[[bytes, Path], tuple[str, str]]] = {
    "md": _render_markdown,
    "txt": _render_text,
    "html": _render_html,
    "pdf": _render_pdf,
    "jsonl": _render_jsonl,
    "csv": _render_csv,
}
