"""What web routes receive: the visitor (from the session cookie) and the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.web.session import SessionStore, Visitor, visitor_of
from knowledge.model import Principal


async def get_sessions(request: Request) -> SessionStore:
    return request.app.state.web_sessions


async def get_visitor(request: Request, sessions: Annotated[SessionStore, Depends(get_sessions)]) -> Visitor:
    return visitor_of(request, sessions, request.app.state.keys)


def visitor_or_anonymous(request: Request) -> Visitor:
    """The visitor for an error page: anonymous when the session cannot be read."""
    try:
        return visitor_of(request, request.app.state.web_sessions, request.app.state.keys)
    except Exception:  # noqa: BLE001 — an error page must render even when the key store is down
        return Visitor(Principal.anonymous(), None, None)


SessionsDep = Annotated[SessionStore, Depends(get_sessions)]
VisitorDep = Annotated[Visitor, Depends(get_visitor)]
