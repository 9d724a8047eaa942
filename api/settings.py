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
    api_keys_file: Path | None = None  # default: <data_dir>/api-keys.json
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    max_question_chars: int = Field(2000, ge=1, le=100_000)
    max_products: int = Field(20, ge=1, le=1000)
    max_k: int = Field(50, ge=1, le=200)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)  # empty: CORS off

    def resolved_api_keys_file(self) -> Path:
        return (self.api_keys_file or self.resolved_data_dir() / "api-keys.json").expanduser().resolve()
