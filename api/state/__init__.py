"""Where per-caller state of the HTTP service lives — web sessions and rate-limit buckets (API keys: see
api/auth.py and api/state/keys.py) — chosen by the settings:

    memory    one worker on an embedded FAISS data dir (`workers` = 1): a dict in the process, nothing
              on the request path but a lock (the fast path, as before)
    sqlite    `meshrag serve --workers N` in FAISS mode: `<data dir>/api-state.sqlite` (WAL), opened by
              every worker on the host
    postgres  shared mode (store = pgvector): tables in `pg_schema` of the shared server, seen by every
              worker and replica

`open_api_state(settings)` only builds the objects; `warm_up()` (the app's lifespan) connects and
creates what is missing, so a broken store stops the start-up with its message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from api.ratelimit import MemoryRateLimitBackend, RateLimitBackend
from api.settings import ApiSettings
from api.web.session import SessionStore
from indexing.stores.pg_shared import is_shared, shared_dsn

StateKind = Literal["memory", "sqlite", "postgres"]
STATE_FILE = "api-state.sqlite"


def state_kind(settings: ApiSettings) -> StateKind:
    if is_shared(settings):
        return "postgres"
    return "sqlite" if settings.workers > 1 else "memory"


@dataclass
class ApiState:
    kind: StateKind
    sessions: SessionStore
    rate_limits: RateLimitBackend
    warm_up: Callable[[], None]
    close: Callable[[], None]


def open_api_state(settings: ApiSettings) -> ApiState:
    """The sessions and rate-limit backend of `settings` (not connected yet)."""
    kind = state_kind(settings)
    if kind == "postgres":
        from api.state.postgres import PgRateLimitBackend, PgSessionBackend, state_tables

        tables = state_tables(lambda: shared_dsn(settings) or "", settings.pg_schema)
        return ApiState(kind, SessionStore(PgSessionBackend(tables)), PgRateLimitBackend(tables),
                        tables.warm_up, tables.close)
    if kind == "sqlite":
        from api.state.sqlite import SqliteRateLimitBackend, SqliteSessionBackend, SqliteState

        state = SqliteState(settings.resolved_data_dir() / STATE_FILE)
        return ApiState(kind, SessionStore(SqliteSessionBackend(state)), SqliteRateLimitBackend(state),
                        state.warm_up, state.close)
    return ApiState(kind, SessionStore(), MemoryRateLimitBackend(), lambda: None, lambda: None)
