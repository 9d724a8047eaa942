"""The web page in a real browser: one uvicorn server on the sample-mesh index (real MiniLM), driven by
Debian's Chromium through Playwright (no browser download: `executable_path` is the system binary).

Without Chromium the browser tests fail, with how to install it: `.ci/run` installs Debian's package when
it is missing, and the README says the same for a developer machine.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from api.app import create_app
from api.auth import create_key
from api.settings import ApiSettings
from knowledge.settings import SAMPLE_MESH
from tests.api.conftest import serving

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
MEASUREMENTS = SCREENSHOTS / "measurements.json"  # what the browser tests measured (reported, not asserted)
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Flags for a closed network: without the background-networking ones Chromium keeps trying to reach
# Google's hosts at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Who the web session's keys act as: principal → roles (the sample mesh's contracts).
WEB_PRINCIPALS = {
    "ana": ["analyst"],  # every product but the restricted compensation handbook
    "emp": ["employee"],  # public + internal products only: never confidential or restricted content
    "pat": ["people-partner"],  # public + the restricted product
    "rel": ["analyst", "release-manager"],  # may publish and roll back releases
}
RESTRICTED = "people.compensation-handbook"
CONFIDENTIAL = ("customer.support-knowledge", "finance.revenue-reporting")


@dataclass
class Web:
    url: str
    app: FastAPI
    data_dir: Path
    keys: dict[str, str]  # principal → API key
    measured: dict[str, Any] = field(default_factory=dict)


def chromium_path() -> str:
    explicit = os.environ.get("MESHRAG_CHROMIUM")
    for candidate in ((explicit,) if explicit else CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "the browser tests need Chromium: install Debian's package (`sudo apt-get install chromium`; .ci/run "
        "does this when it is missing) or point MESHRAG_CHROMIUM at a Chromium binary",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def web(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    data_dir = tmp_path_factory.mktemp("web") / "data"
    shutil.copytree(sample_index, data_dir, ignore=shutil.ignore_patterns("provenance.sqlite*", "index.lock"))
    keys_file = data_dir.parent / "api-keys.json"
    keys = {name: create_key(keys_file, name, roles).key for name, roles in WEB_PRINCIPALS.items()}
    app = create_app(ApiSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH], api_keys_file=keys_file,
                                 rate_limit=False))
    with serving(app) as url:
        web = Web(url=url, app=app, data_dir=data_dir, keys=keys)
        yield web
    if web.measured:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        MEASUREMENTS.write_text(json.dumps(web.measured, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, web: Web):
    """A fresh browser context (no cookies) per test, with the server's URL as base."""
    context = browser.new_context(base_url=web.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, web: Web, principal: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto("/signin")
    page.get_by_label("API key").fill(web.keys[principal])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin" not in url)


def screenshot(page, name: str) -> Path:
    """A full-page screenshot under docs/screenshots/ (committed; the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
