"""One product's chunk version: its documents and their revisions, what else defines its chunks (the
fingerprint), and loading, PII-scanning and chunking the documents in document order, reusing the chunks
of documents that did not change since its previous chunk version, described by a chunk manifest."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexing import injection, sources
from indexing.chunking import PROMPT_INJECTION_FLAG, Chunker, ChunkerConfig
from indexing.index_report import ProductReport, Progress
from indexing.keyword import KeywordIndex
from indexing.pii import PiiScanner, policy_entities
from indexing.releases import ProductEntry
from indexing.sources import load_document
from indexing.types import Chunk, PiiFinding, SourceDocument
from indexing.versions import VersionStore, library_versions
from knowledge.cards import CATALOG_DOCUMENT, render_card
from knowledge.errors import MeshragError
from knowledge.model import KnowledgeProduct


class ProductBlocked(MeshragError):
    """A governance gate stopped this product's new version."""


def catalog_document(product: KnowledgeProduct, card: str, revision: str) -> SourceDocument:
    """The product's catalog card as a source document (id `_catalog`)."""
    return SourceDocument(product_id=product.id, path=CATALOG_DOCUMENT, format="md", text=card, revision=revision,
                          title=f"{product.title} — catalog card")


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def product_sources(product: KnowledgeProduct) -> tuple[dict[str, Path | str], dict[str, str]]:
    """The product's documents by id (files, and the catalog card as its text) and their revisions."""
    paths: dict[str, Path | str] = {product.document_id(p): p for p in product.documents()}
    revisions = {doc_id: sha256_file(path) for doc_id, path in paths.items() if isinstance(path, Path)}
    card = render_card(product)
    paths[CATALOG_DOCUMENT] = card
    revisions[CATALOG_DOCUMENT] = hashlib.sha256(card.encode("utf-8")).hexdigest()
    return paths, revisions


def chunk_fingerprint(cfg: ChunkerConfig, policy: str, pii_model: str, embedder_model: str) -> dict[str, Any]:
    """Everything besides the sources that shapes a product's chunks (goes into chunk version ids)."""
    return {"loader": {"name": sources.NAME, "version": sources.VERSION},
            "injection": {"name": injection.NAME, "version": injection.VERSION},
            "chunker": {"name": Chunker.NAME, "version": Chunker.VERSION, **asdict(cfg)},
            "pii": {"name": PiiScanner.NAME, "version": PiiScanner.VERSION, "model": pii_model,
                    "policy": policy},
            # The keyword index is written with the chunk version: a new tokeniser needs a new one.
            "keyword": {"name": KeywordIndex.NAME, "version": KeywordIndex.VERSION},
            "embedder_tokenizer": embedder_model}


def _pii_entities(product: KnowledgeProduct, doc_id: str) -> tuple[str, ...]:
    """What the PII step looks for in one document: what the product's policy acts on, except person names
    in the catalog card, whose owner and team are catalog facts that must show, not document text."""
    entities = policy_entities(product.pii_policy)
    return tuple(e for e in entities if e != "PERSON") if doc_id == CATALOG_DOCUMENT else entities


def _public_names(product: KnowledgeProduct) -> tuple[str, ...]:
    """People the contract itself publishes as the product's team: not redacted from its documents either."""
    return (product.owner.name, *(m.name for m in product.members))


def chunk_product(product: KnowledgeProduct, paths: dict[str, Path | str], revisions: dict[str, str],
                  prev: ProductEntry | None, fingerprint: dict[str, Any], report: ProductReport, *,
                  versions: VersionStore, pii: PiiScanner, chunker: Callable[[], Chunker], progress: Progress,
                  hand_over: Callable[[list[Chunk]], None] | None = None) -> tuple[list[Chunk], dict[str, Any]]:
    """Chunks in document order; `hand_over`, if given, receives each document's chunks as made."""
    t0 = time.perf_counter()
    give = hand_over or (lambda _: None)
    reusable: dict[str, list[Chunk]] = {}
    if prev is not None and versions.has_chunk_version(prev.chunk_version) and \
            versions.chunk_manifest(prev.chunk_version).get("pipeline") == fingerprint:
        for c in versions.read_chunks(prev.chunk_version):
            if revisions.get(c.document) == c.doc_revision:
                reusable.setdefault(c.document, []).append(c)

    todo = [d for d in sorted(paths) if d not in reusable]
    if todo:
        pii.warm_up()
    made = chunker() if todo else None
    key = f"chunk:{product.id}"
    progress.begin(key, f"{product.id}: load + PII + chunk", len(todo))
    chunks: list[Chunk] = []
    by_type: Counter[str] = Counter()
    by_doc: dict[str, dict[str, int]] = {}
    truncated = 0
    for doc_id in sorted(paths):
        if doc_id in reusable:
            chunks.extend(reusable[doc_id])
            give(reusable[doc_id])
            continue
        source = paths[doc_id]
        doc = load_document(product.id, source, doc_id) if isinstance(source, Path) else \
            catalog_document(product, source, revisions[doc_id])
        findings: list[PiiFinding] = pii.scan(doc.text, entities=_pii_entities(product, doc_id),
                                                   public_names=_public_names(product))
        if findings:
            counts = Counter(f.entity_type for f in findings)
            by_doc[doc_id] = dict(counts)
            by_type.update(counts)
        if findings and product.pii_policy == "reject":
            progress.end(key)
            kinds = ", ".join(f"{n} {t}" for t, n in sorted(Counter(f.entity_type for f in findings).items()))
            raise ProductBlocked(f"PII found under piiPolicy 'reject' in {doc_id} ({kinds}); remove it from the "
                                 "source or change the policy to 'redact'")
        redact = product.pii_policy == "redact"
        assert made is not None
        result = made.chunk(doc, pii_findings=findings if redact else (),
                               pii_redactor=pii.redact_span if redact else None)
        truncated += result.stats.truncated
        chunks.extend(result.chunks)
        give(list(result.chunks))
        progress.advance(key)
    progress.end(key)
    # Reused documents' findings come from the previous manifest.
    if prev is not None and reusable:
        old = versions.chunk_manifest(prev.chunk_version).get("pii", {}).get("by_document", {})
        for doc_id in reusable:
            if doc_id in old:
                by_doc[doc_id] = old[doc_id]
                by_type.update(old[doc_id])
    report.pii_findings = dict(by_type)
    per_document = Counter(c.document for c in chunks)
    manifest = {
        "kind": "chunk-product-version",
        "product_id": product.id,
        "product_version": product.version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pipeline": fingerprint,
        "documents": {d: {"revision": revisions[d], "chunks": per_document[d]}
                      for d in sorted(revisions)},
        "pii": {"policy": product.pii_policy, "by_type": dict(by_type), "by_document": by_doc},
        "prompt_injection": {"flagged_chunks": [c.chunk_id for c in chunks if PROMPT_INJECTION_FLAG in c.flags],
                             "documents": sorted({c.document for c in chunks if PROMPT_INJECTION_FLAG in c.flags})},
        "n_chunks": len(chunks),
        "n_tokens": sum(c.n_tokens for c in chunks),
        "max_model_tokens": max((c.n_model_tokens for c in chunks), default=0),
        "truncated": truncated,
        "reused_documents": sorted(reusable),
        "libraries": library_versions(),
        "timings": {"chunk_s": round(time.perf_counter() - t0, 3)},
    }
    return chunks, manifest


def write_keyword_index(chunks: Sequence[Chunk], folder: Path) -> None:
    """The keyword index of a chunk version, written into its folder."""
    index = KeywordIndex()
    index.build([c.chunk_id for c in chunks], [c.embedding_text for c in chunks])
    index.save(folder / "keyword")
