from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from knowledge.settings import SAMPLE_MESH

TEMPLATE = SAMPLE_MESH / "platform" / "mesh-handbook"


def write_product(root: Path, domain: str = "sales", name: str = "playbooks",
                  edit: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
                  docs: dict[str, str] | None = None) -> Path:
    """A product folder built from the sample handbook's YAML, renamed, optionally edited."""
    folder = root / domain / name
    (folder / "docs").mkdir(parents=True)
    descriptor = yaml.safe_load((TEMPLATE / "product.yaml").read_text())
    contract = yaml.safe_load((TEMPLATE / "contract.yaml").read_text())
    pid = f"{domain}.{name}"
    for d in (descriptor, contract):
        d["id"], d["domain"] = pid, domain
    descriptor["inputPorts"][0]["contractId"] = pid
    descriptor["outputPorts"][0]["contractId"] = pid
    contract["dataProduct"] = name
    if edit:
        edit(descriptor, contract)
    (folder / "product.yaml").write_text(yaml.safe_dump(descriptor, sort_keys=False))
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    for rel, text in (docs or {"guide.md": "# Guide\n\nHow we sell.\n"}).items():
        (folder / "docs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "docs" / rel).write_text(text)
    return folder


@pytest.fixture
def product_factory(tmp_path: Path):
    def make(**kwargs: Any) -> Path:
        return write_product(tmp_path / "mesh", **kwargs)
    return make


@pytest.fixture
def mesh_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled sample mesh."""
    dest = tmp_path / "sample"
    shutil.copytree(SAMPLE_MESH, dest)
    return dest
