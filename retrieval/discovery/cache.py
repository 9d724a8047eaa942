"""What is read once per loaded catalog: `CatalogFacts`, each product's fact sheet (knowledge.facts), its
linking vocabularies (word → field weight: all its metadata for a principal who may read it, its catalog
facts alone for one who may only discover it) and its kept older versions (`history/<version>/`).
`DiscoveryAnswerer.facts()` builds it anew only when the catalog object changes."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from knowledge.catalog import Catalog
from knowledge.errors import ContractError
from knowledge.facts import ProductFactSheet, read_facts
from knowledge.model import KnowledgeProduct
from knowledge.versions import kept_versions
from retrieval.discovery.words import _FUNCTION, _words

# Field weights of catalog linking: names (id, title, team, owner) say more than a tag, a tag more than
# a word of a purpose sentence.
NAME_WEIGHT, TAG_WEIGHT, TEXT_WEIGHT = 3.0, 2.0, 1.0


def _vocabulary(product: KnowledgeProduct, readable: bool) -> dict[str, float]:
    """word → field weight of one product's metadata; of a product the principal may only discover, its
    catalog facts alone (id, title, domain, purpose, owner, team)."""
    vocab: dict[str, float] = {}

    def add(text: str, weight: float) -> None:
        for w in _words(text):
            if w not in _FUNCTION and len(w) > 1:
                vocab[w] = max(vocab.get(w, 0.0), weight)

    add(product.purpose, TEXT_WEIGHT)
    add(product.domain, TEXT_WEIGHT)
    if readable:
        add(product.usage, TEXT_WEIGHT)
        add(product.limitations, TEXT_WEIGHT)
        for tag in product.tags:
            add(tag, TAG_WEIGHT)
    for name in (product.id, product.name, product.title, product.team):
        add(name, NAME_WEIGHT)
    return vocab


@dataclass(frozen=True)
class KeptVersions:
    """A product's kept older versions, oldest first, or why they cannot be read (a kept contract that
    does not parse: indexing refuses it too, so the answer says so rather than listing none)."""

    versions: tuple[str, ...] = ()
    problem: str | None = None

    @classmethod
    def of(cls, product: KnowledgeProduct) -> KeptVersions:
        try:
            return cls(tuple(p.version for p in kept_versions(product)))
        except ContractError as exc:  # told to readers: file names relative to the product folder, no server paths
            return cls(problem=str(exc).replace(f"{product.root}{os.sep}", ""))


@dataclass
class CatalogFacts:
    """The fact sheets and linking vocabularies of one loaded catalog (built once per catalog object)."""

    catalog: Catalog
    sheets: dict[str, ProductFactSheet]
    vocab_read: dict[str, dict[str, float]]
    vocab_facts: dict[str, dict[str, float]]
    kept: dict[str, KeptVersions]

    @classmethod
    def of(cls, catalog: Catalog, previous: CatalogFacts | None = None) -> CatalogFacts:
        """With `previous` (the facts of the catalog this one replaces), a product kept serving while its
        files fail validation keeps the fact sheet read while they were valid (its spans point at that text)."""
        products = list(catalog)
        sheets = {}
        for p in products:
            kept = previous.sheets.get(p.id) if previous is not None and p.problem is not None else None
            sheets[p.id] = replace(kept, product=p) if kept is not None and kept.product.version == p.version \
                else read_facts(p)
        return cls(catalog, sheets, {p.id: _vocabulary(p, True) for p in products},
                   {p.id: _vocabulary(p, False) for p in products}, {p.id: KeptVersions.of(p) for p in products})
