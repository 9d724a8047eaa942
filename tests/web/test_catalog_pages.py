"""The catalog in the browser: filters and search through the page's own form, the product page (owner,
team, SLA status in words, versions, documents, the eval line), and an employee who sees the confidential
and restricted products by their catalog facts alone (their contracts make them discoverable)."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from indexing.releases import ReleaseRegistry
from tests.web.conftest import CONFIDENTIAL, RESTRICTED, Web, screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ANALYST_READS = {"customer.subscription-metrics", "customer.support-knowledge", "finance.revenue-reporting",
                 "operations.fulfilment-ops", "platform.mesh-handbook"}
EMPLOYEE_READS = {"customer.subscription-metrics", "operations.fulfilment-ops", "platform.mesh-handbook"}
EMPLOYEE_DISCOVERS = {RESTRICTED, *CONFIDENTIAL}  # catalog facts only (contracts: discoverableBy: [employee])
STALE = "operations.fulfilment-ops"  # declares its last update (2026-05-29) against a 30-day SLA


def listed(page) -> list[str]:
    rows = page.locator("#catalog-results tbody tr")
    return [rows.nth(i).get_attribute("data-product") or "" for i in range(rows.count())]


def apply(page, **choices: str) -> None:
    """Fill the filter form as a person would and submit it."""
    page.goto("/catalog")
    for label, value in choices.items():
        field = page.get_by_label(label.capitalize(), exact=True)
        if label == "search":
            field.fill(value)
        else:
            field.select_option(value)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()


def no_blocking_axe(page, where: str) -> None:
    results = Axe().run(page)
    blocking = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not blocking, f"{where}:\n{results.generate_report()}"


def test_catalog_filters_and_search(page, web: Web):
    sign_in(page, web, "ana")
    page.goto("/catalog")
    assert set(listed(page)) == ANALYST_READS
    assert "5 of 5 products" in page.locator("#catalog-results caption").inner_text()
    screenshot(page, "catalog")

    apply(page, domain="finance")
    assert listed(page) == ["finance.revenue-reporting"]
    assert "domain=finance" in page.url
    assert page.get_by_label("Domain").input_value() == "finance"  # the form keeps the choice

    apply(page, classification="internal")
    assert set(listed(page)) == {"customer.subscription-metrics", "operations.fulfilment-ops"}
    assert {page.locator(f"tr[data-product='{p}'] .badge.internal").inner_text() for p in listed(page)} == {"internal"}

    apply(page, freshness="stale")
    assert listed(page) == [STALE]
    status = page.locator(f"tr[data-product='{STALE}']").inner_text()
    assert "stale: last updated 2026-05-29 against a 30-day SLA" in status and "days ago" in status

    apply(page, owner="h.lindqvist")  # Hannah Lindqvist (Finance Analytics)
    assert listed(page) == ["finance.revenue-reporting"]

    apply(page, tag="runbooks")
    assert set(listed(page)) == {"customer.support-knowledge", "operations.fulfilment-ops"}

    apply(page, search="net revenue margin")  # the API's catalog search: best match first
    assert listed(page)[0] == "finance.revenue-reporting"
    assert "best match first" in page.locator("#catalog-results caption").inner_text()

    apply(page, domain="platform", classification="confidential")
    assert listed(page) == []
    assert "No product you may read or discover matches these filters" in page.locator("#catalog-empty").inner_text()
    page.get_by_role("link", name="Show every product").click()
    assert set(listed(page)) == ANALYST_READS
    no_blocking_axe(page, "catalog")


def test_catalog_refuses_an_unknown_classification_with_what_is_allowed(page, web: Web):
    response = page.goto("/catalog?classification=secret")
    assert response is not None and response.status == 422
    assert "'public', 'internal', 'confidential' or 'restricted'" in page.get_by_role("alert").inner_text()


def test_product_page(page, web: Web):
    sign_in(page, web, "ana")
    page.goto("/catalog")
    page.get_by_role("link", name="Revenue Reporting").click()
    page.wait_for_url("**/catalog/finance.revenue-reporting")
    main = page.locator("main")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Revenue Reporting")
    text = main.inner_text()
    for fact in ("Finance's definitions and procedures", "Source of truth for any revenue figure",
                 "provisional until the close", "finance-analyst, analyst", "confidential"):
        assert fact in text, fact
    assert "Hannah Lindqvist" in page.locator("#product-owner").inner_text()
    team = page.locator("#product-team").inner_text()
    assert "Robert Asante" in team and "controller" in team
    status = page.locator("#product-status").inner_text()
    assert status.startswith("fresh") and "within its 7-day SLA" in status
    current = ReleaseRegistry(web.data_dir).current_id()
    versions = page.locator("#product-versions tbody tr")
    assert versions.count() == 1 and current in versions.inner_text() and "current" in versions.inner_text()
    documents = page.locator("#product-documents a")
    hrefs = [documents.nth(i).get_attribute("href") for i in range(documents.count())]
    assert "/documents/finance.revenue-reporting/metrics/net-revenue.md" in hrefs
    none = page.locator("#product-evals-none").inner_text()
    assert "No eval results are recorded for the current release" in none and "meshrag eval" in none
    no_blocking_axe(page, "product")

    page.goto(f"/catalog/{STALE}")
    status = page.locator("#product-status").inner_text()
    assert "stale: last updated 2026-05-29 against a 30-day SLA" in status and "declared in the contract" in status


def test_an_unreadable_product_is_the_page_of_a_missing_one(page, web: Web):
    sign_in(page, web, "ana")
    missing = page.goto("/catalog/nobody.no-such-product")
    assert missing is not None and missing.status == 404
    expected = page.get_by_role("alert").inner_text().replace("nobody.no-such-product", "<id>")
    refused = page.goto(f"/catalog/{RESTRICTED}")
    assert refused is not None and refused.status == 404
    assert page.get_by_role("alert").inner_text().replace(RESTRICTED, "<id>") == expected
    assert RESTRICTED not in expected.replace("<id>", "")


def test_an_employee_discovers_confidential_and_restricted_products_by_their_facts_alone(page, web: Web):
    # Their contracts make them discoverable to employees: the catalog lists them with their facts (id, title,
    # purpose, owner, team, contact, classification, freshness) and whom to ask; never tags, other team
    # members, usage, documents or versions.
    not_facts = ["net-revenue", "pay-bands", "Robert Asante", "Ruth Castellanos", "Source of truth for any revenue",
                 "do not forward or quote", "glossary.csv", "net-revenue.md", "/documents/finance.", "/documents/people."]
    sign_in(page, web, "emp")
    page.goto("/catalog")
    assert set(listed(page)) == EMPLOYEE_READS | EMPLOYEE_DISCOVERS
    assert "of 6 products" in page.locator("#catalog-results caption").inner_text()
    for pid in EMPLOYEE_DISCOVERS:
        row = page.locator(f"tr[data-product='{pid}']").inner_text()
        assert "discoverable only" in row and "you cannot read its content; ask" in row
        assert page.locator(f"tr[data-product='{pid}'] .pages-tags").count() == 0
    assert "Hannah Lindqvist (h.lindqvist) of Finance Analytics" in page.locator(
        "tr[data-product='finance.revenue-reporting']").inner_text()
    domains = page.get_by_label("Domain").locator("option")
    assert {domains.nth(i).get_attribute("value") for i in range(domains.count())} == {
        "", "customer", "finance", "operations", "people", "platform"}
    tags = page.get_by_label("Tag").locator("option")
    assert not {tags.nth(i).get_attribute("value") for i in range(tags.count())} & {"net-revenue", "pay-bands"}
    screenshot(page, "catalog-discoverable")
    seen = {"/catalog": page.content()}
    for path, expected in (("/catalog?classification=confidential", set(CONFIDENTIAL)),
                           ("/catalog?classification=restricted", {RESTRICTED}),
                           ("/catalog?domain=finance", {"finance.revenue-reporting"}),
                           ("/catalog?owner=h.lindqvist", {"finance.revenue-reporting"}),
                           ("/catalog?tag=net-revenue", set()),  # a tag is not a fact
                           ("/catalog?q=quote+forward", set()),  # limitations text is not a fact
                           ("/catalog?q=revenue+salary+refund", None)):
        response = page.goto(path)
        assert response is not None and response.status == 200
        if expected is not None:
            assert set(listed(page)) == expected, path
        seen[path] = page.content()
    assert "No product you may read or discover matches" in seen["/catalog?tag=net-revenue"]
    for pid in (RESTRICTED, *CONFIDENTIAL):
        response = page.goto(f"/catalog/{pid}")
        assert response is not None and response.status == 200
        assert page.locator("#product-discover-only").is_visible()
        assert page.locator("#product-documents, #product-versions, #product-team, #product-evals").count() == 0
        seen[f"/catalog/{pid}"] = page.content()
    page.goto("/catalog/finance.revenue-reporting")
    assert "Hannah Lindqvist" in page.locator("#product-owner").inner_text()
    assert page.locator("#product-status").inner_text().startswith("fresh")
    no_blocking_axe(page, "product (discoverable only)")
    for path, html in seen.items():
        leaked = [m for m in not_facts if m in html]
        assert not leaked, (path, leaked)
