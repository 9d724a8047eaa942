"""Settings of the knowledge layer (environment prefix MESHRAG_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SAMPLE_MESH = Path(__file__).resolve().parent / "products"


class KnowledgeSettings(BaseSettings):
    """Where products live. `MESHRAG_MESH_ROOTS` takes a JSON list of folders."""

    model_config = SettingsConfigDict(env_prefix="MESHRAG_", extra="ignore")

    mesh_roots: list[Path] = Field(default_factory=lambda: [SAMPLE_MESH])
