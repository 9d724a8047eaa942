"""Sign-in with an API key: a server-side session in an HttpOnly, SameSite=Strict cookie; CSRF-safe forms."""

from __future__ import annotations

import httpx
import pytest

from api.web.session import COOKIE
from tests.web.conftest import Web, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_sign_in_and_out(page, web: Web):
    page.goto("/signin")
    assert "Not signed in" in page.locator("header").inner_text()
    sign_in(page, web, "ana")
    assert "Signed in as ana" in page.locator("header").inner_text()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert web.keys["ana"] not in cookie["value"]  # the key stays on the server
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert "Not signed in" in page.locator("header").inner_text()
    # The old session token is dead on the server, not only forgotten by the browser.
    r = httpx.get(f"{web.url}/signin", cookies={COOKIE: cookie["value"]})
    assert "Not signed in" in r.text


def test_a_wrong_key_is_refused_with_what_to_do(page, web: Web):
    page.goto("/signin")
    page.get_by_label("API key").fill("mr_abcdef_not-a-real-key-at-all-0000")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    assert "not valid" in alert.inner_text() and "meshrag keys create" in alert.inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]


def test_forms_refuse_another_origin_and_a_missing_token(web: Web):
    with httpx.Client(base_url=web.url, follow_redirects=False) as client:
        r = client.post("/signin", data={"api_key": web.keys["ana"]})
        assert r.status_code == 303
        token = r.cookies[COOKIE]
        # Signed in, a state-changing form without the session's CSRF token is refused and changes nothing.
        r = client.post("/signout", data={}, cookies={COOKIE: token})
        assert r.status_code == 403 and "reload the page" in r.text
        r = client.post("/signout", data={}, cookies={COOKIE: token},
                        headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "another site" in r.text
        r = client.get("/signin", cookies={COOKIE: token})
        assert "Signed in as <strong>ana</strong>" in r.text
        # A sign-in posted from another site does not start a session.
        r = client.post("/signin", data={"api_key": web.keys["ana"]}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and COOKIE not in r.cookies


def test_redirect_after_sign_in_stays_on_this_site(web: Web):
    with httpx.Client(base_url=web.url, follow_redirects=False) as client:
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            client.cookies.clear()
            r = client.post("/signin", data={"api_key": web.keys["ana"], "next": target})
            assert r.status_code == 303 and r.headers["location"] == "/", target
        client.cookies.clear()
        r = client.post("/signin", data={"api_key": web.keys["ana"], "next": "/catalog?domain=finance"})
        assert r.headers["location"] == "/catalog?domain=finance"


def test_pages_carry_a_strict_content_security_policy(web: Web):
    r = httpx.get(f"{web.url}/signin")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in r.text and " style=" not in r.text
