"""GET /documents/{product_id}/{document}: a document as the index holds it, with a cited span marked.

What is shown is the document's *indexed* text in one release, rebuilt from its chunks, never the source
file: chunk texts are redacted where the product's PII policy says so (`<PERSON>`, `<EMAIL_ADDRESS>`, …),
while the sources keep the names and addresses. A chunk's span (`start`, `end`) is in the document's
normalised, unredacted text, so a redacted chunk's text is not `end - start` long; the rebuild therefore
keeps, for every place it emits, the span it came from, and maps a cited span onto what it emitted:

    document text = for each chunk in span order: the section headings it opens (from its heading path),
                    then the part of its text not already emitted (overlapping chunks share a sentence or two)

A chunk's own span always maps exactly (its emitted text begins and ends where its span does), so a
citation, which cites one chunk, highlights exactly the cited text; any other span is widened to the
nearest chunk edges inside redacted text.

Access is the API's: a product the visitor may not read is answered exactly like a missing one.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from api.deps import ServiceDep
from api.web.deps import VisitorDep
from api.web.render import WebRoute, page
from api.web.session import Visitor
from indexing.releases import CURRENT
from indexing.types import Chunk
from knowledge.contracts import CONTRACT_FILE, DESCRIPTOR_FILE
from knowledge.errors import ConfigError, ProductNotFound, ReleaseNotFound
from retrieval.access import readable_entries
from retrieval.service import MeshService

router = APIRouter(route_class=WebRoute, include_in_schema=False)

RELEASE_REF = re.compile(r"^rel-[0-9a-f]{1,64}$")
MAX_LISTED_DOCUMENTS = 20  # in the "no such document" message


@dataclass(frozen=True)
class Run:
    """One piece of the rebuilt document: text, or a section heading (`level` 1 for the outermost);
    `marked` inside the highlighted span, `first` on the marked run that opens it."""

    kind: str  # "text" | "heading"
    text: str
    marked: bool = False
    first: bool = False
    level: int = 0


@dataclass(frozen=True)
class _Emitted:
    """Text emitted for the source span [start, end); `exact` when it is that span verbatim."""

    start: int
    end: int
    out_start: int
    out_end: int

    @property
    def exact(self) -> bool:
        return self.end - self.start == self.out_end - self.out_start


class IndexedDocument:
    """A document's indexed text rebuilt from its chunks (see the module docstring)."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            raise ValueError("a document needs at least one chunk")
        self._runs: list[tuple[str, str, int, int]] = []  # (kind, text, out offset, heading level)
        self._emitted: list[_Emitted] = []
        self._anchors: dict[int, tuple[int, int]] = {}  # chunk edge → (out offset as a start, as an end)
        self._out = 0
        self.end = max(c.end for c in chunks)
        self._build(sorted(chunks, key=lambda c: (c.start, c.end)))

    # ----------------------------------------------------------------------------------- building
    def _build(self, chunks: list[Chunk]) -> None:
        cursor = 0  # source offset up to which text was emitted
        region = ""  # text emitted since the last break: where an overlapping chunk's shared text is
        headings: tuple[str, ...] = ()
        for chunk in chunks:
            if self._emitted and chunk.end <= cursor:
                continue  # inside text already emitted (the chunker does not make these)
            if chunk.start >= cursor:
                if chunk.start > cursor:  # skipped source text: blank lines and heading lines
                    opened = _opened(headings, chunk.heading_path)
                    if self._emitted:
                        self._emit("break", "\n\n")
                    depth = len(chunk.heading_path) - len(opened)
                    for level, title in enumerate(opened, start=depth + 1):
                        self._emit("heading", title, level)
                        self._emit("break", "\n\n")
                    region = ""
                at = self._emit("text", chunk.text)
                self._record(chunk.start, chunk.end, at)
                region += chunk.text
            else:  # overlaps what was emitted: emit only the rest, after the text the two share
                shared = _overlap(region, chunk.text, cursor - chunk.start)
                self._anchor(chunk.start, self._out - shared, first=True)
                rest = chunk.text[shared:]
                at = self._emit("text", rest)
                self._record(cursor, chunk.end, at)
                region += rest
            headings = chunk.heading_path
            cursor = max(cursor, chunk.end)

    def _emit(self, kind: str, text: str, level: int = 0) -> int:
        at = self._out
        if text:
            self._runs.append((kind, text, at, level))
            self._out += len(text)
        return at

    def _record(self, start: int, end: int, out_start: int) -> None:
        self._emitted.append(_Emitted(start, end, out_start, self._out))
        self._anchor(start, out_start, first=True)
        self._anchor(end, self._out, first=False)

    def _anchor(self, offset: int, out: int, *, first: bool) -> None:
        as_start, as_end = self._anchors.get(offset, (out, out))
        self._anchors[offset] = (out, as_end) if first else (as_start, out)

    # ------------------------------------------------------------------------------------ mapping
    def locate(self, start: int, end: int) -> tuple[int, int]:
        """The emitted range of the source span [start, end): exact at chunk edges and in unredacted
        text, widened to the enclosing emitted piece inside redacted text. Raises ConfigError for a span
        that is not inside the indexed text or covers none of it (only headings)."""
        if not 0 <= start < end <= self.end:
            raise ConfigError(f"the span {start}–{end} is not inside this document's indexed text (characters "
                              f"0–{self.end}); open the document without a span, or follow a citation link")
        out_start, out_end = self._map(start, first=True), self._map(end, first=False)
        if out_end <= out_start:
            raise ConfigError(f"the span {start}–{end} covers no indexed text of this document (only headings "
                              "or blank lines); follow a citation link to see what it cites")
        return out_start, out_end

    def _map(self, offset: int, *, first: bool) -> int:
        if offset in self._anchors:
            return self._anchors[offset][0 if first else 1]
        i = bisect.bisect_right([e.start for e in self._emitted], offset) - 1
        if i < 0:
            return self._emitted[0].out_start
        piece = self._emitted[i]
        if offset >= piece.end:  # in skipped source text: the next text as a start, the previous as an end
            return self._emitted[i + 1].out_start if first and i + 1 < len(self._emitted) else piece.out_end
        if piece.exact:
            return piece.out_start + (offset - piece.start)
        return piece.out_start if first else piece.out_end

    # ----------------------------------------------------------------------------------- rendering
    def render(self, span: tuple[int, int] | None = None) -> list[Run]:
        """The runs, split at the span's edges, neighbouring text merged (one `<mark>` per contiguous
        stretch of the span)."""
        out: list[Run] = []
        for kind, text, at, level in self._runs:
            if kind == "heading":
                out.append(Run("heading", text, level=level))
                continue
            edges = {0, len(text)} | ({min(max(e - at, 0), len(text)) for e in span} if span else set())
            cuts = sorted(edges)
            for a, b in pairwise(cuts):
                marked = span is not None and span[0] <= at + a and at + b <= span[1]
                if out and out[-1].kind == "text" and out[-1].marked == marked:
                    out[-1] = Run("text", out[-1].text + text[a:b], marked)
                else:
                    out.append(Run("text", text[a:b], marked))
        for i, run in enumerate(out):
            if run.marked:
                out[i] = Run("text", run.text, marked=True, first=True)
                break
        return out


def _opened(before: tuple[str, ...], after: tuple[str, ...]) -> tuple[str, ...]:
    """The headings of `after` that `before` did not have open (after their common prefix)."""
    common = 0
    while common < min(len(before), len(after)) and before[common] == after[common]:
        common += 1
    return after[common:]


def _overlap(emitted: str, text: str, expected: int) -> int:
    """How many leading characters of `text` end `emitted`: `expected` (the overlap's length in the
    source) when the two agree there, else the border of the two closest to it (redaction placeholders
    change the length a little)."""
    if expected <= 0:
        return 0
    if expected <= len(emitted) and text[:expected] == emitted[-expected:]:
        return expected
    probe = text[: min(len(text), len(emitted))]
    if not probe:
        return 0
    joined = probe + "\x00" + emitted[-len(probe):]
    border = [0] * len(joined)  # the prefix function (Knuth–Morris–Pratt): every border of probe / emitted
    for i in range(1, len(joined)):
        k = border[i - 1]
        while k and joined[i] != joined[k]:
            k = border[k - 1]
        border[i] = k + 1 if joined[i] == joined[k] else k
    candidates, k = [], border[-1]
    while k:
        candidates.append(k)
        k = border[k - 1]
    return min(candidates, key=lambda c: (abs(c - expected), -c)) if candidates else 0


def document_href(product_id: str, document: str, release: str | None = None,
                  start: int | None = None, end: int | None = None) -> str:
    """The document view's URL with the span to highlight (ask.js builds it the same way)."""
    href = f"/documents/{quote(product_id, safe='')}/{quote(document, safe='/')}"
    query = {k: v for k, v in (("release", release), ("start", start), ("end", end)) if v is not None}
    if query:
        href += "?" + urlencode(query)
    return href + ("#cited" if start is not None else "")


@router.get("/documents/{product_id}/{document:path}")
async def document_view(
    request: Request,
    visitor: VisitorDep,
    service: ServiceDep,
    product_id: str,
    document: str,
    release: Annotated[str, Query(max_length=80)] = CURRENT,
    start: Annotated[int | None, Query(ge=0)] = None,
    end: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    context = service.context
    if document in (CONTRACT_FILE, DESCRIPTOR_FILE):
        return contract_view(request, visitor, service, product_id, document, start, end)
    product = context.catalog.get(product_id, visitor.principal)  # unreadable = missing, as in the API
    if release != CURRENT and not RELEASE_REF.match(release):
        raise ReleaseNotFound(f"no release {release!r}; release ids look like rel-1a2b3c… "
                              "(see /releases), or leave it out for the current release")
    served = context.release(release)
    entry = readable_entries(served, context.catalog, visitor.principal, products=[product_id])[product_id]
    if (start is None) != (end is None):
        raise ConfigError("give both start and end of the span to highlight, or neither")
    chunks = await run_in_threadpool(context.chunks_of, entry.chunk_version)
    mine = [c for c in chunks if c.document == document]
    if not mine:
        known = sorted({c.document for c in chunks})
        listed = ", ".join(known[:MAX_LISTED_DOCUMENTS]) + (", …" if len(known) > MAX_LISTED_DOCUMENTS else "")
        raise ProductNotFound(f"no document {document!r} in {product_id} (release {served.id}); its documents: "
                              f"{listed}")
    indexed = IndexedDocument(mine)
    span = indexed.locate(start, end) if start is not None and end is not None else None
    headings = next((c.heading_path for c in sorted(mine, key=lambda c: c.start) if c.heading_path), ())
    return page(
        request, "document.html", visitor, nav="ask", product=product, document=document,
        title=headings[0] if headings else document, release=served, runs=indexed.render(span),
        span=(start, end) if span is not None else None,
        redacted=sum(c.pii_redacted for c in mine), chunks=len(mine),
    )


def contract_view(request: Request, visitor: Visitor, service: MeshService, product_id: str, document: str,
                  start: int | None, end: int | None) -> Response:
    """A product's descriptor or contract file with a cited fact's span marked (what discovery answers cite,
    retrieval/discovery/). Shown to readers of the product; a visitor who may only discover it is sent
    to its catalog page (its facts, nothing more); anyone else gets the missing-product answer."""
    catalog = service.context.catalog
    known = catalog.products.get(product_id)
    if known is not None and not visitor.principal.can_read(known) and visitor.principal.can_discover(known):
        return RedirectResponse(f"/catalog/{quote(product_id, safe='')}", status_code=303)
    product = catalog.get(product_id, visitor.principal)
    text = (product.contract_path if document == CONTRACT_FILE else product.descriptor_path).read_text("utf-8")
    if (start is None) != (end is None):
        raise ConfigError("give both start and end of the span to highlight, or neither")
    span = (start, end) if start is not None and end is not None else None
    if span is not None and not 0 <= span[0] < span[1] <= len(text):
        raise ConfigError(f"the span {start}–{end} is not inside {document} (characters 0–{len(text)}); open the "
                          "file without a span, or follow a citation link")
    runs = ([Run("text", text[:span[0]]), Run("text", text[span[0]:span[1]], marked=True, first=True),
             Run("text", text[span[1]:])] if span else [Run("text", text)])
    return page(request, "document.html", visitor, nav="ask", product=product, document=document,
                title=f"{product.title}: {document}", release=None, runs=[r for r in runs if r.text],
                span=span, redacted=0, chunks=0, contract=True)
