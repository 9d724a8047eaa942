"""The typed, validated view of a knowledge product that the rest of meshrag works with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

Classification = Literal["public", "internal", "confidential", "restricted"]
PiiPolicy = Literal["redact", "reject", "allow"]

CLASSIFICATIONS: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
PII_POLICIES: tuple[str, ...] = ("redact", "reject", "allow")

# File kinds the indexer can read; anything else in a source folder is ignored (and reported).
SOURCE_SUFFIXES: tuple[str, ...] = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".jsonl", ".csv")


@dataclass(frozen=True)
class TeamMember:
    username: str
    name: str
    role: str


@dataclass(frozen=True)
class KnowledgeProduct:
    """One knowledge product: its identity, contract terms and where its sources are."""

    id: str
    domain: str
    name: str
    title: str
    version: str
    status: str
    owner: TeamMember
    team: str
    members: tuple[TeamMember, ...]
    classification: Classification
    read_roles: tuple[str, ...]
    pii_policy: PiiPolicy
    freshness_sla: timedelta
    retention_sla: timedelta
    purpose: str
    usage: str
    limitations: str
    tags: tuple[str, ...]
    root: Path
    source_paths: tuple[Path, ...]
    declared_last_update: datetime | None = None
    # When this version of the product took effect (the contract's ODCS `contractCreatedTs`); None if undeclared.
    version_since: datetime | None = None
    descriptor_path: Path = field(default=Path())
    contract_path: Path = field(default=Path())
    # Roles that may see the product's catalog facts (id, title, purpose, owner, team, contact, classification,
    # freshness) without being able to read its content; "*" = every principal. Default: none (hidden).
    discoverable_by: tuple[str, ...] = ()
    # Set on the last valid version a catalog keeps serving while the product's files fail validation:
    # what is wrong, file by file, with the fix. None while the files are valid.
    problem: str | None = None

    def documents(self) -> list[Path]:
        """Every readable source file of the product, sorted, as absolute paths."""
        found: set[Path] = set()
        for src in self.source_paths:
            if src.is_file():
                found.add(src.resolve())
            elif src.is_dir():
                for p in src.rglob("*"):
                    if p.is_file() and p.suffix.lower() in SOURCE_SUFFIXES and not p.name.startswith("."):
                        found.add(p.resolve())
        return sorted(found)

    def document_id(self, path: Path) -> str:
        """The stable id of a source file: its path relative to the source root that holds it."""
        path = path.resolve()
        for src in self.source_paths:
            src = src.resolve()
            if src.is_file() and path == src:
                return src.name
            if src.is_dir() and path.is_relative_to(src):
                return path.relative_to(src).as_posix()
        raise ValueError(f"{path} is not a source of product {self.id}")


@dataclass(frozen=True)
class Principal:
    """Who is asking: an id and the roles it holds. Resolved by the caller (API keys, CLI flags)."""

    id: str
    roles: frozenset[str] = frozenset()

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(id="anonymous", roles=frozenset())

    def can_read(self, product: KnowledgeProduct) -> bool:
        """Public products are readable by anyone; every other class needs one of the contract's roles."""
        if product.classification == "public":
            return True
        return bool(self.roles & set(product.read_roles))

    def can_discover(self, product: KnowledgeProduct) -> bool:
        """May see the product's catalog facts: it can read it, or the contract makes the facts discoverable
        to one of its roles (or to everyone). Never the content: that is `can_read`."""
        if self.can_read(product):
            return True
        return "*" in product.discoverable_by or bool(self.roles & set(product.discoverable_by))
