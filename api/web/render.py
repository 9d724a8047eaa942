"""Rendering for the web page: Jinja2 templates (autoescaped), the security headers every page carries,
and errors shown as pages with the same status and message the JSON API gives."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from api.errors import classify
from api.web.deps import visitor_or_anonymous
from api.web.session import CSRF_FIELD, CsrfRejected, Visitor

log = logging.getLogger("meshrag.web")

# No inline script or style anywhere: a script or style that an attacker smuggles into a page does not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # pages show what this visitor may read; no shared cache keeps them
}

templates = Jinja2Templates(directory=str(files("api.web") / "templates"))
templates.env.globals["CSRF_FIELD"] = CSRF_FIELD


def _days_ago(value: str | None) -> str:
    """'12 days ago' for an ISO date or timestamp."""
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    days = (datetime.now(UTC) - when).days
    return "today" if days <= 0 else ("1 day ago" if days == 1 else f"{days} days ago")


templates.env.filters["days_ago"] = _days_ago


def page(request: Request, template: str, visitor: Visitor, status: int = 200, **context: Any) -> Response:
    """`template` rendered for `visitor`, with the security headers."""
    response = templates.TemplateResponse(
        request, template, {"visitor": visitor, **context}, status_code=status, headers=SECURITY_HEADERS
    )
    return response


class WebRoute(APIRoute):
    """A route whose errors are pages: the status, type and message of the JSON API's mapping, rendered
    in the site's layout (a signed-out visitor is shown, since the failure may be the session itself)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except CsrfRejected as exc:
                return _error_page(request, 403, "csrf_rejected", str(exc))
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors()
                )
                return _error_page(request, 422, "invalid_request", problems)
            except Exception as exc:  # every error becomes a page; 5xx are logged
                status, kind, message = classify(exc)
                if status >= 500:
                    log.error("web page %s failed", request.url.path, exc_info=exc)
                return _error_page(request, status, kind, message)

        return handle


def _error_page(request: Request, status: int, kind: str, message: str) -> Response:
    headers = dict(SECURITY_HEADERS)
    if status == 503:
        headers["Retry-After"] = "5"
    return templates.TemplateResponse(
        request,
        "error.html",
        {"visitor": visitor_or_anonymous(request), "status": status, "kind": kind, "message": message,
         "request_id": getattr(request.state, "request_id", "")},
        status_code=status,
        headers=headers,
    )
