"""Sign-in for the web page: an API key exchanged for a server-side session.

The browser holds only a random session token, in an HttpOnly, SameSite=Strict cookie (Secure over
HTTPS). The server keeps the session under the token's sha256, with the key's id and hash (never the key)
and checks them against the key store on every request, so a revoked key signs its sessions out at once.
Forms that change anything carry the session's CSRF token (or, signed out, must come from this origin):
a page of another site can neither read the token nor send the cookie. Sessions end on sign-out or after
`SESSION_IDLE_S` without a request.

Where sessions live (api/state): in this process's memory (one worker: a restart signs everyone out), in
the data dir's state file (`--workers N`), or in PostgreSQL (shared mode): a session made through one
worker or replica is valid on all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from fastapi import Request

from api.auth import KeyStore, hash_key, key_id
from api.errors import InvalidApiKey
from knowledge.model import Principal

COOKIE = "meshrag_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE_S = 8 * 3600
MAX_SESSIONS = 10_000
# Where the rate limiter leaves the session it resolved for a request: the page need not look it up again.
RESOLVED = "web_session"


class CsrfRejected(Exception):
    """A state-changing request without this session's token, or from another origin."""


@dataclass
class WebSession:
    key_id: str
    key_hash: str = field(repr=False)  # `hash_key` of the key signed in with
    principal: str
    csrf: str = field(repr=False)
    last_seen: float  # unix seconds


def token_hash(token: str) -> str:
    """How a session is stored: a leaked table or file holds no usable cookie."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionBackend(Protocol):
    """Where sessions are kept, by token hash. `touch` returns the session with `last_seen` moved to `now`,
    or None when there is none or it has been idle for more than `idle_s` (then it is gone)."""

    def save(self, key: str, session: WebSession, now: float, idle_s: float) -> None: ...

    def touch(self, key: str, now: float, idle_s: float) -> WebSession | None: ...

    def delete(self, key: str) -> None: ...


class MemorySessionBackend:
    """Sessions in a dict, for one process. Bounded: past `MAX_SESSIONS` the least recently used one ends."""

    def __init__(self) -> None:
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def save(self, key: str, session: WebSession, now: float, idle_s: float) -> None:
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda t: self._sessions[t].last_seen)
                del self._sessions[oldest]
            self._sessions[key] = session

    def touch(self, key: str, now: float, idle_s: float) -> WebSession | None:
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.last_seen > idle_s:
                del self._sessions[key]
                return None
            session.last_seen = max(session.last_seen, now)
            return session

    def delete(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)


class SessionStore:
    """Web sessions by token, kept by `backend` (default: this process's memory)."""

    def __init__(self, backend: SessionBackend | None = None, idle_s: float = SESSION_IDLE_S) -> None:
        self.backend = backend or MemorySessionBackend()
        self.idle_s = idle_s

    def create(self, key: str, principal: Principal) -> tuple[str, WebSession]:
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = WebSession(key_id=key_id(key) or "", key_hash=hash_key(key), principal=principal.id,
                             csrf=secrets.token_urlsafe(32), last_seen=now)
        self.backend.save(token_hash(token), session, now, self.idle_s)
        return token, session

    def get(self, token: str | None) -> WebSession | None:
        if not token:
            return None
        return self.backend.touch(token_hash(token), time.time(), self.idle_s)

    def end(self, token: str | None) -> None:
        if token:
            self.backend.delete(token_hash(token))


def remember(scope: dict[str, Any], token: str | None, session: WebSession | None) -> None:
    """Keep the session resolved for this request (by the rate limiter) for the page's own lookup."""
    scope.setdefault("state", {})[RESOLVED] = (token, session)


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
    resolved = getattr(request.state, RESOLVED, None)
    session = resolved[1] if resolved is not None and resolved[0] == token else sessions.get(token)
    if session is None:
        return Visitor(Principal.anonymous(), None, None)
    try:
        principal = keys.principal_of(session.key_id, session.key_hash)
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
