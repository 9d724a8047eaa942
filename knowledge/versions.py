"""Kept versions of a product: `history/<version>/` folders beside the current sources.

A kept version holds exactly the files kept for it (`history/<version>/docs/`, else the folder itself):
a snapshot of what changed, not a copy of every source. Its contract facts are the current contract's
with `version` set to the folder name and no `limitations` (the current ones describe the current version),
unless the folder carries its own `contract.yaml`, whose `version`, `contractCreatedTs` and `description`
then apply. A folder whose name is no version, or is the
current version, is not a kept version.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import yaml

from knowledge.contracts import CONTRACT_FILE, _parse_time
from knowledge.errors import ContractError
from knowledge.model import KnowledgeProduct

HISTORY_DIR = "history"
VERSION_NAME = re.compile(r"^v?\d+(\.\d+){0,2}([-+][0-9A-Za-z.\-]+)?$")


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """Sort key of a version string: its numbers (1.10.0 after 1.9.0), then the rest."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version.split("-")[0].split("+")[0]))
    return numbers, version


def kept_versions(product: KnowledgeProduct) -> tuple[KnowledgeProduct, ...]:
    """Each kept older version of `product` as a product of its own (same id, its own version and
    sources), oldest first. Raises ContractError naming the file when a kept contract does not parse."""
    history = product.root / HISTORY_DIR
    if not history.is_dir():
        return ()
    out = []
    for folder in sorted(history.iterdir()):
        if not folder.is_dir() or not VERSION_NAME.match(folder.name) or folder.name == product.version:
            continue
        kept = _kept(product, folder)
        if kept is not None and kept.documents():
            out.append(kept)
    return tuple(sorted(out, key=lambda p: version_key(p.version)))


def _kept(product: KnowledgeProduct, folder: Path) -> KnowledgeProduct | None:
    docs = folder / "docs"
    source = docs if docs.is_dir() else folder
    version, since = folder.name.removeprefix("v"), None
    description: dict = {}
    contract = folder / CONTRACT_FILE
    if contract.is_file():
        try:
            data = yaml.safe_load(contract.read_text("utf-8")) or {}
            version = str(data.get("version") or version)
            since = _parse_time(data["contractCreatedTs"]) if data.get("contractCreatedTs") else None
        except (yaml.YAMLError, TypeError, ValueError) as exc:
            raise ContractError(f"{contract}: the kept version's contract does not parse ({exc}); fix it or "
                                "remove it (the current contract's facts then apply)") from exc
        description = data.get("description") if isinstance(data.get("description"), dict) else {}
    if version == product.version:
        return None
    return replace(product, version=version, version_since=since, source_paths=(source.resolve(),),
                   purpose=str(description.get("purpose") or product.purpose),
                   usage=str(description.get("usage") or product.usage),
                   limitations=str(description.get("limitations") or ""),
                   contract_path=contract if contract.is_file() else product.contract_path)
