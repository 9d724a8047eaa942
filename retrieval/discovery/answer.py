"""The discovery stage: `DiscoveryAnswerer.answer` recognises the question (retrieval.discovery.recognise)
and writes plain sentences of the asked facts, each citing the descriptor or contract span it states
(`fact_citation`), within what the principal may see of each product; a principal who may only discover
a product gets its `knowledge.facts.DISCOVERABLE_FACTS` alone."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from knowledge.catalog import Catalog
from knowledge.facts import (
    DISCOVERABLE_FACTS,
    FACTS_VERSION,
    PII_POLICY_WORDS,
    Fact,
    ProductFactSheet,
    sla_words,
    status_of,
)
from knowledge.model import KnowledgeProduct, Principal
from retrieval.answer.citations import with_markers
from retrieval.discovery.cache import CatalogFacts, KeptVersions
from retrieval.discovery.filters import class_matches, period_matches
from retrieval.discovery.filters import words as filter_words
from retrieval.discovery.meaning import ProductCards, meaning_link
from retrieval.discovery.recognise import _WHO, Recognised, recognise
from retrieval.types import Answer, AnswerSentence, Citation, RetrievedChunk, SearchRequest, ShortAnswer

NAME = "discovery"
VERSION = "5"  # 5: linking by meaning, comparison filters, respelt cue words
ANSWERER = f"{NAME}@{VERSION}"


@dataclass
class _Draft:
    """Sentences with their cited facts, numbered as they are first cited."""

    release_id: str
    sentences: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    _markers: dict[tuple[str, str, int, int], int] = field(default_factory=dict)

    def cite(self, sheet: ProductFactSheet, fact: Fact | None) -> tuple[int, ...]:
        if fact is None:
            return ()
        key = (sheet.product.id, fact.file, fact.start, fact.end)
        if key not in self._markers:
            marker = len(self.citations) + 1
            self._markers[key] = marker
            self.citations.append(fact_citation(sheet, fact, marker, self.release_id))
        return (self._markers[key],)

    def say(self, text: str, *cited: tuple[int, ...]) -> None:
        markers = tuple(dict.fromkeys(m for group in cited for m in group))
        if (text, markers) not in self.sentences:
            self.sentences.append((text, markers))


FACT_CHUNK_VERSION = f"facts@{FACTS_VERSION}"


def cites_discoverable_fact(citation: Citation) -> bool:
    """A citation of a catalog fact that a principal who may only discover its product may see."""
    return (citation.chunk_version.startswith("facts@") and bool(citation.heading_path)
            and citation.heading_path[0] in DISCOVERABLE_FACTS)


def fact_citation(sheet: ProductFactSheet, fact: Fact, marker: int, release_id: str) -> Citation:
    """The citation of one fact: its file (relative to the product root), span, text, and as heading path
    the fact's name and field path."""
    product, source = sheet.product, sheet.files[fact.file]
    chunk_id = "fact-" + hashlib.sha256(
        f"{FACTS_VERSION}|{product.id}|{fact.file}|{source.sha256}|{fact.start}|{fact.end}".encode()).hexdigest()[:32]
    return Citation(chunk_id=chunk_id, product_id=product.id, product_version=product.version,
                    chunk_version=FACT_CHUNK_VERSION, document=fact.file, doc_revision=source.sha256,
                    start=fact.start, end=fact.end, heading_path=(fact.name, fact.field), marker=marker,
                    release_id=release_id, text=source.text[fact.start:fact.end], scores={"support": 1.0})


def _roles(sheet: ProductFactSheet) -> tuple[str, tuple[Fact, ...]]:
    facts = sheet.all("read_roles")
    return ", ".join(f.value for f in facts), facts


class _Writer:
    """Sentences stating the asked facts of one product, within what the principal may see of it."""

    def __init__(self, draft: _Draft, sheet: ProductFactSheet, principal: Principal,
                 source_update: Callable[[KnowledgeProduct], datetime | None], now: datetime | None,
                 kept: KeptVersions | None = None) -> None:
        self.d, self.s, self.p, self.who = draft, sheet, sheet.product, principal
        self.kept = kept or KeptVersions()
        self.readable = principal.can_read(sheet.product)
        self.source_update, self.now = source_update, now

    def fact(self, name: str) -> tuple[int, ...]:
        return self.d.cite(self.s, self.s.get(name)) if self.s.visible_to(self.who, name) else ()

    @property
    def label(self) -> str:
        return f"{self.p.id} ({self.p.title})"

    def hidden(self, what: str) -> None:
        self.d.say(f"You may see only the catalog facts of {self.p.id}, not its {what}; ask its owner "
                   f"{self.p.owner.name} ({self.p.owner.username}) for access.", self.fact("owner"),
                   self.fact("contact"))

    def write(self, ask: str) -> None:
        getattr(self, f"_{ask}")()

    def _which(self) -> None:
        self.d.say(f"{self.label} is the knowledge product for: {self.p.purpose.rstrip('.')}.",
                   self.fact("id"), self.fact("title"), self.fact("purpose"))
        self._owner()

    _purpose = _which

    def _owner(self) -> None:
        self.d.say(f"{self.p.id} is owned by {self.p.owner.name} ({self.p.owner.username}) of the {self.p.team} "
                   f"team.", self.fact("owner"), self.fact("contact"), self.fact("team"))

    def _contact(self) -> None:
        self._owner()
        self.d.say(f"Contact {self.p.owner.name} ({self.p.owner.username}) about {self.p.title}.",
                   self.fact("contact"))

    def _members(self) -> None:
        if not self.readable:
            return self.hidden("team members")
        others = [m for m in self.p.members if m.username != self.p.owner.username]
        if others:
            cited = tuple(self.d.cite(self.s, f) for f in self.s.all("members"))
            self.d.say(f"Other members of the {self.p.team} team: "
                       + "; ".join(f"{m.name} ({m.role})" if m.role else m.name for m in others) + ".", *cited)

    def _freshness(self) -> None:
        _, words = status_of(self.p, self.now, source_update=self.source_update)
        self.d.say(f"{self.p.id} is {words}.", self.fact("last_update"), self.fact("freshness_sla"))

    def _retention(self) -> None:
        if not self.readable:
            return self.hidden("retention SLA")
        self.d.say(f"{self.p.id} keeps published versions for {sla_words(self.p.retention_sla)} "
                   "(its retention SLA).", self.fact("retention_sla"))

    def _classification(self) -> None:
        self.d.say(f"{self.p.id} is classified {self.p.classification}.", self.fact("classification"))

    def _access(self) -> None:
        if self.readable:
            roles, facts = _roles(self.s)
            cited = tuple(self.d.cite(self.s, f) for f in facts)
            self.d.say(f"{self.p.id} is classified {self.p.classification}; roles with read access: {roles}.",
                       self.fact("classification"), *cited)
            self.d.say(f"You can read {self.p.id}.")
        else:
            self.d.say(f"{self.p.id} is classified {self.p.classification}.", self.fact("classification"))
            self.d.say(f"You cannot read the content of {self.p.id}; you may see its catalog facts. Ask its "
                       f"owner {self.p.owner.name} ({self.p.owner.username}) for access.",
                       self.fact("owner"), self.fact("contact"))

    def _pii(self) -> None:
        if not self.readable:
            return self.hidden("PII policy")
        self.d.say(f"{self.p.id} has the PII policy {self.p.pii_policy}: {PII_POLICY_WORDS[self.p.pii_policy]}.",
                   self.fact("pii_policy"))

    def _domain(self) -> None:
        self.d.say(f"{self.p.id} belongs to the {self.p.domain} domain.", self.fact("domain"))

    def _version(self) -> None:
        if not self.readable:
            return self.hidden("versions")
        since = f", in effect from {self.p.version_since.date().isoformat()}" if self.p.version_since else ""
        self.d.say(f"The current version of {self.p.id} is {self.p.version} (status {self.p.status}{since}).",
                   self.fact("version"), self.fact("status"))
        if self.kept.problem is not None:
            self.d.say(f"Its kept older versions cannot be read: {self.kept.problem}")
        elif self.kept.versions:
            self.d.say(f"Older versions of {self.p.id} kept and addressable as {self.p.id}@<version>: "
                       f"{', '.join(self.kept.versions)}; all versions: "
                       f"{', '.join((*self.kept.versions, self.p.version))}.")
        else:
            self.d.say(f"No older version of {self.p.id} is kept.")


_FILTER_WORDS = {
    "freshness": lambda v: f"are {v}",
    "classification": lambda v: filter_words("classification", v),
    "freshness_sla": lambda v: filter_words("freshness_sla", v),
    "retention": lambda v: filter_words("retention", v),
    "readable": lambda v: "you can read" if v == "yes" else "you can find but not read",
    "team": lambda v: f"are owned by the {v} team",
    "domain": lambda v: f"are in the {v} domain",
}


def _matches(product: KnowledgeProduct, filters: dict[str, str], principal: Principal,
             status: Callable[[KnowledgeProduct], str]) -> bool:
    for key, value in filters.items():
        if key == "freshness" and status(product) != value:
            return False
        if key == "classification" and not class_matches(product.classification, value):
            return False
        if key == "freshness_sla" and not period_matches(product.freshness_sla, value):
            return False
        if key == "retention" and not period_matches(product.retention_sla, value):
            return False
        if key == "readable" and principal.can_read(product) != (value == "yes"):
            return False
        if key == "team" and product.team != value:
            return False
        if key == "owner" and product.owner.username != value:
            return False
        if key == "domain" and product.domain != value:
            return False
    return True


class DiscoveryAnswerer:
    """The discovery stage: `answer(req, hits, release_id)` is the catalog's answer, or None when the
    question is not a discovery question. Facts are read once per catalog object (a changed contract
    reloads the catalog, and with it the facts)."""

    name, version = NAME, VERSION

    def __init__(self, catalog: Callable[[], Catalog], *,
                 source_update: Callable[[KnowledgeProduct], datetime | None] | None = None,
                 cards: ProductCards | None = None) -> None:
        from knowledge.catalog import newest_source_update

        self._catalog = catalog
        self._source_update = source_update or newest_source_update
        self._cards = cards  # linking by meaning (retrieval/discovery/meaning.py); None: catalog words only
        self._cached: CatalogFacts | None = None
        self._lock = threading.Lock()

    def facts(self) -> CatalogFacts:
        catalog = self._catalog()
        cached = self._cached
        if cached is None or cached.catalog is not catalog:
            with self._lock:
                if self._cached is None or self._cached.catalog is not catalog:
                    self._cached = CatalogFacts.of(catalog, previous=self._cached)
                cached = self._cached
        return cached

    def warm_up(self) -> None:
        """Read the catalog's facts and embed its cards now rather than in the first answer."""
        facts = self.facts()
        if self._cards is not None:
            self._cards.vectors(facts.catalog)

    def visible(self, req: SearchRequest, catalog: Catalog) -> list[KnowledgeProduct]:
        """Products the principal may discover, narrowed by the request's filters (never widened)."""
        return [p for p in catalog if req.principal.can_discover(p)
                and (req.products is None or p.id in req.products)
                and (req.domains is None or p.domain in req.domains)
                and (req.classifications is None or p.classification in req.classifications)]

    def answer(self, req: SearchRequest, hits: Sequence[RetrievedChunk], release_id: str,
               now: datetime | None = None) -> Answer | None:
        if req.as_of is not None or any("@" in p for p in req.products or ()):
            return None  # a pinned product version has its own facts (retrieval/versions.py), not the current ones
        facts = self.facts()
        current = {p.id: p.version for p in facts.catalog}
        if hits and all(h.product_version != current.get(h.product_id) for h in hits):
            return None  # the version stage pinned an older version: its facts are not today's
        visible = self.visible(req, facts.catalog)
        ranked = sorted(hits, key=lambda h: h.rank)
        retrieved = tuple(dict.fromkeys(h.product_id for h in ranked))
        evidence = {pid: " ".join(h.chunk.text for h in ranked if h.product_id == pid) for pid in retrieved}
        cards = self._cards
        meaning = (lambda: meaning_link(cards.ranking(req.query, visible, req.principal, facts.catalog))
                   ) if cards is not None else None
        found = recognise(req.query, visible, req.principal, facts, retrieved, evidence, meaning)
        if found is None:
            return None
        draft = _Draft(release_id)
        by_id = {p.id: p for p in visible}
        listed: list[str] = []
        if found.aggregate:
            listed = self._aggregate(draft, found, visible, facts, req.principal, now)
        else:
            for pid in found.products:
                writer = _Writer(draft, facts.sheets[pid], req.principal, self._source_update, now, facts.kept[pid])
                for ask in found.asks:
                    writer.write(ask)
            listed = list(found.products)
        return self._answer(req.query, draft, found, listed, by_id)

    def _aggregate(self, draft: _Draft, found: Recognised, visible: Sequence[KnowledgeProduct],
                   facts: CatalogFacts, principal: Principal, now: datetime | None) -> list[str]:
        def status(p: KnowledgeProduct) -> str:
            return status_of(p, now, source_update=self._source_update)[0].status

        matched = [p for p in visible if _matches(p, found.filters, principal, status)]
        parts = [_FILTER_WORDS[k](v) for k, v in found.filters.items() if k in _FILTER_WORDS]
        if "owner" in found.filters:
            owner = next(p.owner.name for p in visible if p.owner.username == found.filters["owner"])
            parts.append(f"are owned by {owner}")
        criteria = " and ".join(parts) if parts else "are in the catalog"
        ids = ", ".join(p.id for p in matched)
        draft.say(f"Products you can see that {criteria}: {len(matched)}" + (f" ({ids})." if matched else "."))
        for p in matched:
            w = _Writer(draft, facts.sheets[p.id], principal, self._source_update, now, facts.kept[p.id])
            asks: list[str] = []
            if "freshness" in found.filters or "freshness_sla" in found.filters:
                asks.append("freshness")
            if "retention" in found.filters:
                asks.append("retention")
            if "classification" in found.filters:
                asks.append("classification")
            if "domain" in found.filters:
                asks.append("domain")
            asks += [a for a in found.asks if a not in asks]
            if not asks or "team" in found.filters or "owner" in found.filters or "readable" in found.filters:
                asks.insert(0, "owner")
            for ask in dict.fromkeys(asks):
                w.write(ask)
            if not principal.can_read(p):
                draft.say(f"Of {p.id} you may see only its catalog facts, not its content.")
        return [p.id for p in matched]

    def _answer(self, question: str, draft: _Draft, found: Recognised, listed: list[str],
                by_id: dict[str, KnowledgeProduct]) -> Answer:
        sentences = tuple(AnswerSentence(text=t, markers=m, support=1.0 if m else 0.0) for t, m in draft.sentences)
        text = " ".join(with_markers(s.text, s.markers) for s in sentences)
        short = None
        if _WHO.search(question) and not found.aggregate and len(found.products) == 1 \
                and found.asks and found.asks[0] in ("owner", "contact"):
            owner = by_id[found.products[0]].owner.name
            cited = next((c for c in draft.citations if c.text == owner), None)
            if cited is not None:
                short = ShortAnswer(text=owner, kind="person", marker=cited.marker, start=0, end=len(owner))
        decision: dict[str, Any] = {"stage": NAME, "answerer": ANSWERER, "facts_version": FACTS_VERSION,
                                    "asks": list(found.asks), "scope": "aggregate" if found.aggregate else "product",
                                    "products": listed, "linked_by": found.linked_by,
                                    "filters": dict(found.filters), "outcome": "answered"}
        return Answer(question=question, text=text, citations=tuple(draft.citations), abstained=False,
                      support=1.0, answerer=ANSWERER, sentences=sentences, outcome="answered", short=short,
                      decision=decision)
