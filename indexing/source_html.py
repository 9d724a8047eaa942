"""HTML sources rendered as readable text: Markdown-style headings, lists, pipe tables and fenced
preformatted blocks; scripts, styles and navigation dropped. A pure function of the file's bytes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from indexing.headings import escape_headings, first_heading
from indexing.source_text import decode_text
from knowledge.errors import SourceError

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)


def render_html(raw: bytes, path: Path) -> tuple[str, str]:
    from bs4 import BeautifulSoup  # import here: loading bs4 is work, and only HTML needs it

    declared = _META_CHARSET.search(raw[:4096])
    markup = decode_text(raw, path, declared.group(1).decode("ascii") if declared else None)
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
    return text, first_heading(text, "html") or page_title


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
        text = escape_headings(_collapse_lines("".join(inline)))
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
