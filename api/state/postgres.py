"""Per-caller state of shared mode in PostgreSQL: web sessions and rate-limit buckets in the deployment's
schema (`web_sessions`, `rate_limits`), seen by every worker and replica. One round trip per request
for each: a session lookup is one `UPDATE … RETURNING`, a rate-limit check one `INSERT … ON CONFLICT DO
UPDATE … RETURNING` that computes the token bucket in SQL (the arithmetic of `Bucket.take`). A lost
connection raises StoreUnavailable; the next call reconnects."""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.ratelimit import DAY_S, Decision, RatePolicy
from api.web.session import WebSession
from indexing.stores.pg_tables import PgTables

SWEEP_S = 3600.0  # how often a process forgets buckets untouched for two days (a new bucket is the same)

DDL = (
    ("CREATE TABLE IF NOT EXISTS {s}.web_sessions (token_hash text PRIMARY KEY, key_id text NOT NULL,"
     " key_hash text NOT NULL, principal text NOT NULL, csrf text NOT NULL, last_seen float8 NOT NULL)"),
    "CREATE INDEX IF NOT EXISTS web_sessions_last_seen ON {s}.web_sessions (last_seen)",
    ("CREATE TABLE IF NOT EXISTS {s}.rate_limits (caller text PRIMARY KEY, tokens float8 NOT NULL,"
     " updated float8 NOT NULL, day integer NOT NULL, used integer NOT NULL, full_at float8 NOT NULL,"
     " allowed boolean NOT NULL)"),
)

# p: the bucket refilled for the time since its last request (a clock set back refills nothing) and its
# count for today; q: whether one more request fits; r: the tokens left after taking it. A new caller's
# first request always fits (burst ≥ 1, a daily quota ≥ 1). `allowed` keeps this request's decision.
# Unlike `Bucket.take` (one clock), `updated` and `day` never move back: replicas' clocks differ, and one
# that is behind must not make the next request through another refill the difference again.
_TAKE = """
INSERT INTO {s}.rate_limits AS b (caller, tokens, updated, day, used, full_at, allowed)
VALUES (%(caller)s, %(first_tokens)s, %(now)s, %(day)s, 1, %(first_full_at)s, true)
ON CONFLICT (caller) DO UPDATE SET (tokens, updated, day, used, full_at, allowed) = (
    SELECT r.tokens, greatest(b.updated, %(now)s), greatest(b.day, %(day)s), r.used,
           CASE WHEN %(rate)s > 0 THEN %(now)s + (%(burst)s - r.tokens) / %(rate)s ELSE %(now)s END, r.ok
    FROM (
        SELECT q.tokens - CASE WHEN q.ok AND %(rate)s > 0 THEN 1 ELSE 0 END AS tokens,
               q.used + CASE WHEN q.ok THEN 1 ELSE 0 END AS used, q.ok
        FROM (
            SELECT p.tokens, p.used,
                   NOT ((%(per_day)s > 0 AND p.used >= %(per_day)s) OR (%(rate)s > 0 AND p.tokens < 1)) AS ok
            FROM (
                SELECT CASE WHEN %(rate)s > 0
                            THEN least(%(burst)s, b.tokens + greatest(0, %(now)s - b.updated) * %(rate)s)
                            ELSE b.tokens END AS tokens,
                       CASE WHEN b.day >= %(day)s THEN b.used ELSE 0 END AS used
            ) p
        ) q
    ) r
)
RETURNING allowed, tokens, used
"""


def state_tables(dsn: Any, schema: str) -> PgTables:
    return PgTables(dsn, schema, DDL, what="web sessions and rate limits")


class PgSessionBackend:
    """`SessionBackend` over `web_sessions`. Expired sessions are deleted when a new one is saved."""

    def __init__(self, tables: PgTables) -> None:
        self.tables = tables
        self._save = tables.sql("INSERT INTO {s}.web_sessions VALUES (%s, %s, %s, %s, %s, %s)"
                                " ON CONFLICT (token_hash) DO NOTHING")
        self._sweep = tables.sql("DELETE FROM {s}.web_sessions WHERE last_seen < %s")
        # One round trip: an expired session is deleted, a live one touched (the conditions exclude
        # each other).
        self._touch = tables.sql(
            "WITH expired AS (DELETE FROM {s}.web_sessions"
            " WHERE token_hash = %(key)s AND last_seen < %(oldest)s)"
            " UPDATE {s}.web_sessions SET last_seen = greatest(last_seen, %(now)s)"
            " WHERE token_hash = %(key)s AND last_seen >= %(oldest)s"
            " RETURNING key_id, key_hash, principal, csrf, last_seen")
        self._delete = tables.sql("DELETE FROM {s}.web_sessions WHERE token_hash = %s")

    def save(self, key: str, session: WebSession, now: float, idle_s: float) -> None:
        def write(conn: Any) -> None:
            conn.execute(self._sweep, (now - idle_s,))
            conn.execute(self._save, (key, session.key_id, session.key_hash, session.principal, session.csrf,
                                      session.last_seen))

        self.tables.run(write)

    def touch(self, key: str, now: float, idle_s: float) -> WebSession | None:
        params = {"key": key, "now": now, "oldest": now - idle_s}
        row = self.tables.run(lambda conn: conn.execute(self._touch, params).fetchone())
        return WebSession(*row) if row is not None else None

    def delete(self, key: str) -> None:
        self.tables.run(lambda conn: conn.execute(self._delete, (key,)))


class PgRateLimitBackend:
    """`RateLimitBackend` over `rate_limits`: one statement per request, run off the event loop. Replicas
    take `now` from their own clocks (keep them in sync, e.g. NTP); a clock behind refills nothing."""

    def __init__(self, tables: PgTables) -> None:
        self.tables = tables
        self._take = tables.sql(_TAKE)
        self._forget = tables.sql("DELETE FROM {s}.rate_limits WHERE updated < %s AND full_at <= %s")
        self._swept = time.monotonic()

    async def take(self, caller: str, policy: RatePolicy, now: float) -> Decision:
        return await run_in_threadpool(self.take_now, caller, policy, now)

    def take_now(self, caller: str, policy: RatePolicy, now: float) -> Decision:
        rate, day = policy.per_second, int(now // DAY_S)
        params = {
            "caller": caller, "now": now, "day": day, "rate": rate, "burst": float(policy.burst),
            "per_day": policy.per_day,
            "first_tokens": policy.burst - 1.0 if rate > 0 else float(policy.burst),
            "first_full_at": now + 1 / rate if rate > 0 else now,
        }
        allowed, tokens, used = self.tables.run(lambda conn: conn.execute(self._take, params).fetchone())
        if time.monotonic() - self._swept >= SWEEP_S:
            self._swept = time.monotonic()
            self.tables.run(lambda conn: conn.execute(self._forget, (now - 2 * DAY_S, now)))
        if allowed:
            return Decision(True)
        if policy.per_day and used >= policy.per_day:
            return Decision(False, "daily", max(1, math.ceil((day + 1) * DAY_S - now)))
        return Decision(False, "burst", max(1, math.ceil((1 - tokens) / rate)))
