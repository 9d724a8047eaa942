"""Per-client rate limits, daily quotas and a bound on concurrent MCP requests, for every HTTP entry point
(REST, SSE, chat, MCP, docs) but liveness, readiness and metrics.

A caller is its API key's id when it presents a valid key (or a web session signed in with one: the page
and the API share the key's budget), else its address (an IPv6 address counts as
its /64, which one client usually holds whole). A wrong or unknown key counts against the address, so
guessing keys is throttled there, and the route still answers 401; it never touches a real key's budget.

Each caller has a token bucket: `burst` requests at once, refilled at `per_minute`, so over any t seconds
at most `burst + per_minute * t / 60` requests get through; plus, optionally, `per_day` requests per UTC
day. A refused request is answered 429 with Retry-After (whole seconds, ≥ 1) and consumes nothing.
The web page's static files (stylesheets, its one script: no data) are not counted, so loading a page is
one request, like an API call.

Why a small token bucket rather than the `limits` library: one bucket is exactly "a burst, then a
sustained rate", where `limits` counts requests in windows (fixed, moving, sliding) and needs two limits
to say it; and the shared state lives in PostgreSQL, which none of its storages (memory, Redis,
Memcached, MongoDB) is. Here the state per caller is one row (tokens, updated, day, used).

Where the buckets live (api/state): this process's memory (one worker), the data dir's state file
(`--workers N`: every worker takes from the same bucket), or PostgreSQL (shared mode: every replica does;
one `INSERT … ON CONFLICT DO UPDATE … RETURNING` per request computes the bucket in SQL). If that store
cannot be reached the request is let through and logged: the limits protect capacity, and whatever the
request needs from the same server then answers 503 with Retry-After itself. The MCP concurrency bound
is per worker process (a request in flight belongs to one process).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import KeyStore, key_id, presented_key
from api.errors import InvalidApiKey
from api.metrics import ApiMetrics
from api.request_context import send_error
from api.settings import ApiSettings
from api.web import ASSETS
from api.web.session import COOKIE, SessionStore, remember
from knowledge.errors import StoreUnavailable

log = logging.getLogger("meshrag.api")
# Probes and scrapes are never limited: a throttled /readyz would take a healthy node out of rotation.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
EXEMPT_PREFIXES = (ASSETS + "/",)
MCP_PREFIX = "/mcp"
DAY_S = 86_400
UNAVAILABLE_LOG_S = 10.0  # at most one warning this often while the limits' store is unreachable

Limit = Literal["burst", "daily", "concurrency"]


@dataclass(frozen=True)
class RatePolicy:
    """What one kind of caller may send. per_minute 0: no rate limit; per_day 0: no daily quota."""

    caller: Literal["keyed", "anonymous"]
    per_minute: float
    burst: int
    per_day: int
    env: str  # the settings' prefix, named in messages: MESHRAG_RATE_LIMIT_KEYED / _ANON

    @property
    def per_second(self) -> float:
        return self.per_minute / 60


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: Limit | None = None  # which limit refused it
    retry_after_s: int = 0


@dataclass(frozen=True)
class Caller:
    id: str  # "key:<key id>" or "addr:<address or /64>"
    policy: RatePolicy

    @property
    def described(self) -> str:
        return f"API key {self.id[4:]}" if self.policy.caller == "keyed" else "anonymous clients from your address"


class RateLimitBackend(Protocol):
    """Where the buckets live. `take` must be atomic per caller: check and consume one request, or
    refuse it and consume nothing. A backend that cannot reach its store raises StoreUnavailable."""

    async def take(self, caller: str, policy: RatePolicy, now: float) -> Decision: ...


@dataclass
class Bucket:
    tokens: float
    updated: float
    day: int
    used: int
    full_at: float  # when the bucket is full again: from then on it equals a new caller's

    @classmethod
    def new(cls, policy: RatePolicy, now: float) -> Bucket:
        return cls(tokens=float(policy.burst), updated=now, day=int(now // DAY_S), used=0, full_at=now)

    def take(self, policy: RatePolicy, now: float) -> Decision:
        """Refill for the time since the last request, then take one request or refuse (taking nothing).
        The same arithmetic runs in SQL for PostgreSQL (api/state/postgres.py)."""
        day = int(now // DAY_S)
        if self.day != day:
            self.day, self.used = day, 0
        rate = policy.per_second
        if rate > 0:
            # max(0, …): a wall clock set back must not drain the bucket.
            self.tokens = min(float(policy.burst), self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = now
        if policy.per_day and self.used >= policy.per_day:
            return Decision(False, "daily", max(1, math.ceil((day + 1) * DAY_S - now)))
        if rate > 0 and self.tokens < 1:
            return Decision(False, "burst", max(1, math.ceil((1 - self.tokens) / rate)))
        if rate > 0:
            self.tokens -= 1
            self.full_at = now + (policy.burst - self.tokens) / rate
        self.used += 1
        return Decision(True)


class MemoryRateLimitBackend:
    """Buckets in a dict, for one process. Bounded: past `max_callers` it first forgets buckets that are
    full again with nothing counted today (losslessly: a new bucket is the same), then the least
    recently seen ones (a warning says so: raise the bound, or use a shared backend)."""

    def __init__(self, max_callers: int = 100_000) -> None:
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._lock = threading.Lock()

    async def take(self, caller: str, policy: RatePolicy, now: float) -> Decision:
        with self._lock:
            decision = self._take(caller, policy, now)
            if len(self._buckets) > self.max_callers:
                self._shrink(now)
            return decision

    def _take(self, caller: str, policy: RatePolicy, now: float) -> Decision:
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = Bucket.new(policy, now)
        else:
            self._buckets.move_to_end(caller)
        return bucket.take(policy, now)

    def _shrink(self, now: float) -> None:
        today = int(now // DAY_S)
        idle = [c for c, b in self._buckets.items() if b.full_at <= now and (b.used == 0 or b.day != today)]
        for caller in idle:
            del self._buckets[caller]
        target = self.max_callers * 9 // 10
        if len(self._buckets) > target:
            log.warning(
                "rate limiter: %d active callers over the bound of %d; forgetting the least recently seen",
                len(self._buckets),
                self.max_callers,
            )
            while len(self._buckets) > target:
                self._buckets.popitem(last=False)


class ConcurrencyGate:
    """At most `limit` requests of one caller in flight at once (in this process: each worker bounds
    its own). Used for MCP, whose requests can run as long as an answer takes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: dict[str, int] = {}

    def enter(self, caller: str) -> bool:
        active = self._active.get(caller, 0)
        if active >= self.limit:
            return False
        self._active[caller] = active + 1
        return True

    def leave(self, caller: str) -> None:
        active = self._active.get(caller, 1) - 1
        if active > 0:
            self._active[caller] = active
        else:
            self._active.pop(caller, None)


def policies(settings: ApiSettings) -> tuple[RatePolicy, RatePolicy]:
    """(keyed, anonymous) policies of the settings."""
    keyed = RatePolicy(
        "keyed",
        settings.rate_limit_keyed_per_minute,
        settings.rate_limit_keyed_burst,
        settings.rate_limit_keyed_per_day,
        "MESHRAG_RATE_LIMIT_KEYED",
    )
    anonymous = RatePolicy(
        "anonymous",
        settings.rate_limit_anon_per_minute,
        settings.rate_limit_anon_burst,
        settings.rate_limit_anon_per_day,
        "MESHRAG_RATE_LIMIT_ANON",
    )
    return keyed, anonymous


def client_address(scope: Scope) -> str:
    """The peer address (uvicorn puts a trusted proxy's X-Forwarded-For there); IPv6 as its /64."""
    client = scope.get("client")
    host = client[0] if client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _cookie(header: str | None, name: str) -> str | None:
    """One cookie's value from a Cookie header."""
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def _headers(scope: Scope) -> dict[str, str]:
    wanted = {b"authorization", b"x-api-key", b"cookie"}
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
            if k.lower() in wanted}


class RateLimitMiddleware:
    """Refuses a request over its caller's limits with 429 before any route or MCP sees it. Sits inside
    RequestContextMiddleware (so a 429 has a request id and is counted) and CORS (so browsers can read it)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: ApiSettings,
        keys: Callable[[], KeyStore],
        metrics: ApiMetrics,
        sessions: Callable[[], SessionStore] | None = None,
        backend: RateLimitBackend | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.sessions = sessions
        self.metrics = metrics
        self.keyed, self.anonymous = policies(settings)
        self.backend = backend or MemoryRateLimitBackend()
        concurrent = settings.rate_limit_mcp_concurrent
        self.mcp_gate = ConcurrencyGate(concurrent) if concurrent else None
        self._unavailable_logged = -UNAVAILABLE_LOG_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if scope["type"] != "http" or path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        caller = self.caller(scope)
        try:
            decision = await self.backend.take(caller.id, caller.policy, time.time())
        except StoreUnavailable as exc:
            self._let_through(exc)
            decision = Decision(True)
        if not decision.allowed:
            await self._refuse(send, caller, decision)
            return
        gate = self.mcp_gate if path == MCP_PREFIX or path.startswith(MCP_PREFIX + "/") else None
        if gate is None:
            await self.app(scope, receive, send)
            return
        if not gate.enter(caller.id):
            await self._refuse(send, caller, Decision(False, "concurrency", 1))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave(caller.id)

    def caller(self, scope: Scope) -> Caller:
        """Resolved as api/auth.py does; a key that does not authenticate counts as its address."""
        headers = _headers(scope)
        try:
            key = presented_key(headers.get("authorization"), headers.get("x-api-key"))
            if key is not None:
                self.keys().principal_for(key)
                return Caller(f"key:{key_id(key)}", self.keyed)
            token = _cookie(headers.get("cookie"), COOKIE)
            if token and self.sessions is not None:
                session = self.sessions().get(token)
                remember(scope, token, session)  # the page reuses it rather than looking it up again
                if session is not None:
                    self.keys().principal_of(session.key_id, session.key_hash)
                    return Caller(f"key:{session.key_id}", self.keyed)
        except (InvalidApiKey, StoreUnavailable):
            pass  # the route answers 401 / 503 itself
        return Caller(f"addr:{client_address(scope)}", self.anonymous)

    def _let_through(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self._unavailable_logged >= UNAVAILABLE_LOG_S:
            self._unavailable_logged = now
            log.warning("rate limits not checked, requests let through: %s", exc)

    async def _refuse(self, send: Send, caller: Caller, decision: Decision) -> None:
        policy = caller.policy
        retry = decision.retry_after_s
        if decision.limit == "daily":
            message = (
                f"daily quota reached: {caller.described} may send {policy.per_day} requests per UTC day "
                f"({policy.env}_PER_DAY); it resets at 00:00 UTC, in {retry} s"
            )
        elif decision.limit == "concurrency":
            message = (
                f"too many MCP requests in flight: {caller.described} may have "
                f"{self.mcp_gate.limit if self.mcp_gate else 0} at once (MESHRAG_RATE_LIMIT_MCP_CONCURRENT); "
                f"retry in {retry} s, when one has finished"
            )
        else:
            message = (
                f"rate limit reached: {caller.described} may send {policy.burst} requests at once and "
                f"{policy.per_minute:g} per minute after that ({policy.env}_BURST, {policy.env}_PER_MINUTE); "
                f"retry in {retry} s"
            )
        if policy.caller == "anonymous":
            message += "; callers with an API key are limited per key instead"
        self.metrics.rate_limited.labels(decision.limit or "burst", policy.caller).inc()
        log.debug("429 for %s (%s limit)", caller.id, decision.limit)
        await send_error(send, 429, "rate_limited", message, headers={"Retry-After": str(retry)})
