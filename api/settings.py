"""Settings of the HTTP service (environment prefix MESHRAG_): the retrieval settings plus where the
server listens, where API keys come from, and the request limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from retrieval.settings import RetrievalSettings


class ApiKeyEntry(BaseModel):
    """One API key as stored: never the key itself, only its lookup id and sha256 hash."""

    id: str = Field(
        min_length=4,
        max_length=64,
        pattern=r"^[a-z0-9]+$",
        description="The key's public prefix id (the part after `mr_`).",
    )
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 of the whole key.")
    principal: str = Field(min_length=1, max_length=200, description="Who the key acts as.")
    roles: list[str] = Field(default_factory=list, description="Contract roles the principal holds.")
    created_at: str | None = None

    @field_validator("principal")
    @classmethod
    def _not_anonymous(cls, value: str) -> str:
        if value == "anonymous":
            raise ValueError("principal 'anonymous' is reserved for requests without a key")
        return value


class ApiSettings(RetrievalSettings):
    """Every field can be set as MESHRAG_<FIELD>; MESHRAG_API_KEYS takes a JSON list of key entries
    (as `meshrag keys create --json` prints them) for containers that cannot mount a keys file."""

    model_config = SettingsConfigDict(env_prefix="MESHRAG_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8321, ge=0, le=65535)
    workers: int = Field(
        1, ge=1, le=64,
        description="Server processes on this host (`meshrag serve --workers N`). With more than one, per-caller "
        "state (web sessions, rate-limit counters) lives in the data dir's state database, or in PostgreSQL in "
        "shared mode, so every worker sees the same.",
    )
    api_keys_file: Path | None = None  # default: <data_dir>/api-keys.json
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)  # empty: CORS off
    release_manager_roles: list[str] = Field(
        default_factory=lambda: ["release-manager"],
        description="Roles any one of which lets a signed-in principal publish and roll back releases from the "
        "web page (MESHRAG_RELEASE_MANAGER_ROLES, a JSON list; empty: nobody may, use `meshrag releases`).",
    )

    # Per-caller limits (api/ratelimit.py): a caller is its API key, or its address without a valid key.
    rate_limit: bool = Field(
        True,
        description="Rate limits, daily quotas and the MCP concurrency bound. MESHRAG_RATE_LIMIT=off (or 0, "
        "false) turns all of them off, e.g. for load tests; /healthz, /readyz and /metrics are never limited.",
    )
    rate_limit_keyed_per_minute: float = Field(
        120, ge=0, description="Sustained requests per minute per API key (0: no rate limit for keys)."
    )
    rate_limit_keyed_burst: int = Field(
        120, ge=1, description="Requests an API key may send at once before the per-minute rate applies."
    )
    rate_limit_keyed_per_day: int = Field(0, ge=0, description="Requests per API key per UTC day (0: no quota).")
    rate_limit_anon_per_minute: float = Field(
        60, ge=0, description="Sustained requests per minute per anonymous address (0: no rate limit)."
    )
    rate_limit_anon_burst: int = Field(
        60, ge=1, description="Requests an anonymous address may send at once (an IPv6 address counts as its /64)."
    )
    rate_limit_anon_per_day: int = Field(
        10_000, ge=0, description="Requests per anonymous address per UTC day (0: no quota)."
    )
    rate_limit_mcp_concurrent: int = Field(
        8, ge=0, description="MCP requests one caller may have in flight at once, per worker (0: unbounded)."
    )

    def resolved_api_keys_file(self) -> Path:
        return (self.api_keys_file or self.resolved_data_dir() / "api-keys.json").expanduser().resolve()
