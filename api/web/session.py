"""Sign-in for the web page: an API key exchanged for a server-side session.

The browser holds only a random session token, in an HttpOnly, SameSite=Strict cookie (Secure over
HTTPS); the key stays in this process's memory and is checked against the key store on every request,
so a revoked key signs its sessions out at once. Forms that change anything carry the session's CSRF
token (or, signed out, must come from this origin): a page of another site can neither read the token
nor send the cookie. Sessions end on sign-out, after `SESSION_IDLE_S` without a request, or when the
process restarts (sign in again).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import Request

from api.auth import KeyStore, key_id
from api.errors import InvalidApiKey
from knowledge.model import Principal

COOKIE = "meshrag_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE_S = 8 * 3600
MAX_SESSIONS = 10_000


class CsrfRejected(Exception):
    """A state-changing request without this session's token, or from another origin."""


@dataclass
class WebSession:
    key: str = field(repr=False)
    key_id: str
    principal: str
    csrf: str = field(repr=False)
    last_seen: float


class SessionStore:
    """Sessions by token, in memory. Bounded: past `MAX_SESSIONS` the least recently used one ends."""

    def __init__(self, idle_s: float = SESSION_IDLE_S) -> None:
        self.idle_s = idle_s
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def create(self, key: str, principal: Principal) -> tuple[str, WebSession]:
        token = secrets.token_urlsafe(32)
        kid = key_id(key) or ""
        session = WebSession(key=key, key_id=kid, principal=principal.id, csrf=secrets.token_urlsafe(32),
                             last_seen=time.monotonic())
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda t: self._sessions[t].last_seen)
                del self._sessions[oldest]
            self._sessions[token] = session
        return token, session

    def get(self, token: str | None) -> WebSession | None:
        if not token:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s:
                del self._sessions[token]
                return None
            session.last_seen = now
            return session

    def end(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)


@dataclass(frozen=True)
class Visitor:
    """Who is looking at a page: the principal (anonymous when signed out) and their session."""

    principal: Principal
    session: WebSession | None
    token: str | None

    @property
    def signed_in(self) -> bool:
        return self.session is not None


def visitor_of(request: Request, sessions: SessionStore, keys: KeyStore) -> Visitor:
    """The visitor of `request`. A session whose key was revoked or changed ends here (signed out)."""
    token = request.cookies.get(COOKIE)
    session = sessions.get(token)
    if session is None:
        return Visitor(Principal.anonymous(), None, None)
    try:
        principal = keys.principal_for(session.key)
    except InvalidApiKey:
        sessions.end(token)
        return Visitor(Principal.anonymous(), None, None)
    request.state.principal_id = principal.id
    request.state.key_id = session.key_id
    return Visitor(principal, session, token)


def check_csrf(request: Request, visitor: Visitor, submitted: str | None) -> None:
    """Refuse a state-changing request that is not from this site's own page."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is not None and urlsplit(origin).netloc != request.url.netloc:
        raise CsrfRejected("this form was sent from another site; reload the page and try again")
    if visitor.session is not None and not hmac.compare_digest(submitted or "", visitor.session.csrf):
        raise CsrfRejected("this form has expired or was not sent by this page; reload the page and try again")
