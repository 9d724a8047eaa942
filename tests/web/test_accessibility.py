"""axe-core (the copy axe-playwright-python ships) on every page, signed out and signed in, the ask page after
a streamed answer included: no violation of impact "serious" or "critical". Lesser findings are printed."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from indexing.releases import ReleaseRegistry
from tests.web.conftest import Web, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

BLOCKING = {"serious", "critical"}


def check(page, where: str, axe: Axe, found: dict[str, list[str]]) -> None:
    results = axe.run(page)
    violations = results.response["violations"]
    found[where] = [f"{v['id']} ({v['impact']}, {len(v['nodes'])})" for v in violations]
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert not blocking, f"{where}:\n{results.generate_report()}"


def test_no_serious_or_critical_accessibility_violations(page, web: Web):
    axe = Axe()
    found: dict[str, list[str]] = {}
    page.goto("/signin")
    check(page, "sign-in", axe, found)
    page.goto("/")
    check(page, "ask (signed out)", axe, found)
    sign_in(page, web, "ana")
    page.goto("/")
    check(page, "ask", axe, found)
    page.get_by_label("Question").fill("how long do we keep published versions of a product?")
    page.get_by_role("button", name="Ask").click()
    page.locator("[data-ask-state=done]").wait_for()
    check(page, "ask (answered)", axe, found)
    provenance = page.get_by_role("link", name="provenance record")
    provenance.first.click()
    page.wait_for_load_state()
    check(page, "provenance", axe, found)
    page.go_back()
    release = ReleaseRegistry(web.data_dir).current()
    assert release is not None
    for where, path in (
        ("catalog", "/catalog"),
        ("catalog filtered", "/catalog?domain=finance"),
        ("product", "/catalog/finance.revenue-reporting"),
        ("releases", "/releases"),
        ("release", f"/releases/{release.id}"),
        ("release diff", f"/releases/diff?a={release.id}&b={release.id}"),
        ("not found", "/catalog/nobody.no-such-product"),
    ):
        page.goto(path)
        check(page, where, axe, found)
    print("\naxe findings below 'serious' (page: rule (impact, nodes)):")
    for where, rules in found.items():
        print(f"  {where}: {', '.join(rules) or 'none'}")
