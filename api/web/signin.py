"""GET/POST /signin and POST /signout: an API key for a session cookie (api/web/session.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from api.errors import InvalidApiKey
from api.web.deps import SessionsDep, VisitorDep
from api.web.render import SECURITY_HEADERS, WebRoute, page
from api.web.session import COOKIE, CSRF_FIELD, SESSION_IDLE_S, check_csrf

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/signin")
async def signin_form(request: Request, visitor: VisitorDep, next: str | None = None) -> Response:
    return page(request, "signin.html", visitor, next=_safe_next(next), error=None)


@router.post("/signin")
async def signin(
    request: Request,
    visitor: VisitorDep,
    sessions: SessionsDep,
    api_key: Annotated[str, Form(max_length=300)],
    next: Annotated[str | None, Form(max_length=500)] = None,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD, max_length=200)] = None,
) -> Response:
    check_csrf(request, visitor, csrf)
    key = api_key.strip()
    try:
        principal = request.app.state.keys.principal_for(key or None)
        if not key:
            raise InvalidApiKey("empty")
    except InvalidApiKey:
        return page(request, "signin.html", visitor, status=401, next=_safe_next(next),
                    error="That API key is not valid. Paste the whole key that `meshrag keys create` printed "
                    "(it starts with mr_), or ask the operator for one.")
    sessions.end(visitor.token)  # a new session id on every sign-in: no session fixation
    token, _ = sessions.create(key, principal)
    response = RedirectResponse(_safe_next(next), status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(COOKIE, token, max_age=SESSION_IDLE_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/signout")
async def signout(
    request: Request,
    visitor: VisitorDep,
    sessions: SessionsDep,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD, max_length=200)] = None,
) -> Response:
    check_csrf(request, visitor, csrf)
    sessions.end(visitor.token)
    response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
