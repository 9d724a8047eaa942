"""A provenance record in the browser: asked through the JSON API with the principal's key and its own
X-Request-ID, then opened signed in with that key (request ids are scoped per key: the session's key is
the same key, so the page finds the record), its chain verification, and its replay. Anyone else gets
the page of a missing record; a signed-out visitor is asked to sign in."""

from __future__ import annotations

import uuid

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe

from api.web.session import COOKIE
from tests.web.conftest import Web, screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

QUESTION = "How often must a knowledge product's sources be reviewed, and who owns the mesh handbook?"


def ask(web: Web, principal: str, request_id: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {web.keys[principal]}"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    r = httpx.post(f"{web.url}/v1/ask", json={"question": QUESTION}, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_own_record_with_chain_check_and_replay(page, web: Web):
    ask(web, "pat")  # someone else's record first: this one then links to a record before it
    request_id = f"pages-{uuid.uuid4().hex[:12]}"
    answer = ask(web, "ana", request_id)
    assert answer["request_id"] == request_id
    sign_in(page, web, "ana")
    response = page.goto(f"/provenance/{request_id}")
    assert response is not None and response.status == 200
    assert request_id in page.get_by_role("heading", level=1).inner_text()
    assert page.locator("#chain-check h2").inner_text() == "Chain verification: ok"
    check = page.locator("#chain-check").inner_text()
    assert "its content matches its hash" in check and "links to the record before it, which is intact" in check
    main = page.locator("main").inner_text()
    assert QUESTION in main and answer["release_id"] in main and "ana" in main
    retrieved = page.locator("#provenance-retrieved tbody tr")
    assert retrieved.count() == len(answer["retrieval"])
    # In rank order, the products the answer saw.
    assert [retrieved.nth(i).locator("td").nth(1).locator("a").inner_text() for i in range(retrieved.count())] == [
        h["product_id"] for h in sorted(answer["retrieval"], key=lambda h: h["rank"])]
    assert page.locator("#provenance-answer").inner_text().strip() == answer["answer"]["text"].strip()
    citations = page.locator("#provenance-citations li")
    assert citations.count() == len(answer["answer"]["citations"])
    # A citation opens its passage in the recorded release, the cited span marked (the document view).
    first = answer["answer"]["citations"][0]
    href = citations.first.get_by_role("link").get_attribute("href")
    assert href == (f"/documents/{first['product_id']}/{first['document']}?release={first['release_id']}"
                    f"&start={first['start']}&end={first['end']}")
    params = page.locator("#provenance-params").inner_text()
    assert "fusion" in params and "requested release" in params
    # Chain links are other callers' business: the page names neither seq nor the previous record.
    assert "prev_request_id" not in page.content() and "seq " not in main

    page.get_by_role("button", name="Replay").click()
    page.wait_for_url("**replay=true**")
    assert "Same chunks in the same order" in page.locator("#replay-result").inner_text()
    results = Axe().run(page)
    blocking = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not blocking, results.generate_report()
    screenshot(page, "provenance")


def test_a_generated_request_id_opens_too(web: Web):
    answer = ask(web, "emp")
    with httpx.Client(base_url=web.url, follow_redirects=False, timeout=60) as client:
        client.post("/signin", data={"api_key": web.keys["emp"]})
        r = client.get(f"/provenance/{answer['request_id']}")
        assert r.status_code == 200 and "Chain verification: ok" in r.text


def test_others_and_signed_out_visitors_do_not_see_a_record(page, web: Web):
    request_id = f"pages-{uuid.uuid4().hex[:12]}"
    ask(web, "ana", request_id)
    missing = f"pages-{uuid.uuid4().hex[:12]}"
    for principal in ("emp", "rel", "pat"):  # rel holds analyst too: the record is still ana's only
        with httpx.Client(base_url=web.url, follow_redirects=False, timeout=60) as client:
            r = client.post("/signin", data={"api_key": web.keys[principal]})
            assert COOKIE in r.cookies
            theirs, absent = client.get(f"/provenance/{request_id}"), client.get(f"/provenance/{missing}")
            assert theirs.status_code == absent.status_code == 404, principal
            assert QUESTION not in theirs.text
            assert "no provenance record with request id" in theirs.text
    # The same id chosen by another key names another record: emp's own ask under ana's id is emp's.
    ask(web, "emp", request_id)
    with httpx.Client(base_url=web.url, follow_redirects=False, timeout=60) as client:
        client.post("/signin", data={"api_key": web.keys["emp"]})
        r = client.get(f"/provenance/{request_id}")
        assert r.status_code == 200 and "Signed in as <strong>emp</strong>" in r.text and "By</dt><dd>emp" in r.text

    response = page.goto(f"/provenance/{request_id}")
    assert response is not None and response.status == 401
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in to see this record"
    assert QUESTION not in page.content()
    page.get_by_role("link", name="Sign in").last.click()
    page.get_by_label("API key").fill(web.keys["ana"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/provenance/{request_id}")
    assert page.locator("#chain-check h2").inner_text() == "Chain verification: ok"
