"""The optional rerank step: a CrossEncoder scores each (query, chunk) pair of the fused list's head."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from knowledge.errors import ConfigError


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder scoring (query, chunk) pairs; loaded in warm_up()."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._encoder: Any = None

    @property
    def model_id(self) -> str:
        return self.model

    def warm_up(self) -> None:
        if self._encoder is not None:
            return
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import CrossEncoder

        try:
            self._encoder = CrossEncoder(self.model, device=self.device)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load reranker {self.model!r} ({exc}); set MESHRAG_RERANKER_MODEL to a "
                              "local sentence-transformers CrossEncoder folder, or unset it") from exc

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if self._encoder is None:
            raise RuntimeError("CrossEncoderReranker is not warmed up: call warm_up() first")
        if not texts:
            return []
        scores = self._encoder.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                       convert_to_numpy=True, show_progress_bar=False)
        return [float(s) for s in scores.reshape(len(texts), -1)[:, -1]]
