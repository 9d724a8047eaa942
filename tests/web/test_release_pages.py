"""Releases in the browser, on a server of their own: a second release built for real (three documents
edited, removed and added in a copy of the sample mesh, indexed with the same MiniLM, not published), eval
results recorded by the real `meshrag eval`, then the release list, one release, the diff of the two, the
product page's versions and eval results, and publish / rollback by a release manager (refused for an
analyst). An employee sees none of the confidential or restricted products' changes."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from typer.testing import CliRunner

from api.app import create_app
from api.auth import create_key
from api.cli.main import app as cli
from api.settings import ApiSettings
from api.web.session import COOKIE
from eval_sets.golden import GOLDEN_DIR
from indexing.pipeline import IndexPipeline
from indexing.release_evals import ReleaseEvalStore
from indexing.releases import ReleaseRegistry
from indexing.settings import IndexSettings
from knowledge.settings import SAMPLE_MESH
from tests.api.conftest import serving
from tests.web.conftest import WEB_PRINCIPALS, Web, screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PUBLIC = "platform.mesh-handbook"  # a document edited
INTERNAL = "customer.subscription-metrics"  # a document removed
CONFIDENTIAL = "finance.revenue-reporting"  # a document added
RESTRICTED = "people.compensation-handbook"  # a document edited
UNCHANGED = ("customer.support-knowledge", "operations.fulfilment-ops")
EDITED_DOC, REMOVED_DOC, ADDED_DOC, HIDDEN_DOC = (
    "onboarding-guide.md", "metrics-faq.md", "runbooks/fx-rates-refresh.md", "leave-policies.md")
# Two bundled golden questions: one about the public product, one about the confidential one.
EVAL_QUESTIONS = ("para-056", "fin-001")


@dataclass
class Releases:
    web: Web
    mesh: Path
    first: str  # current
    second: str  # built from the edited mesh, not published


def _edit_mesh(mesh: Path) -> None:
    docs = {pid: mesh / pid.split(".")[0] / pid.split(".")[1] / "docs" for pid in (PUBLIC, INTERNAL, CONFIDENTIAL,
                                                                                    RESTRICTED)}
    with (docs[PUBLIC] / EDITED_DOC).open("a", encoding="utf-8") as fh:
        fh.write("\n\n## Office hours\n\nThe platform team holds office hours every Thursday afternoon for new "
                 "product owners.\n")
    (docs[INTERNAL] / REMOVED_DOC).unlink()
    (docs[CONFIDENTIAL] / ADDED_DOC).write_text(
        "# FX rates refresh\n\nThe treasury desk refreshes month-end FX rates on business day 2 before the "
        "close consolidates foreign revenue.\n", encoding="utf-8")
    with (docs[RESTRICTED] / HIDDEN_DOC).open("a", encoding="utf-8") as fh:
        fh.write("\n\nParental leave requests are answered within five business days.\n")


def _golden_subset(path: Path) -> Path:
    rows = [json.loads(line) for f in sorted(GOLDEN_DIR.glob("*.jsonl"))
            for line in f.read_text("utf-8").splitlines() if line.strip()]
    chosen = [r for r in rows if r["id"] in EVAL_QUESTIONS]
    assert len(chosen) == len(EVAL_QUESTIONS)
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def releases(sample_index: Path, minilm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    root = tmp_path_factory.mktemp("release-pages")
    mesh, data = root / "mesh", root / "data"
    shutil.copytree(SAMPLE_MESH, mesh)
    shutil.copytree(sample_index, data, ignore=shutil.ignore_patterns("provenance.sqlite*", "index.lock"))
    registry = ReleaseRegistry(data)
    first = registry.current_id()
    assert first is not None
    _edit_mesh(mesh)
    report = IndexPipeline(IndexSettings(data_dir=data, mesh_roots=[mesh]), embedder=minilm).run(publish=False)
    assert report.release_id not in (None, first) and not report.published, report.as_dict()
    assert registry.current_id() == first

    # The real command records the current release's results where the product pages read them.
    result = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "MESHRAG_MESH_ROOTS": json.dumps([str(mesh)])}).invoke(
        cli, ["eval", str(_golden_subset(root / "release-pages-golden.jsonl")), "--no-answer-metrics", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "results recorded for" in result.output
    assert ReleaseEvalStore(data).get(first) is not None

    keys_file = root / "api-keys.json"
    keys = {name: create_key(keys_file, name, roles).key for name, roles in WEB_PRINCIPALS.items()}
    app = create_app(ApiSettings(data_dir=data, mesh_roots=[mesh], api_keys_file=keys_file, rate_limit=False))
    with serving(app) as url:
        yield Releases(Web(url=url, app=app, data_dir=data, keys=keys), mesh, first, report.release_id)


@pytest.fixture
def rpage(browser, releases: Releases):
    context = browser.new_context(base_url=releases.web.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


def _no_blocking_axe(page, where: str) -> None:
    results = Axe().run(page)
    blocking = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not blocking, f"{where}:\n{results.generate_report()}"


def test_release_list_marks_current_and_diffs_two_releases(rpage, releases: Releases):
    page = rpage
    sign_in(page, releases.web, "ana")
    page.goto("/releases")
    assert "newest first" in page.locator("#releases-list caption").inner_text()
    rows = page.locator("#releases-list tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-release") == releases.second  # newest first
    current = page.locator("#releases-list tr.pages-current")
    assert current.get_attribute("data-release") == releases.first and "current" in current.inner_text()
    assert page.get_by_role("button", name="Publish").count() == 0  # analysts get no release-manager forms
    # The form proposes what publishing the newer release would change.
    assert page.get_by_label("From release").input_value() == releases.first
    assert page.get_by_label("To release").input_value() == releases.second
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(re.compile(r"/releases/diff\?"))

    changed = page.locator("#diff-changed tbody tr")
    by_product = {changed.nth(i).get_attribute("data-product"): changed.nth(i).inner_text()
                  for i in range(changed.count())}
    assert set(by_product) == {PUBLIC, INTERNAL, CONFIDENTIAL}  # the restricted product is not the analyst's
    assert "1 document changed" in by_product[PUBLIC] and EDITED_DOC in by_product[PUBLIC]
    assert "1 document removed" in by_product[INTERNAL] and REMOVED_DOC in by_product[INTERNAL]
    assert "1 document added" in by_product[CONFIDENTIAL] and ADDED_DOC in by_product[CONFIDENTIAL]
    assert "→" in by_product[PUBLIC]  # new chunk and embedding versions
    assert set(page.locator("#diff-unchanged").inner_text().split()) >= set(UNCHANGED)
    assert "3 changed" in page.locator("#diff-summary").inner_text()
    html = page.content()
    assert RESTRICTED not in html and HIDDEN_DOC not in html
    _no_blocking_axe(page, "release diff")
    screenshot(page, "releases-diff")

    page.goto(f"/releases/{releases.second}")
    products = page.locator("#release-products tbody tr")
    assert {products.nth(i).get_attribute("data-product") for i in range(products.count())} == {
        PUBLIC, INTERNAL, CONFIDENTIAL, *UNCHANGED}
    assert "not served now" in page.locator("main").inner_text()


def test_unknown_release_is_the_apis_404(rpage, releases: Releases):
    page = rpage
    sign_in(page, releases.web, "ana")
    for path in ("/releases/rel-0000000000000000", f"/releases/diff?a={releases.first}&b=rel-0000000000000000"):
        response = page.goto(path)
        assert response is not None and response.status == 404
        assert "no release 'rel-0000000000000000'" in page.get_by_role("alert").inner_text()


def test_product_page_shows_versions_what_changed_and_eval_results(rpage, releases: Releases):
    page = rpage
    sign_in(page, releases.web, "ana")
    page.goto(f"/catalog/{CONFIDENTIAL}")
    versions = page.locator("#product-versions tbody tr")
    assert versions.count() == 2
    assert releases.second in versions.nth(0).inner_text() and ADDED_DOC in versions.nth(0).inner_text()
    assert "1 document added" in versions.nth(0).inner_text()
    assert "current" in versions.nth(1).inner_text() and "first release" in versions.nth(1).inner_text()
    # The document added since the current release is listed as not served yet.
    added = page.locator("#product-documents li", has_text=ADDED_DOC)
    assert "not in the current release yet" in added.inner_text() and added.get_by_role("link").count() == 0
    served = page.locator("#product-documents li", has_text="metrics/net-revenue.md").get_by_role("link")
    assert served.get_attribute("href") == f"/documents/{CONFIDENTIAL}/metrics/net-revenue.md"

    evals = page.locator("#product-evals")
    text = evals.inner_text()
    assert releases.first in text and "1 golden question" in text and "sets: release-pages-golden.jsonl" in text
    for label in ("Recall@5", "nDCG@10", "Answer correctness", "False abstention", "Leaks"):
        assert label in text
    recorded = ReleaseEvalStore(releases.web.data_dir).get(releases.first)
    assert recorded is not None
    leaks = evals.get_by_role("row", name=re.compile("^Leaks")).inner_text()
    assert str(recorded.per_product[CONFIDENTIAL]["access_leaks"]) in leaks
    _no_blocking_axe(page, "product")
    screenshot(page, "product")

    # A product the sets have no question about says so.
    page.goto("/catalog/operations.fulfilment-ops")
    assert "hold no question about this product" in page.locator("#product-evals-none").inner_text()


@contextmanager
def _session(web: Web, principal: str) -> Iterator[tuple[httpx.Client, str]]:
    """A signed-in HTTP client and its CSRF token (read from the page, as a browser would have it)."""
    with httpx.Client(base_url=web.url, follow_redirects=False, timeout=60) as client:
        r = client.post("/signin", data={"api_key": web.keys[principal]})
        assert r.status_code == 303 and COOKIE in r.cookies
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/releases").text)
        assert token is not None
        yield client, token.group(1)


def test_an_analyst_cannot_publish_or_roll_back(releases: Releases):
    registry = ReleaseRegistry(releases.web.data_dir)
    moves = len(registry.alias_log())
    with _session(releases.web, "ana") as (client, token):
        for path, form in (("/releases/publish", {"release": releases.second}), ("/releases/rollback", {})):
            r = client.post(path, data=form | {"csrf": token})
            assert r.status_code == 403, (path, r.status_code)
            assert "needs one of the roles: release-manager" in r.text and "ana holds analyst" in r.text
    assert registry.current_id() == releases.first and len(registry.alias_log()) == moves


def test_a_release_manager_publishes_and_rolls_back(rpage, releases: Releases):
    registry = ReleaseRegistry(releases.web.data_dir)
    page = rpage
    try:
        sign_in(page, releases.web, "rel")
        page.goto("/releases")
        _no_blocking_axe(page, "releases (release manager)")
        page.get_by_label("Release to publish").select_option(releases.second)
        page.get_by_role("button", name="Publish").click()
        page.wait_for_url(re.compile(r"/releases\?published="))
        assert f"Published {releases.second}" in page.locator("#releases-moved").inner_text()
        assert registry.current_id() == releases.second
        assert page.locator("#releases-list tr.pages-current").get_attribute("data-release") == releases.second
        # The service answers from the new release at once (the alias is re-read per request).
        r = httpx.get(f"{releases.web.url}/v1/releases/current")
        assert r.json()["id"] == releases.second

        page.get_by_role("button", name="Roll back").click()  # to the release current before
        page.wait_for_url(re.compile(r"/releases\?rolled_back="))
        assert f"{releases.first} is the current release now" in page.locator("#releases-moved").inner_text()
        assert registry.current_id() == releases.first
        assert [e["reason"] for e in registry.alias_log()[-2:]] == ["publish", "rollback"]
    finally:
        if registry.current_id() != releases.first:
            registry.publish(releases.first, reason="test cleanup")

    with _session(releases.web, "rel") as (client, token):
        r = client.post("/releases/publish", data={"release": "rel-0000000000000000", "csrf": token})
        assert r.status_code == 404 and "no release &#39;rel-0000000000000000&#39;" in r.text
        r = client.post("/releases/publish", data={"release": releases.second})  # no CSRF token
        assert r.status_code == 403 and "reload the page" in r.text
    assert registry.current_id() == releases.first


def test_an_employee_sees_only_its_products_in_releases(rpage, releases: Releases):
    page = rpage
    sign_in(page, releases.web, "emp")
    hidden = (CONFIDENTIAL, RESTRICTED, "customer.support-knowledge", ADDED_DOC, HIDDEN_DOC, "Revenue Reporting",
              "Compensation Handbook")
    seen = {}
    for path in ("/releases", f"/releases/{releases.first}", f"/releases/{releases.second}",
                 f"/releases/diff?a={releases.first}&b={releases.second}",
                 f"/releases/diff?a={releases.second}&b={releases.first}", f"/catalog/{PUBLIC}", f"/catalog/{INTERNAL}"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        seen[path] = page.content()
    for path, html in seen.items():
        leaked = [m for m in hidden if m in html]
        assert not leaked, (path, leaked)
    # Counts are the employee's: the public and the two internal products.
    page.goto("/releases")
    first = page.locator(f"#releases-list tr[data-release='{releases.first}'] td")
    expected = ReleaseRegistry(releases.web.data_dir).get(releases.first).products
    readable = [PUBLIC, INTERNAL, "operations.fulfilment-ops"]
    assert first.nth(3).inner_text() == "3"
    assert first.nth(4).inner_text() == str(sum(expected[p].n_chunks for p in readable))
    page.goto(f"/releases/diff?a={releases.first}&b={releases.second}")
    changed = page.locator("#diff-changed tbody tr")
    assert {changed.nth(i).get_attribute("data-product") for i in range(changed.count())} == {PUBLIC, INTERNAL}
    for pid in (CONFIDENTIAL, RESTRICTED):
        # Discoverable by employee (their contracts' discoverableBy): the facts page, and nothing of the
        # releases that serve the product (no release ids, versions or documents).
        response = page.goto(f"/catalog/{pid}")
        assert response is not None and response.status == 200
        html = page.content()
        assert "discoverable only" in html.lower()
        assert releases.first not in html and releases.second not in html and ADDED_DOC not in html
