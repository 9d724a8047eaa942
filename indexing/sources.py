"""Load one source file of a product into a normalised `SourceDocument`.

Markdown and plain text keep the file's own text (only NFC, "\\n" line endings and no NUL bytes), so a
chunk's span reads the same text from the file. HTML, PDF, JSONL and CSV are rendered into readable text
with Markdown-style headings ("# ", "## "); the rendering is a pure function of the file's bytes.
`headings.find_headings` is the one place that decides what a heading is, for titles here and sections
in the chunker. Markdown, plain text and PDF are read here; HTML in `source_html`, JSONL and CSV in
`source_records`.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from pathlib import Path

from indexing.headings import Heading, find_headings, first_heading
from indexing.source_html import render_html
from indexing.source_records import render_csv, render_jsonl
from indexing.source_text import decode_text, normalise_text
from indexing.types import SourceDocument
from knowledge.errors import SourceError

__all__ = ["FORMATS", "NAME", "VERSION", "Heading", "find_headings", "load_document", "normalise_text"]

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


# --------------------------------------------------------------------------------------------- renderers


def _render_markdown(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(decode_text(raw, path))
    return text, first_heading(text, "md")


def _render_text(raw: bytes, path: Path) -> tuple[str, str]:
    text = normalise_text(decode_text(raw, path))
    return text, first_heading(text, "txt")


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


_RENDERERS: Mapping[str, Callable[[bytes, Path], tuple[str, str]]] = {
    "md": _render_markdown,
    "txt": _render_text,
    "html": render_html,
    "pdf": _render_pdf,
    "jsonl": render_jsonl,
    "csv": render_csv,
}
