"""`meshrag products scaffold`: a new product folder whose contract the owner then completes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from knowledge.contracts import CONTRACT_FILE, DESCRIPTOR_FILE, ID_PART
from knowledge.errors import ConfigError
from knowledge.model import SOURCE_SUFFIXES

TODO = "TODO"


def scaffold_product(root: Path, domain: str, name: str, source: Path) -> Path:
    """Create `root/domain/name/` with an ODPS descriptor, an ODCS contract whose owner, team,
    classification, roles and purpose are TODO markers (validation fails until they are filled in),
    and `docs/` holding a copy of the readable files under `source`. `domain` and `name` must be plain
    id parts, so the folder is always inside `root`."""
    for what, value in (("domain", domain), ("product name", name)):
        if not ID_PART.fullmatch(value):
            raise ConfigError(f"{what} {value!r} is not a valid id part; use lower-case letters, digits and "
                              "dashes, starting with a letter")
    target = Path(root) / domain / name
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another product name or remove the folder")
    source = Path(source)
    if not source.exists():
        raise ConfigError(f"--from {source} does not exist; pass the folder (or file) holding the documents")
    files = [source] if source.is_file() else sorted(
        p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SOURCE_SUFFIXES)
    if not files:
        raise ConfigError(f"no readable documents under {source} (looked for {', '.join(SOURCE_SUFFIXES)})")

    product_id = f"{domain}.{name}"
    docs = target / "docs"
    docs.mkdir(parents=True)
    for f in files:
        dest = docs / (f.name if source.is_file() else f.relative_to(source))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)

    description = {"purpose": f"{TODO}: what this product is for and who uses it",
                   "usage": f"{TODO}: how to use it", "limitations": f"{TODO}: what it does not cover"}
    team = {"name": f"{TODO}: owning team",
            "members": [{"username": f"{TODO}-owner-username", "name": f"{TODO}: owner name", "role": "owner"}]}
    descriptor = {
        "apiVersion": "v1.0.0", "kind": "DataProduct", "id": product_id, "name": name.replace("-", " ").title(),
        "version": "0.1.0", "status": "draft", "domain": domain, "description": description,
        "inputPorts": [{"name": "documents", "version": "0.1.0", "contractId": product_id,
                        "customProperties": [{"property": "path", "value": "docs"}]}],
        "team": team,
    }
    contract = {
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": product_id, "name": descriptor["name"],
        "version": "0.1.0", "status": "draft", "domain": domain, "dataProduct": name,
        "description": description, "team": team,
        "roles": [{"role": f"{TODO}-role", "access": "read", "description": "who may read the product"}],
        "slaProperties": [{"property": "freshness", "value": 30, "unit": "d"},
                          {"property": "retention", "value": 3, "unit": "y"}],
        "tags": [],
        "customProperties": [{"property": "classification", "value": f"{TODO}: public|internal|confidential|restricted"},
                             {"property": "piiPolicy", "value": "redact"}],
    }
    for fname, data in ((DESCRIPTOR_FILE, descriptor), (CONTRACT_FILE, contract)):
        (target / fname).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), "utf-8")
    return target
