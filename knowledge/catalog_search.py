"""Catalog search: one rule for every entry point (REST `GET /v1/catalog?q=`, MCP `search_catalog`, the
web page). A product matches when at least one of the query's words (question words and a few function
words dropped) is in its catalog metadata; products are ranked by how many distinct words match, then by
id. A word also matches longer words it starts ("revenue" matches "revenues")."""

from __future__ import annotations

import re
from collections.abc import Iterable

from knowledge.model import KnowledgeProduct, Principal

# Closed-class words of questions (interrogatives, auxiliaries, pronouns, determiners) that Lucene's
# 33-word stoplist keeps. Left in a BM25 query they match FAQ and runbook chunks phrased as questions
# ("How do I…", "What does…") rather than the answer; removed from the keyword query only.
QUESTION_WORDS = frozenset([
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
    "does", "do", "did", "is", "are", "was", "were", "am", "been", "being", "can", "could", "should", "would",
    "will", "shall", "may", "might", "must",
    "i", "me", "my", "we", "us", "our", "you", "your", "it", "its", "this", "that", "these", "those", "there",
    "their", "them", "they", "he", "she", "his", "her",
    "any", "much", "many",
])


_WORD = re.compile(r"\w+")
_STOP = QUESTION_WORDS | frozenset([
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or", "about",
    "product", "products",
])


def metadata_words(product: KnowledgeProduct) -> set[str]:
    """Every word of the product's catalog metadata (contract and descriptor text), lower-cased."""
    parts = [product.id, product.domain, product.name, product.title, product.purpose, product.usage,
             product.limitations, product.team, product.owner.name, product.owner.username,
             product.classification, *product.tags, *(m.name for m in product.members)]
    return {w.lower() for part in parts for w in _WORD.findall(part)}


def fact_words(product: KnowledgeProduct) -> set[str]:
    """Every word of the product's catalog facts (`knowledge.catalog.product_facts`), lower-cased: all a
    search may match of a product the searcher may discover but not read."""
    parts = [product.id, product.domain, product.name, product.title, product.purpose, product.team,
             product.owner.name, product.owner.username, product.classification]
    return {w.lower() for part in parts for w in _WORD.findall(part)}


def match_count(query: str, words: set[str]) -> int:
    """How many distinct query words (question and function words dropped) the metadata contains."""
    terms = {w.lower() for w in _WORD.findall(query)}
    terms = {t for t in terms if t not in _STOP} or terms
    return sum(1 for t in terms if t in words or (len(t) >= 3 and any(w.startswith(t) for w in words)))


def search_catalog(products: Iterable[KnowledgeProduct], query: str,
                   principal: Principal | None = None) -> list[tuple[int, KnowledgeProduct]]:
    """(matching words, product) for every product matching `query`, best first. `products` must be
    what the caller may see (the catalog trims by roles before this); with a `principal`, a product it
    may discover but not read matches on its catalog facts only."""
    scored = [(match_count(query, metadata_words(p) if principal is None or principal.can_read(p)
                           else fact_words(p)), p) for p in products]
    return sorted(((n, p) for n, p in scored if n > 0), key=lambda np_: (-np_[0], np_[1].id))
