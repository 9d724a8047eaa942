"""The document view: a cited passage in its document as the index holds it (PII redacted, never the
source file), the span highlighted exactly; unreadable products answered like missing ones."""

from __future__ import annotations

import html
import re
from collections import defaultdict
from itertools import pairwise

import httpx
import pytest

from api.web.documents import IndexedDocument, document_href
from indexing.types import Chunk
from indexing.versions import VersionStore
from tests.web.conftest import Web, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def documents(web: Web) -> dict[tuple[str, str], list[Chunk]]:
    """Every document of the current release: (product, document) → its chunks."""
    service = web.app.state.service
    release = service.context.release()
    out: dict[tuple[str, str], list[Chunk]] = defaultdict(list)
    for pid, entry in release.products.items():
        for chunk in VersionStore(web.data_dir).read_chunks(entry.chunk_version):
            out[(pid, chunk.document)].append(chunk)
    return out


def test_every_chunk_span_highlights_exactly_its_text(web: Web):
    """A citation cites one chunk: in the rebuilt document its span marks exactly the chunk's (redacted)
    text, for every chunk of the sample mesh, overlapping and redacted ones included."""
    checked = redacted = overlapping = 0
    for (pid, doc), chunks in documents(web).items():
        indexed = IndexedDocument(chunks)
        ordered = sorted(chunks, key=lambda c: c.start)
        overlapping += sum(b.start < a.end for a, b in pairwise(ordered))
        for chunk in chunks:
            runs = indexed.render(indexed.locate(chunk.start, chunk.end))
            assert "".join(r.text for r in runs if r.marked) == chunk.text, (pid, doc, chunk.start)
            assert sum(r.first for r in runs) == 1
            checked += 1
            redacted += chunk.pii_redacted > 0
    assert checked > 500 and redacted > 10 and overlapping > 50  # the hard cases were there


def test_a_redacted_passage_shows_placeholders_never_the_source(page, web: Web):
    (pid, doc), chunk = next(((key, c) for key, chunks in sorted(documents(web).items()) for c in chunks
                              if c.pii_redacted and "<EMAIL_ADDRESS>" in c.text))
    product = web.app.state.service.context.catalog.products[pid]
    (source,) = [p for p in product.documents() if product.document_id(p) == doc]
    raw_emails = set(EMAIL.findall(source.read_text("utf-8")))
    assert raw_emails  # the source holds what the index must not show

    sign_in(page, web, "ana")
    page.goto(document_href(pid, doc, start=chunk.start, end=chunk.end))
    mark = page.locator("mark#cited")
    assert mark.text_content() == chunk.text
    assert "<EMAIL_ADDRESS>" in mark.text_content()
    shown = page.content()
    assert not [e for e in raw_emails if e in shown]
    assert not [e for e in raw_emails if e in page.locator("body").inner_text()]
    box = mark.bounding_box()
    assert box is not None and 0 <= box["y"] < page.viewport_size["height"]  # scrolled to the span


def test_a_citation_link_highlights_the_cited_quote(page, web: Web):
    r = httpx.post(f"{web.url}/v1/ask", json={"question": "Who handled ticket 418207 about the dented kettle?"},
                   headers={"Authorization": f"Bearer {web.keys['ana']}"}, timeout=60)
    citations = r.json()["answer"]["citations"]
    assert citations
    sign_in(page, web, "ana")
    for c in citations:
        page.goto(document_href(c["product_id"], c["document"], c["release_id"], c["start"], c["end"]))
        assert page.locator("mark#cited").text_content() == c["text"]


def test_bad_spans_and_unknown_documents_are_clear_error_pages(web: Web):
    with httpx.Client(base_url=web.url, timeout=60) as client:
        client.post("/signin", data={"api_key": web.keys["ana"]})
        cases = {
            "/documents/platform.mesh-handbook/no-such-file.md": (404, "no document 'no-such-file.md'"),
            "/documents/platform.mesh-handbook/principles.md?start=10&end=9999999": (400, "not inside"),
            "/documents/platform.mesh-handbook/principles.md?start=10": (400, "both start and end"),
            "/documents/platform.mesh-handbook/principles.md?start=9&end=9": (400, "not inside"),
            "/documents/platform.mesh-handbook/principles.md?release=rel-0000": (404, "no release"),
            "/documents/platform.mesh-handbook/principles.md?release=../x": (404, "no release"),
            "/documents/people.compensation-handbook/_catalog": (404, "no product 'people.compensation-handbook'"),
        }
        for path, (status, words) in cases.items():
            r = client.get(path)
            assert r.status_code == status, (path, r.text[:300])
            message = html.unescape(re.search(r'role="alert">(.*?)</p>', r.text, re.DOTALL).group(1))
            assert words in message, (path, message)
        # Without a span the document is shown whole, nothing marked.
        r = client.get("/documents/platform.mesh-handbook/principles.md")
        assert r.status_code == 200 and "<mark" not in r.text
        # A principal holding the restricted product's role reads it.
        client.cookies.clear()
        client.post("/signin", data={"api_key": web.keys["pat"]})
        assert client.get("/documents/people.compensation-handbook/_catalog").status_code == 200
