"""MiniLM as an ONNX graph for the query path: exported once from the loaded torch model, verified
against it, cached on disk.

- The graph takes `input_ids` and `attention_mask` (int64, batch x sequence) and returns `embedding`:
  mean pooling over the mask and L2 normalisation included, so it equals sentence-transformers'
  normalised embedding. Exported with `torch.onnx.export` (the TorchScript exporter: the dynamo one
  needs onnxscript, which is not installed) and eager attention, which gives the smaller graph.
- The file lives in `<cache_dir>/onnx/`; its name holds the weights digest, `EXPORT_VERSION` and the
  torch, onnx and onnxruntime versions, so a stale export is never reused. A JSON manifest beside it
  records the file's sha256: a truncated or altered file is detected and exported again. Both are
  written to a temporary name and renamed, so a concurrent process never reads half a file (and the
  export is byte-identical for the same versions, so two processes exporting at once agree).
- Every export and every load of a cached export is checked against the torch model on `PROBES` (one
  text at a time, as queries are encoded, and the shorter ones as one padded batch): each cosine must
  reach `MIN_COSINE`, otherwise `OnnxUnavailable` says why and the caller keeps torch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_VERSION = "v1"  # bump when the exported graph (wrapper, opset, attention) changes
OPSET = 17
MIN_COSINE = 0.9999

_SENTENCE = "The mitochondrial membrane potential regulates apoptosis in cortical neurons after ischemia."
PROBES: tuple[str, ...] = (
    "",
    " ",
    "?",
    "hello",
    "How do I pause my coffee subscription?",
    "0-dimensional biomaterials lack inductive properties.",
    "what is the refund policy for annual plans",
    "BRCA1 mutations increase the risk of breast cancer by 45-65% by age 70.",
    "Net revenue by month, Q3 2024 (EUR), excluding VAT & returns",
    "SELECT id, name FROM users WHERE created_at > '2024-01-01';",
    "Zürich Straße café naïve résumé façade — déjà vu",
    "Как приостановить подписку на кофе?",
    "東京の天気はどうですか。明日は雨が降りますか？",
    "كيف يمكنني إيقاف اشتراكي مؤقتا؟",
    "emoji 🚀🔥 and symbols ©®™ ± µ ∑ √",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "line one\nline two\ttabbed\n\n  indented line three",
    "UPPER CASE QUERY ABOUT FORKLIFT BATTERY CHARGING SCHEDULES IN RENO",
    " ".join([_SENTENCE] * 14),  # a little under 256 word pieces
    " ".join([_SENTENCE] * 30),  # far over: truncated to 256
)


class OnnxUnavailable(Exception):
    """The ONNX encoder cannot be used; the message says why (the caller falls back to torch).
    `min_cosine` is set when an export loaded but did not match torch closely enough."""

    def __init__(self, reason: str, min_cosine: float | None = None) -> None:
        super().__init__(reason)
        self.min_cosine = min_cosine


@dataclass(frozen=True)
class OnnxExport:
    """What the manifest beside an exported file records."""

    file: str
    sha256: str
    weights_digest: str
    export_version: str
    opset: int
    torch: str
    onnx: str
    onnxruntime: str
    min_cosine: float


def _versions() -> dict[str, str]:
    try:
        import onnx
        import onnxruntime
        import torch
    except ImportError as exc:
        raise OnnxUnavailable(f"{exc.name} is not installed") from exc

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_path(cache_dir: Path, weights_digest: str) -> Path:
    """Where the export of these weights by these library versions lives."""
    v = _versions()
    name = (f"all-MiniLM-L6-v2-{weights_digest}-{EXPORT_VERSION}-torch{v['torch']}-onnx{v['onnx']}"
            f"-ort{v['onnxruntime']}.onnx")
    return cache_dir / "onnx" / re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# ------------------------------------------------------------------------------------------ encoder


class OnnxQueryEncoder:
    """onnxruntime CPU sessions over an exported file. `encode` may be called from many threads:
    `InferenceSession.run` is thread-safe, and the tokenizer is configured once and only read after.

    `threads` > 1 opens two sessions: a query that arrives while no other is being encoded runs on
    `threads` intra-op threads (a lone question on an idle 2-core machine: 4.6 vs 6.3 ms), one that
    arrives while others run gets a single thread, so concurrent queries run side by side instead of
    fighting over one pool. Their vectors are identical (MLAS splits a matrix product by output
    columns, not along the sums): verification checks both against torch. The multi-thread pool does
    not spin between queries, so it costs nothing while the server is idle or busy elsewhere.
    """

    def __init__(self, path: Path, tokenizer: Any, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        self.path = path
        self.threads = threads
        self._tokenizer = tokenizer  # a `tokenizers.Tokenizer` truncating at max_seq_length, no padding
        self._single = _session(path, 1)
        self._lone = _session(path, threads) if threads > 1 else None
        self._count = threading.Lock()
        self._running = 0
        self.lone_queries = 0  # encoded on the multi-thread session (for /readyz)

    @property
    def sessions(self) -> tuple[str, ...]:
        return ("single", "lone") if self._lone is not None else ("single",)

    def word_pieces(self, text: str) -> int:
        """Word pieces the model sees for `text` (special tokens included, truncated)."""
        return len(self._tokenizer.encode(text).ids)

    def encode(self, text: str, session: str | None = None) -> np.ndarray:
        """The unit vector of one text (float32, 1-D). `session` ("single" or "lone") forces one, for
        verification; by default the lone session when nothing else is being encoded."""
        encoding = self._tokenizer.encode(text)
        feed = {"input_ids": np.asarray([encoding.ids], dtype=np.int64),
                "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64)}
        if session is not None:
            chosen = self._lone if session == "lone" and self._lone is not None else self._single
            return chosen.run(["embedding"], feed)[0][0]
        with self._count:
            alone = self._running == 0 and self._lone is not None
            self._running += 1
            self.lone_queries += alone
        try:
            return (self._lone if alone else self._single).run(["embedding"], feed)[0][0]  # type: ignore[union-attr]
        finally:
            with self._count:
                self._running -= 1

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of several texts as one padded batch (float32, one row per text)."""
        encodings = self._tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = encoding.attention_mask
        return self._single.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if threads > 1:
        # Idle pool threads sleep instead of spinning: spinning bought 0.3 ms per query on an idle
        # machine and steals a core from everything else on a busy one.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------ export


def _export_graph(st_model: Any, path: Path) -> None:
    """Write the pooled, normalised graph of a loaded SentenceTransformer to `path`."""
    import torch

    # A copy: the served model keeps its own attention implementation.
    bert = copy.deepcopy(st_model[0].auto_model).eval()
    bert.set_attn_implementation("eager")

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    # Traced with a padded row: a mask of all ones could let transformers drop the mask from the trace.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.int64)
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
               "embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings
        torch.onnx.export(Pooled().eval(), (ids, mask), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes=dynamic, do_constant_folding=True)


def torch_probe_vectors(st_model: Any) -> np.ndarray:
    """The torch model's normalised vectors of `PROBES` (small batches: little padding)."""
    return np.asarray(st_model.encode(list(PROBES), batch_size=4, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)


def _cosines(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    a, b = ours.astype(np.float64), reference.astype(np.float64)
    cosines = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.nan_to_num(cosines, nan=-1.0)


def min_probe_cosine(encoder: OnnxQueryEncoder, reference: np.ndarray) -> float:
    """The smallest cosine between `reference` (torch vectors of `PROBES`) and the encoder's vectors of
    the probes one at a time, as queries are encoded (on each session), and of the shorter probes as
    one padded batch, which checks the masking (the long ones would only make that batch slow)."""
    cosines = [float(_cosines(np.stack([encoder.encode(text, session) for text in PROBES]), reference).min())
               for session in encoder.sessions]
    short = [i for i, text in enumerate(PROBES) if encoder.word_pieces(text) <= 64]
    batched = encoder.encode_batch([PROBES[i] for i in short])
    return min(*cosines, float(_cosines(batched, reference[short]).min()))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class OnnxLoad:
    """How `load_or_export` obtained its encoder."""

    path: Path
    min_cosine: float
    exported: bool  # False: a cached export was reused
    seconds: float
    replaced_reason: str = ""  # why a cached export was not reused, if one was there


def _verified(path: Path, tokenizer: Any, threads: int, reference: np.ndarray, what: str
              ) -> tuple[OnnxQueryEncoder, float]:
    """A session over `path` whose probe vectors match `reference`, else OnnxUnavailable naming `what`."""
    try:
        encoder = OnnxQueryEncoder(path, tokenizer, threads)
        cosine = min_probe_cosine(encoder, reference)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise OnnxUnavailable(f"onnxruntime cannot load or run {what} ({type(exc).__name__}: {exc})") from exc
    if not cosine >= MIN_COSINE:
        raise OnnxUnavailable(f"{what}: min cosine to torch on the probes is {cosine:.6f} < {MIN_COSINE}",
                              cosine)
    return encoder, cosine


def _check_cached(path: Path, tokenizer: Any, threads: int, reference: np.ndarray
                  ) -> tuple[OnnxQueryEncoder, float]:
    manifest = _manifest_path(path)
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        intact = isinstance(recorded, dict) and recorded.get("sha256") == _sha256(path)
    except (OSError, ValueError) as exc:
        raise OnnxUnavailable(f"it or its manifest {manifest.name} is unreadable ({exc})") from exc
    if not intact:
        raise OnnxUnavailable("its sha256 differs from the manifest's (truncated or altered file)")
    return _verified(path, tokenizer, threads, reference, "the cached export")


def load_or_export(st_model: Any, tokenizer: Any, cache_dir: Path, weights_digest: str,
                   threads: int = 1) -> tuple[OnnxQueryEncoder, OnnxLoad]:
    """A verified encoder for `st_model` (a loaded all-MiniLM-L6-v2 SentenceTransformer): the cached
    export when it is intact and verifies, else a fresh export, verified before it replaces the file.
    Raises OnnxUnavailable, with the reason, when no export verifies."""
    t0 = time.perf_counter()
    path = export_path(cache_dir, weights_digest)
    reference: np.ndarray | None = None
    replaced = ""
    if path.is_file():
        reference = torch_probe_vectors(st_model)
        try:
            encoder, cosine = _check_cached(path, tokenizer, threads, reference)
            return encoder, OnnxLoad(path, cosine, exported=False, seconds=time.perf_counter() - t0)
        except OnnxUnavailable as exc:
            replaced = f"cached export {path} not reused: {exc}"

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", suffix=".onnx", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OnnxUnavailable(f"cannot write to {path.parent} ({exc})") from exc
    tmp = Path(tmp_name)
    try:
        if reference is None:
            reference = torch_probe_vectors(st_model)
        try:
            _export_graph(st_model, tmp)
        except Exception as exc:  # torch's exporter fails in many ways; the reason is what matters
            raise OnnxUnavailable(f"torch.onnx.export failed ({type(exc).__name__}: {exc})") from exc
        encoder, cosine = _verified(tmp, tokenizer, threads, reference, "the fresh export")
        record = OnnxExport(file=path.name, sha256=_sha256(tmp), weights_digest=weights_digest,
                            export_version=EXPORT_VERSION, opset=OPSET, min_cosine=round(cosine, 7),
                            **_versions())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # onnxruntime read the whole file when it created the session
        _write_json(_manifest_path(path), asdict(record))
    except OSError as exc:
        raise OnnxUnavailable(f"cannot write the export to {path.parent} ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    encoder.path = path
    return encoder, OnnxLoad(path, cosine, exported=True, seconds=time.perf_counter() - t0,
                             replaced_reason=replaced)
