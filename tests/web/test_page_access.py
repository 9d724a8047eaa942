"""Browser-level leak test: an `employee` key, signed in to the web page, never sees the content of a product its
roles do not read (the confidential support and finance products, the restricted compensation handbook) on
any page: document ids, chunk ids and versions, usage, limitations, tags, or a line of their text. Their
contracts make them discoverable to employees, so the catalog pages show their catalog facts (id, title,
purpose, owner, team, contact, classification, freshness) and nothing else; no other page names them. For a
visitor who may neither read nor discover a product (signed out), its page answers exactly like the page of
a product that does not exist."""

from __future__ import annotations

import pytest

from indexing.releases import ReleaseRegistry
from indexing.versions import VersionStore
from knowledge.catalog import Catalog, product_facts
from knowledge.model import Principal
from knowledge.settings import SAMPLE_MESH
from tests.web.conftest import WEB_PRINCIPALS, Web, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

EMPLOYEE = Principal("emp", frozenset(WEB_PRINCIPALS["emp"]))
# Asked through the page: each is about a product the employee may not read.
QUESTIONS = (
    "how much can a shift supervisor refund without asking anyone?",
    "what are the salary bands for a senior engineer?",
    "what was net revenue in FY2025 and how is it reconciled?",
)


def hidden_markers(web: Web) -> tuple[list[str], list[str], list[str]]:
    """(unreadable product ids, their facts — ids and titles — that only catalog pages may show, every
    other string only those products hold: document ids, chunk ids, versions, usage, limitations, tags that
    are not also facts, and each line of their indexed text that no readable product also has)."""
    catalog = Catalog.load([SAMPLE_MESH])
    release = ReleaseRegistry(web.data_dir).current()
    assert release is not None
    store = VersionStore(web.data_dir)
    hidden = sorted(p for p, product in catalog.products.items() if not EMPLOYEE.can_read(product))
    assert {"people.compensation-handbook", "customer.support-knowledge", "finance.revenue-reporting"} <= set(hidden)
    readable_text = "\n".join(
        c.text for pid, e in release.products.items() if pid not in hidden for c in store.read_chunks(e.chunk_version)
    )
    facts: list[str] = []
    markers: list[str] = []
    for pid in hidden:
        product, entry = catalog.products[pid], release.products[pid]
        assert EMPLOYEE.can_discover(product), pid
        facts += [pid, product.title]
        shown = " ".join(str(v) for v in product_facts(product).values()).lower()
        markers += [entry.chunk_version, entry.embedding_version, product.usage, product.limitations]
        markers += [product.document_id(p) for p in product.documents()]
        markers += [t for t in product.tags if len(t) >= 5 and t.lower() not in shown and t not in readable_text]
        for chunk in store.read_chunks(entry.chunk_version):
            markers.append(chunk.chunk_id)
            markers += [line.strip() for line in chunk.text.splitlines()
                        if len(line.strip()) >= 40 and line.strip() not in readable_text]
    return hidden, facts, [m for m in markers if m]


def test_an_employee_sees_nothing_of_products_it_may_not_read_on_any_page(page, web: Web):
    hidden, facts, markers = hidden_markers(web)
    sign_in(page, web, "emp")
    seen: dict[str, str] = {}

    def visit(path: str, expect: int = 200) -> None:
        response = page.goto(path)
        assert response is not None and response.status == expect, (path, response and response.status)
        seen[path] = page.content()

    for question in QUESTIONS:
        page.goto("/")
        page.get_by_label("Question").fill(question)
        page.get_by_role("button", name="Ask").click()
        page.locator("[data-ask-state=done]").wait_for()
        seen[f"ask: {question}"] = page.content()
    release = ReleaseRegistry(web.data_dir).current()
    assert release is not None
    for path in ("/catalog", "/catalog?classification=confidential", "/catalog?classification=restricted",
                 "/catalog?q=refund+revenue+salary", "/catalog?domain=finance", "/catalog?domain=people",
                 "/releases", f"/releases/{release.id}", f"/releases/diff?a={release.id}&b={release.id}"):
        visit(path)
    catalog = Catalog.load([SAMPLE_MESH])
    for pid in hidden:
        visit(f"/catalog/{pid}")  # discoverable: the facts page
        assert page.locator("#product-discover-only").is_visible()
        assert page.locator("#product-documents, #product-versions, #product-team").count() == 0
        product = catalog.products[pid]
        document = product.document_id(product.documents()[0])
        visit(f"/documents/{pid}/{document}", 404)
    for where, html in seen.items():
        # A product id the visitor typed may be echoed back on its own 404 page; nothing else may appear.
        leaked = [m for m in markers if m in html and not where.startswith(f"/documents/{m}/")]
        assert not leaked, (where, leaked[:5])
        if not where.startswith("/catalog"):  # the facts belong on catalog pages only
            leaked = [f for f in facts if f in html and not where.startswith(f"/documents/{f}/")]
            assert not leaked, (where, leaked[:5])

    # Signed out, the visitor may neither read nor discover those products: their pages are the page of
    # a product that does not exist, byte for byte but for the id the visitor typed.
    page.context.clear_cookies()
    missing = page.goto("/catalog/nobody.no-such-product")
    assert missing is not None and missing.status == 404
    def shown() -> str:  # the page's heading and message (its request id differs from page to page)
        return "\n".join(page.locator("main h1, main .error").all_inner_texts())

    missing_text = shown().replace("nobody.no-such-product", "<id>")
    anonymous = Principal.anonymous()
    for pid in sorted(p for p, product in catalog.products.items() if not anonymous.can_discover(product)):
        response = page.goto(f"/catalog/{pid}")
        assert response is not None and response.status == 404
        assert shown().replace(pid, "<id>") == missing_text
        for m in (*facts, *markers):
            assert m == pid or m not in page.content(), (pid, m)
