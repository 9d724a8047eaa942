"""The golden set: questions with reference answers and gold evidence (format in eval_sets/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knowledge.errors import ConfigError

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
CATALOG_DOCUMENT = "_catalog"
Kind = Literal["factual", "discovery", "cross_domain", "restricted", "unanswerable", "version"]
# How a question was written: "original" (with the corpus open, the first golden set), "paraphrase"
# (worded as users talk, without the cited passage's distinctive words), "near_miss" (right entity, a
# fact the products do not state: the right behaviour is to abstain).
Style = Literal["original", "paraphrase", "near_miss"]
# What a question may be used for: "calibration" questions may choose thresholds; "heldout" questions
# are only reported on (nothing is fitted or chosen on them).
Split = Literal["calibration", "heldout"]


class Evidence(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product: str
    document: str
    quote: str | None = None


class GoldenQuestion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    question: str = Field(min_length=3)
    kind: Kind
    answer: str
    gold: tuple[Evidence, ...] = ()
    roles: tuple[str, ...] = ("analyst",)
    products: tuple[str, ...] = ()
    # Phrases of which at least one must appear in a correct answer (case and spacing ignored).
    expected: tuple[str, ...] = ()
    # The short answer when the question asks for a name, date, number, amount or place.
    short: str | None = None
    style: Style = "original"
    split: Split = "calibration"
    # Aggregation questions ("which products are stale?"): exactly the products the answer must name (by
    # id or title) for these roles, no other; [] = it must name none.
    expected_products: tuple[str, ...] | None = None
    # Version questions: the versions of the question's product (`products[0]`) the answer must cite,
    # every one of them and no other ("what changed between 1 and 2" cites both).
    versions: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"

    def gold_documents(self) -> set[str]:
        """Gold evidence as `product:document` ids (the unit retrieval metrics count)."""
        return {f"{e.product}:{e.document}" for e in self.gold}


def load_golden(paths: list[Path] | None = None) -> list[GoldenQuestion]:
    """Every question in the given JSONL files (default: all of eval_sets/golden/)."""
    files = paths or sorted(GOLDEN_DIR.glob("*.jsonl"))
    if not files:
        raise ConfigError(f"no golden set files found in {GOLDEN_DIR}")
    questions: list[GoldenQuestion] = []
    for path in files:
        for n, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                questions.append(GoldenQuestion.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise ConfigError(f"{path}:{n}: not a valid golden question: {exc}") from None
    return questions
