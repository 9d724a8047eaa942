"""The fitted answer model: how likely a candidate sentence answers a question, from transferable
features (`retrieval.answer.features`), and the thresholds that turn that into an outcome.

The artefact is one small JSON file (`models/answer-model.json`) written by
`python -m eval_sets.fit_answer_model`: a standardised logistic regression over named features, the
decision thresholds, and the record of how it was made (training data and their hashes, library
versions, held-out metrics). Its `sha256` is the hash of everything else in the file, checked on load;
its id (`answer-lr@<hash prefix>`) and thresholds go into every provenance record.

    p(sentence answers question) = σ(b + Σ w_i · (x_i − μ_i) / σ_i)
    answerability(question, hits) = max over candidate sentences of p
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import ConfigError
from retrieval.answer.features import FEATURE_NAMES, FEATURES_VERSION

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "answer-model.json"
FIT_COMMAND = "python -m eval_sets.fit_answer_model"


@dataclass(frozen=True)
class Thresholds:
    """answered ⇐ answerability ≥ answer; possibly relevant ⇐ below that but retrieval ≥ relevant;
    abstained otherwise. `sentence`: a further quoted sentence needs p ≥ this."""

    answer: float
    relevant: float
    sentence: float

    def as_dict(self) -> dict[str, float]:
        return {"answer": self.answer, "relevant": self.relevant, "sentence": self.sentence}


@dataclass(frozen=True)
class AnswerModel:
    id: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    thresholds: Thresholds
    record: Mapping[str, Any] = field(default_factory=dict)  # how it was made: data, versions, metrics

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """p for each row of the feature matrix `x` (columns in `self.features` order)."""
        if x.size == 0:
            return np.zeros(0)
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def content_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of the payload's canonical JSON (sorted keys, no whitespace), without its own `sha256`."""
    body = {k: v for k, v in payload.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def load_answer_model(path: Path | None = None) -> AnswerModel:
    """Read and check the artefact: present, intact (hash), made for these features; else a ConfigError
    that says how to rebuild it."""
    path = Path(path or DEFAULT_MODEL)
    if not path.is_file():
        raise ConfigError(f"answer model not found at {path}; build it with `{FIT_COMMAND}` "
                          "(needs ../shared/benchmarks/scifact)")
    try:
        payload = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"answer model {path} is not readable JSON ({exc}); rebuild it with `{FIT_COMMAND}`") \
            from None
    if not isinstance(payload, dict) or payload.get("sha256") != content_hash(payload):
        raise ConfigError(f"answer model {path} does not match its recorded sha256 (edited or damaged); "
                          f"rebuild it with `{FIT_COMMAND}` or restore it from git")
    if payload.get("features_version") != FEATURES_VERSION:
        raise ConfigError(f"answer model {path} was fitted on features {payload.get('features_version')!r} but "
                          f"this code computes {FEATURES_VERSION!r} (stale); refit with `{FIT_COMMAND}`")
    names = tuple(payload["features"])
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ConfigError(f"answer model {path} uses features this code does not compute: {unknown}; "
                          f"refit with `{FIT_COMMAND}`")
    lr = payload["logistic_regression"]
    coef, mean, scale = (np.asarray(lr[k], dtype=np.float64) for k in ("coef", "mean", "scale"))
    if not (len(coef) == len(mean) == len(scale) == len(names)) or not all(math.isfinite(v) for v in coef):
        raise ConfigError(f"answer model {path}: coefficients do not match its {len(names)} features; "
                          f"refit with `{FIT_COMMAND}`")
    t = payload["thresholds"]
    return AnswerModel(id=f"answer-lr@{payload['sha256'][:12]}", features=names, mean=mean, scale=scale,
                       coef=coef, intercept=float(lr["intercept"]),
                       thresholds=Thresholds(float(t["answer"]), float(t["relevant"]), float(t["sentence"])),
                       record={k: payload[k] for k in ("data", "metrics", "libraries", "created_by") if k in payload})
