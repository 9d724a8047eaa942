"""Settings of the indexing layer (environment prefix MESHRAG_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from knowledge.settings import SAMPLE_MESH


class IndexSettings(BaseSettings):
    """Where indexes live and how they are built. Every field can be set as MESHRAG_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="MESHRAG_", extra="ignore")

    data_dir: Path = Path(".meshrag")
    mesh_roots: list[Path] = Field(default_factory=lambda: [SAMPLE_MESH])
    store: Literal["faiss", "pgvector"] = "faiss"
    dsn: str | None = None
    pg_schema: str = "meshrag"
    embedder: str = "minilm"
    chunk_max_tokens: int = Field(200, ge=32, le=2000)
    chunk_overlap_tokens: int = Field(40, ge=0, le=500)
    embed_batch_size: int = Field(64, ge=1, le=4096)
    # The embedding cache may be shared between data directories (same model → same vectors).
    cache_dir: Path | None = None

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def resolved_cache_dir(self) -> Path:
        return (self.cache_dir or self.data_dir / "cache").expanduser().resolve()
