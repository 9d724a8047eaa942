"""The web page for analysts at `/`: server-rendered pages (Jinja2) over the same service, access
rules and ask pipeline as the JSON API, plus one small script of our own that streams answers.

Why this shape: every page is a GET that renders what the API already computes (catalog, releases,
provenance), so they need no client code and no build step; only the ask page is live, and a few dozen
lines of JavaScript reading the SSE stream do that without a framework or a vendored library. Nothing is
loaded from another origin (the Content-Security-Policy allows 'self' only), so it works offline.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from api.web.session import SessionStore

ASSETS = "/assets"


def install_web(app: FastAPI) -> None:
    """Add the pages and their assets to `app` (sessions live in `app.state.web_sessions`)."""
    from api.web import ask, catalog, documents, provenance, releases, signin

    app.state.web_sessions = SessionStore()
    app.mount(ASSETS, StaticFiles(directory=str(files("api.web") / "static")), name="web-assets")
    for module in (signin, ask, documents, catalog, releases, provenance):
        app.include_router(module.router)
