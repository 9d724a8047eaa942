"""Linking a product by meaning, when no word of the question is in any catalog field: "who maintains the
helpdesk playbook" means the Support Knowledge Base although neither "helpdesk" nor "playbook" is in its
metadata. `ProductCards` embeds each product's catalog card once per catalog object (the embedder's document
side) and ranks the visible products by cosine to the question (its query vector, which retrieval has
already computed and the embedder's LRU returns); `meaning_link` takes the best only when it is clearly the
best.

A card holds what the principal may see: title, purpose, usage and tags of a product it may read; title and
purpose alone of one it may only discover (both are among the discoverable catalog facts). A product it may
neither read nor discover is not ranked at all.

The two bounds were chosen on the development sets (eval_sets/dev/discovery_dev*.jsonl, questions that
name a product by another word, and near misses about products the catalog does not have) and never on the
golden set: a cosine of at least MIN_COSINE, and at least MIN_MARGIN above the second product. MiniLM's
cosines between a question and a catalog card are low (0.1–0.5); the margin is what keeps a question about a
product we do not have ("who owns the wholesale pricing dataset") from being pinned on the nearest one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from knowledge.catalog import Catalog
from knowledge.model import KnowledgeProduct, Principal

MIN_COSINE = 0.24
MIN_MARGIN = 0.05


def card(product: KnowledgeProduct, readable: bool) -> str:
    """The catalog text a product is linked by meaning through: of a product the principal may only
    discover, its title and purpose alone."""
    parts = [product.title, product.purpose, *([product.usage, ", ".join(product.tags)] if readable else [])]
    return ". ".join(p for p in parts if p)


class ProductCards:
    """Card vectors of one catalog's products (both cards of each), built on first use per catalog object."""

    def __init__(self, embed_documents: Callable[[Sequence[str]], np.ndarray],
                 embed_query: Callable[[str], np.ndarray]) -> None:
        self._embed_documents = embed_documents
        self._embed_query = embed_query
        self._cached: tuple[Catalog, dict[tuple[str, bool], np.ndarray]] | None = None
        self._lock = threading.Lock()

    def vectors(self, catalog: Catalog) -> dict[tuple[str, bool], np.ndarray]:
        cached = self._cached
        if cached is None or cached[0] is not catalog:
            with self._lock:
                if self._cached is None or self._cached[0] is not catalog:
                    keys = [(p.id, readable) for p in catalog for readable in (True, False)]
                    texts = [card(catalog.products[pid], readable) for pid, readable in keys]
                    vectors = np.asarray(self._embed_documents(texts), dtype=np.float32)
                    self._cached = (catalog, dict(zip(keys, vectors, strict=True)))
                cached = self._cached
        return cached[1]

    def ranking(self, question: str, visible: Sequence[KnowledgeProduct], principal: Principal,
                catalog: Catalog) -> list[tuple[float, str]]:
        """(cosine, product id) of every visible product, best first."""
        if not visible:
            return []
        vectors = self.vectors(catalog)
        q = np.asarray(self._embed_query(question), dtype=np.float32)
        scored = [(float(vectors[(p.id, principal.can_read(p))] @ q), p.id) for p in visible]
        return sorted(scored, key=lambda sp: (-sp[0], sp[1]))


def meaning_link(ranking: Sequence[tuple[float, str]]) -> str | None:
    """The product a question means by its topic, when one card is clearly nearest; else None."""
    if not ranking:
        return None
    best, pid = ranking[0]
    runner_up = ranking[1][0] if len(ranking) > 1 else 0.0
    return pid if best >= MIN_COSINE and best - runner_up >= MIN_MARGIN else None
