"""Eval gates: thresholds (eval_sets/thresholds.yaml) a report must meet, and regressions against the
release currently served that a candidate must not show before it is published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from eval_sets.harness import EvalHarness, EvalRun
from eval_sets.report import SUMMARY_METRICS, EvalReport, Value, fmt, is_worse
from knowledge.errors import ConfigError
from retrieval.settings import RetrievalSettings

THRESHOLDS_FILE = Path(__file__).resolve().parent / "thresholds.yaml"
ALL_PRODUCTS = "*"
GATED_METRICS = frozenset(SUMMARY_METRICS)


def _known(bounds: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(bounds) - GATED_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(GATED_METRICS))}")
    return bounds


MetricMap = Annotated[dict[str, float], AfterValidator(_known)]


class Bounds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min: MetricMap = Field(default_factory=dict)
    max: MetricMap = Field(default_factory=dict)

    def merged(self, override: Bounds | None) -> Bounds:
        if override is None:
            return self
        return Bounds(min=self.min | override.min, max=self.max | override.max)


class Regression(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    overall: MetricMap = Field(default_factory=dict)
    per_product: MetricMap = Field(default_factory=dict)


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    overall: Bounds = Bounds()
    per_product: dict[str, Bounds] = Field(default_factory=dict)
    regression: Regression = Regression()

    def for_product(self, pid: str) -> Bounds:
        return self.per_product.get(ALL_PRODUCTS, Bounds()).merged(self.per_product.get(pid))


def load_thresholds(path: Path | None = None) -> Thresholds:
    """The thresholds file (default: eval_sets/thresholds.yaml), validated."""
    path = Path(path) if path is not None else THRESHOLDS_FILE
    try:
        data = yaml.safe_load(path.read_text("utf-8")) or {}
        return Thresholds.model_validate(data)
    except FileNotFoundError:
        raise ConfigError(f"no thresholds file at {path}") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a valid thresholds file: {exc}") from None


@dataclass(frozen=True)
class GateFailure:
    """One metric on the wrong side of its bound (or fallen too far since the current release)."""

    scope: str  # "overall" or a product id
    metric: str
    value: Value
    bound: float
    kind: Literal["min", "max", "regression"]
    previous: Value = None  # regression: the current release's value

    def message(self) -> str:
        where = "overall" if self.scope == "overall" else f"product {self.scope}"
        if self.kind == "regression":
            return (f"{self.metric} ({where}) regressed from {fmt(self.metric, self.previous)} to "
                    f"{fmt(self.metric, self.value)}, beyond the tolerance {self.bound:g}")
        op = "<" if self.kind == "min" else ">"
        return f"{self.metric} ({where}) = {fmt(self.metric, self.value)} {op} {self.kind} {self.bound:g}"

    def as_dict(self) -> dict[str, object]:
        return {"scope": self.scope, "metric": self.metric, "value": self.value, "bound": self.bound,
                "kind": self.kind, "previous": self.previous, "message": self.message()}


@dataclass(frozen=True)
class GateResult:
    failures: tuple[GateFailure, ...]
    not_measured: tuple[str, ...]  # "scope:metric" with a bound but no value on these golden sets

    @property
    def passed(self) -> bool:
        return not self.failures


def _check(scope: str, row: dict[str, Value], bounds: Bounds,
           failures: list[GateFailure], not_measured: list[str]) -> None:
    for kind, limits in (("min", bounds.min), ("max", bounds.max)):
        for metric, bound in limits.items():
            value = row.get(metric)
            if value is None:
                not_measured.append(f"{scope}:{metric}")
            elif (kind == "min" and value < bound) or (kind == "max" and value > bound):
                failures.append(GateFailure(scope, metric, value, bound, kind))  # type: ignore[arg-type]


def check_gate(report: EvalReport, thresholds: Thresholds) -> GateResult:
    """Every bound the report breaks, overall and per product."""
    failures: list[GateFailure] = []
    not_measured: list[str] = []
    _check("overall", report.overall, thresholds.overall, failures, not_measured)
    for pid, row in report.per_product.items():
        _check(pid, row, thresholds.for_product(pid), failures, not_measured)
    return GateResult(tuple(failures), tuple(not_measured))


def _fell(scope: str, new: dict[str, Value], old: dict[str, Value], tolerances: dict[str, float],
          failures: list[GateFailure]) -> None:
    for metric, tolerance in tolerances.items():
        a, b = new.get(metric), old.get(metric)
        if a is None or b is None:
            continue
        change = a - b
        if is_worse(metric, change) and abs(change) > tolerance + 1e-9:
            failures.append(GateFailure(scope, metric, a, tolerance, "regression", previous=b))


def check_regression(candidate: EvalReport, current: EvalReport, thresholds: Thresholds) -> GateResult:
    """Metrics in which `candidate` is worse than `current` by more than the tolerance."""
    failures: list[GateFailure] = []
    _fell("overall", candidate.overall, current.overall, thresholds.regression.overall, failures)
    for pid, old in current.per_product.items():
        _fell(pid, candidate.per_product.get(pid, {}), old, thresholds.regression.per_product, failures)
    return GateResult(tuple(failures), ())


def combine(results: Sequence[GateResult]) -> GateResult:
    return GateResult(tuple(f for r in results for f in r.failures),
                      tuple(dict.fromkeys(m for r in results for m in r.not_measured)))


@dataclass(frozen=True)
class PublishCheck:
    """The evaluation of a candidate release (compared with the current one, when there is one) and
    what stands in the way of publishing it."""

    report: EvalReport  # the candidate's, with the current release's as `compare`
    gate: GateResult
    regression: GateResult
    current_id: str | None

    @property
    def passed(self) -> bool:
        return self.gate.passed and self.regression.passed

    @property
    def failures(self) -> tuple[GateFailure, ...]:
        return self.gate.failures + self.regression.failures


def check_publish(settings: RetrievalSettings, release: str, thresholds: Thresholds,
                  run: EvalRun | None = None) -> PublishCheck:
    """Evaluate `release` and the current release (if another one) on the golden sets; the candidate
    passes when it meets the thresholds and no metric fell beyond its regression tolerance."""
    run = run or EvalRun.load()
    with EvalHarness(settings) as harness:
        candidate = harness.evaluate(run, release)
        current_id = harness.service.context.releases.current_id()
        regression = GateResult((), ())
        if current_id is not None and current_id != candidate.release_id:
            current = harness.evaluate(run, current_id)
            candidate = candidate.with_comparison(current)
            regression = check_regression(candidate, current, thresholds)
    return PublishCheck(candidate, check_gate(candidate, thresholds), regression, current_id)
