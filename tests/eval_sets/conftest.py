"""Fixtures for the eval harness: the retrieval tests' three-product mesh (public, internal, restricted),
indexed by the real pipeline with the hash embedder, and a small golden set written for it (some questions
with expected phrases and a short answer, two in the held-out split)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli.main import app
from eval_sets.harness import EvalRun
from indexing.releases import ReleaseRegistry
from tests.retrieval.conftest import INTERNAL, PUBLIC, RESTRICTED, SMALL_MESH, SmallMesh, write_product

GOLDEN: list[dict[str, Any]] = [
    {"id": "t-001", "kind": "factual", "question": "Who answers reader questions about a product, and how fast?",
     "answer": "The owner answers reader questions within two business days.",
     "gold": [{"product": PUBLIC, "document": "publishing.md",
               "quote": "The owner answers reader questions within two business days."}],
     "roles": ["analyst"], "products": [PUBLIC], "expected": ["within two business days"]},
    {"id": "t-002", "kind": "factual", "question": "The carrier missed the 17:00 pickup at the Reno warehouse. What now?",
     "answer": "Call the depot and rebook the pallet for the morning linehaul.",
     "gold": [{"product": INTERNAL, "document": "carrier-pickup.md",
               "quote": "call the depot and rebook the pallet for the morning linehaul"}],
     "roles": ["analyst"], "products": [INTERNAL], "expected": ["rebook the pallet"], "style": "paraphrase"},
    {"id": "t-003", "kind": "factual", "question": "What do I do when the conveyor label printer jams?",
     "answer": "Switch the line to the backup printer and reprint the wave.",
     "gold": [{"product": INTERNAL, "document": "label-printer.md",
               "quote": "switch the line to the backup printer and reprint the wave"}],
     "roles": ["analyst"], "products": [INTERNAL]},
    {"id": "t-004", "kind": "restricted", "question": "What is the quokka band midpoint for an L4 engineer?",
     "answer": "151,000 dollars.",
     "gold": [{"product": RESTRICTED, "document": "pay-bands.md",
               "quote": "The quokka band midpoint for an L4 engineer is 151,000 dollars."}],
     "roles": ["people-partner"], "products": [RESTRICTED], "expected": ["151,000 dollars"],
     "short": "151,000 dollars"},
    {"id": "t-005", "kind": "cross_domain",
     "question": "How often are sources reviewed, and what is a release made of?",
     "answer": "Sources are reviewed at least every ninety days; a release is an immutable set of embedding versions.",
     "gold": [{"product": PUBLIC, "document": "publishing.md",
               "quote": "Sources are reviewed at least every ninety days."},
              {"product": PUBLIC, "document": "glossary.md",
               "quote": "A release is an immutable set of embedding versions served together."}],
     "roles": ["analyst"], "products": [PUBLIC], "split": "heldout"},
    {"id": "t-006", "kind": "unanswerable", "question": "What interest rate do we pay on the revolving credit facility?",
     "answer": "", "gold": [], "roles": ["analyst"], "products": [], "split": "heldout", "style": "near_miss"},
    {"id": "t-007", "kind": "unanswerable", "question": "Which espresso grinder does the Berlin office use?",
     "answer": "", "gold": [], "roles": ["analyst"], "products": []},
]


@dataclass
class EvalMesh(SmallMesh):
    """The small mesh plus its golden set file."""

    golden: Path = Path()

    def run(self) -> EvalRun:
        return EvalRun.load([str(self.golden)])

    def registry(self) -> ReleaseRegistry:
        return ReleaseRegistry(self.data_dir)

    def drop_product(self, pid: str) -> str:
        """A release like the current one without `pid` (recorded, not published): a degraded release."""
        current = self.registry().current()
        assert current is not None
        products = {p: e for p, e in current.products.items() if p != pid}
        return self.registry().create(products, store=current.store, model_id=current.model_id,
                                      parent=current.id, notes={"degraded": f"without {pid}"}).id

    def cli(self, *args: str):
        runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", "MESHRAG_EMBEDDER": "hash",
                                "MESHRAG_MESH_ROOTS": json.dumps([str(self.root)])})
        return runner.invoke(app, [*args, "--data-dir", str(self.data_dir)])


@pytest.fixture
def eval_mesh(tmp_path: Path) -> EvalMesh:
    root = tmp_path / "mesh"
    for pid, spec in SMALL_MESH.items():
        write_product(root, pid, spec["classification"], spec["roles"], spec["docs"])
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(q) + "\n" for q in GOLDEN), encoding="utf-8")
    mesh = EvalMesh(root=root, data_dir=tmp_path / "data", golden=golden)
    report = mesh.index()
    assert report.published and not report.blocked, report.as_dict()
    return mesh
