"""Eval results per release: what `meshrag eval` last measured for a release, kept beside the release
records so that readers of a product (the catalog's product page) see how the release serving it did.

    evals/<release-id>.json   the latest evaluation of that release, replaced atomically

Only the aggregates are kept (overall and per product), not the per-question rows: a product's row is
what its readers may see, and the full report is what `meshrag eval --json` writes for the operator.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexing.atomic import write_json_atomic
from knowledge.errors import ConfigError

FORMAT = 1
_RELEASE_ID = re.compile(r"^rel-[0-9a-f]{1,64}$")
Metrics = dict[str, float | int | None]


@dataclass(frozen=True)
class ReleaseEval:
    """One evaluation of one release: its golden sets and the metrics, overall and per product."""

    release_id: str
    recorded_at: str  # UTC, ISO 8601
    sets: tuple[str, ...]
    sets_digest: str
    overall: Metrics
    per_product: dict[str, Metrics]
    settings: dict[str, Any] = field(default_factory=dict)

    def product(self, product_id: str) -> Metrics | None:
        """The metrics of the questions about `product_id`, if the sets had any."""
        return self.per_product.get(product_id)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "release_id": self.release_id, "recorded_at": self.recorded_at,
                "sets": list(self.sets), "sets_digest": self.sets_digest, "overall": self.overall,
                "per_product": self.per_product, "settings": self.settings}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseEval:
        return cls(release_id=data["release_id"], recorded_at=data["recorded_at"], sets=tuple(data["sets"]),
                   sets_digest=data["sets_digest"], overall=dict(data["overall"]),
                   per_product={p: dict(m) for p, m in data["per_product"].items()},
                   settings=dict(data.get("settings", {})))


class ReleaseEvalStore:
    """The eval results of a data directory's releases, one file per release."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "evals"

    def _path(self, release_id: str) -> Path:
        if not _RELEASE_ID.match(release_id):
            raise ConfigError(f"{release_id!r} is not a release id (rel-<hex>); evaluate a release, "
                              "then save its report under the id the evaluation resolved")
        return self.dir / f"{release_id}.json"

    def save(self, result: ReleaseEval) -> Path:
        """Record `result` as the release's latest evaluation (write beside, then rename)."""
        path = self._path(result.release_id)
        write_json_atomic(path, result.as_dict())
        return path

    def get(self, release_id: str) -> ReleaseEval | None:
        """The release's latest evaluation; None when none was recorded (or the id is not a release id)."""
        if not _RELEASE_ID.match(release_id):
            return None
        path = self._path(release_id)
        if not path.is_file():
            return None
        data = json.loads(path.read_text("utf-8"))
        if data.get("format", FORMAT) > FORMAT:
            raise ConfigError(f"{path} was written by a newer meshrag (format {data['format']}); upgrade "
                              "meshrag, or run `meshrag eval` again to record it in this format")
        return ReleaseEval.from_dict(data)
