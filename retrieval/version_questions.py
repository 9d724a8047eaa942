"""The version-question rule (`VersionRouter.search`, ask only; explicit pins and `as_of` win): when a
question names a version ("version 1", "v1", "1.0.0", "the first / original / previous version"), or a time
("before July", "before 2026-07-01", "in 2025", "back in June 2026"), or says "previously", "used to",
"before the change", and the product it is about has more than one version (a product named in it, else
the best-ranked of the unpinned search's k hits that comes from such a product; for a date cue, which may
be the time of the data rather than of a rule, only the best hit), and the cue selects a version that is
not current, the search is repeated pinned to that version (and recorded as such). A
question asking what changed between versions (or since one) is answered from a diff of the two versions'
documents and contract facts, each side cited to its own version's chunks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from indexing.releases import ProductEntry
from knowledge.cards import CATALOG_DOCUMENT
from knowledge.errors import ProductNotFound
from knowledge.versions import version_key
from retrieval.types import Answer, AnswerSentence, RetrievedChunk, SearchRequest, SearchResult

if TYPE_CHECKING:
    from retrieval.serving import ServingContext
from retrieval.versions import ProductVersion, pinned, version_at

NAME = "meshrag.versions"
VERSION = "1"
MAX_CHANGES = 6  # changed passages quoted in a "what changed" answer

MONTHS = {m: i for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                      "september", "october", "november", "december"), start=1)}
MONTHS |= {m[:3]: i for m, i in list(MONTHS.items())} | {"sept": 9}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_DATE = rf"(\d{{4}}-\d{{2}}-\d{{2}}|(?:{_MONTH})\.?(?:\s+\d{{1,2}}(?!\d)(?:st|nd|rd|th)?)?(?:,?\s+\d{{4}})?|\d{{4}})\b"
_BEFORE = re.compile(rf"\b(?:before|prior to|until|up to)\s+{_DATE}", re.IGNORECASE)
_DURING = re.compile(rf"\b(?:in|during|back in|as of|throughout)\s+{_DATE}", re.IGNORECASE)
_NUMBERED = re.compile(r"\b(?:version|ver\.?|v)\s?(\d+(?:\.\d+){0,2})\b|\b(\d+\.\d+\.\d+)\b|\b(\d+)\.x\b", re.IGNORECASE)
_WORD_NUMBERS = {"one": "1", "two": "2", "three": "3", "four": "4"}
_WORDED = re.compile(r"\bversion\s+(one|two|three|four)\b", re.IGNORECASE)
_OLDEST = re.compile(r"\b(?:first|original|initial|earliest)\s+(?:version|definition|rule|release)|\boriginally\b",
                     re.IGNORECASE)
_PREVIOUS = re.compile(r"\b(?:previous|prior|earlier|old|older|former)\s+(?:version|definition|rule|release)\b|"
                       r"\bpreviously\b|\bused to\b|\bformerly\b|\bbefore the (?:change|switch|update|new\b)", re.IGNORECASE)
_CHANGE = re.compile(r"\b(?:what|which|how)\b.*\b(?:chang\w*|differ\w*)\b|\bcompar\w*\b|\bdiff\b", re.IGNORECASE)
_VERSIONS_WORD = re.compile(r"\bversions\b|\b(?:new|newest|latest|last|previous|current)\s+(?:version|release)\b",
                            re.IGNORECASE)


@dataclass(frozen=True)
class VersionCue:
    """What a question says about versions: named versions (as written), a day it is asked about, or
    "the previous" / "the oldest" version."""

    text: str  # the words that carry the cue
    numbers: tuple[str, ...] = ()
    day: date | None = None
    relative: str | None = None  # "previous" | "oldest"


def _day(text: str, before: bool, year: int) -> date | None:
    """The day a date phrase points at: for `before X`, the day before X starts; else the last day of X."""
    t = text.lower().strip().rstrip(".")
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            d = date.fromisoformat(t)
            return d - timedelta(days=1) if before else d
        if re.fullmatch(r"\d{4}", t):
            y = int(t)
            return date(y - 1, 12, 31) if before else date(y, 12, 31)
        m = re.match(rf"({_MONTH})\.?(?:\s+(\d{{1,2}})(?!\d)(?:st|nd|rd|th)?)?(?:,?\s+(\d{{4}}))?", t)
        if m is None:
            return None
        month, day_of, y = MONTHS[m.group(1)], m.group(2), int(m.group(3)) if m.group(3) else year
        if day_of:
            d = date(y, month, int(day_of))
            return d - timedelta(days=1) if before else d
        start = date(y, month, 1)
        end = (date(y + month // 12, month % 12 + 1, 1)) - timedelta(days=1)
        return start - timedelta(days=1) if before else end
    except ValueError:
        return None


def detect_cue(question: str, year: int) -> VersionCue | None:
    """The version cue of a question, if any. `year` completes a month without one (the current version's)."""
    numbers = tuple(n for m in _NUMBERED.finditer(question) for n in m.groups() if n) + \
        tuple(_WORD_NUMBERS[m.group(1).lower()] for m in _WORDED.finditer(question))
    if numbers:
        return VersionCue(question, numbers=numbers)
    for pattern, before in ((_BEFORE, True), (_DURING, False)):
        m = pattern.search(question)
        if m and (d := _day(m.group(1), before, year)) is not None:
            return VersionCue(m.group(0), day=d)
    if m := _OLDEST.search(question):
        return VersionCue(m.group(0), relative="oldest")
    if m := _PREVIOUS.search(question):
        return VersionCue(m.group(0), relative="previous")
    return None


def by_number(versions: Sequence[ProductVersion], number: str) -> ProductVersion | None:
    """The newest version whose numbers start with `number`'s ("1" → 1.x.y, "2.1" → 2.1.z)."""
    want = version_key(number)[0]
    matching = [pv for pv in versions if version_key(pv.version)[0][:len(want)] == want]
    return matching[-1] if matching else None


def cue_version(cue: VersionCue, versions: Sequence[ProductVersion]) -> ProductVersion | None:
    """The version a cue selects among a product's versions (None when it selects none)."""
    current = next((i for i, pv in enumerate(versions) if pv.current), len(versions) - 1)
    if cue.numbers:
        return by_number(versions, cue.numbers[0])
    if cue.day is not None:
        return version_at(versions, cue.day)
    if cue.relative == "oldest":
        return versions[0]
    if cue.relative == "previous" and current > 0:
        return versions[current - 1]
    return None


def change_pair(question: str, versions: Sequence[ProductVersion]) -> tuple[ProductVersion, ProductVersion] | None:
    """(older, newer) when the question asks what changed between versions (two named; one named and its
    neighbour; "the previous / latest version"; the first version and the current one); None otherwise."""
    if not _CHANGE.search(question) or len(versions) < 2:
        return None
    named = [pv for n in (n for m in _NUMBERED.finditer(question) for n in m.groups() if n)
             if (pv := by_number(versions, n)) is not None]
    named = list({pv.version: pv for pv in named}.values())
    current = next((i for i, pv in enumerate(versions) if pv.current), len(versions) - 1)
    if len(named) >= 2:
        a, b = sorted(named[:2], key=lambda pv: version_key(pv.version))
        return (a, b) if a != b else None
    if len(named) == 1:
        i = versions.index(named[0])
        if i == 0 or (versions[i].current is False and i < current):
            return versions[i], versions[i + 1]
        return versions[i - 1], versions[i]
    if _VERSIONS_WORD.search(question) and current > 0:
        return versions[current - 1], versions[current]
    if _OLDEST.search(question) and current > 0:
        return versions[0], versions[current]
    return None


# ---------------------------------------------------------------------------------------- the diff
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'*(])")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s+")


def _units(chunks: Sequence[Any]) -> list[tuple[str, Any]]:
    """(normalised sentence, first chunk holding it) in document order; tables, code and headings left out."""
    out: dict[str, Any] = {}
    for chunk in sorted(chunks, key=lambda c: (c.start, c.end)):
        fenced = False
        for paragraph in re.split(r"\n\s*\n", chunk.text):
            lines = paragraph.strip().splitlines()
            if any(line.strip().startswith("```") for line in lines):
                fenced = not fenced if sum(line.strip().startswith("```") for line in lines) % 2 else fenced
                continue
            if fenced or not lines or lines[0].lstrip().startswith(("|", "#", "--")):
                continue
            items: list[str] = []
            for line in lines:  # a list item starts a unit of its own; other lines continue the last one
                bare = _LIST_ITEM.sub("", line.strip())
                if items and bare == line.strip():
                    items[-1] += " " + bare
                else:
                    items.append(bare)
            for sentence in (s for item in items for s in _SENTENCE.split(item)):
                key = " ".join(sentence.split())
                if len(key) > 20 and key not in out:
                    out[key] = chunk
    return list(out.items())


def _plain(text: str) -> str:
    return text.replace("**", "").replace("`", "")


@dataclass(frozen=True)
class Change:
    document: str
    old: tuple[tuple[str, Any], ...]  # (sentence, chunk) of the older version
    new: tuple[tuple[str, Any], ...]


def document_changes(old_chunks: Sequence[Any], new_chunks: Sequence[Any]) -> list[Change]:
    """Sentences that differ between two versions of each document both versions hold, in document order."""
    docs_old: dict[str, list[Any]] = {}
    docs_new: dict[str, list[Any]] = {}
    for c in old_chunks:
        docs_old.setdefault(c.document, []).append(c)
    for c in new_chunks:
        docs_new.setdefault(c.document, []).append(c)
    changes = []
    for doc in sorted(set(docs_old) & set(docs_new) - {CATALOG_DOCUMENT}):
        a, b = _units(docs_old[doc]), _units(docs_new[doc])
        matcher = difflib.SequenceMatcher(None, [s for s, _ in a], [s for s, _ in b], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op != "equal":
                changes.append(Change(doc, tuple(a[i1:i2]), tuple(b[j1:j2])))
    return changes


class VersionRouter:
    """The version stage of the ask pipeline over a serving context and a search function."""

    NAME = NAME
    VERSION = VERSION

    def __init__(self, context: ServingContext, search: Callable[[SearchRequest], SearchResult]) -> None:
        self.context = context
        self._search = search

    def search(self, req: SearchRequest) -> SearchResult:
        """The ask's retrieval: pinned by a version question's cue, or a diff of two versions, else as asked."""
        if req.as_of is not None or pinned(req.products):
            return self._search(req)
        release = self.context.release(req.release)
        multi = {pid: vs for pid, vs in self.context.product_versions(release).items() if len(vs) > 1}
        if not multi:
            return self._search(req)
        year = max((pv.since.year for vs in multi.values() for pv in vs if pv.since), default=date.today().year)
        cue = detect_cue(req.query, year)
        asks_change = _CHANGE.search(req.query) is not None
        if cue is None and not asks_change:
            return self._search(req)
        found = self._search(req)
        # A date alone may be the time of the data asked about, not of a rule: it pins only a question whose
        # best hit is the versioned product's. A version word ("v1", "previously") is about versions itself.
        pid = self._target(req.query, found, multi, best_only=cue is not None and cue.day is not None)
        if pid is None:
            return found
        versions = multi[pid]
        pair = change_pair(req.query, versions) if asks_change else None
        if pair is not None:
            try:
                return self.diff(req, pid, pair[0].version, pair[1].version)
            except ProductNotFound:
                return found
        chosen = cue_version(cue, versions) if cue is not None else None
        if chosen is None or chosen.current:
            return found
        result = self._search(replace(req, products=(f"{pid}@{chosen.version}",)))
        rule = {"rule": f"{NAME}@{VERSION}", "cue": cue.text if cue else "", "product": pid, "version": chosen.version}
        return replace(result, params={**result.params, "version_rule": rule})

    def _target(self, question: str, found: SearchResult, multi: Mapping[str, Sequence[ProductVersion]],
                best_only: bool = False) -> str | None:
        """The product a version question is about: one named in it, else the product with versions that
        the best of the hits (the k the answerer would see; with `best_only`, the first) comes from."""
        catalog = self.context.catalog
        low = question.lower()
        for pid in multi:
            product = catalog.products.get(pid)
            if pid in low or (product is not None and product.title.lower() in low):
                return pid
        return next((h.product_id for h in found.hits[:1 if best_only else None] if h.product_id in multi), None)

    def diff(self, req: SearchRequest, pid: str, old: str, new: str) -> SearchResult:
        """The chunks a "what changed" answer cites, as a search result: each changed passage of both
        versions, then the two catalog cards. Access is checked like any pin (unreadable = missing)."""
        from retrieval.access import readable_entries

        release = self.context.release(req.release)
        catalog = self.context.catalog_for(release)
        pins = (f"{pid}@{old}", f"{pid}@{new}")
        entries = readable_entries(release, catalog, req.principal, products=pins,
                                   versions=self.context.product_versions(release))
        ea, eb = sorted(entries.values(), key=lambda e: version_key(e.product_version))
        old_chunks, new_chunks = self.context.chunks_of(ea.chunk_version), self.context.chunks_of(eb.chunk_version)
        changes = document_changes(old_chunks, new_chunks)
        prose = [c for c in changes if c.old and c.new][:MAX_CHANGES]
        cited: list[tuple[Any, ProductEntry]] = []
        for change in prose:
            cited += [(chunk, ea) for _, chunk in change.old] + [(chunk, eb) for _, chunk in change.new]
        cited += [(c, ea) for c in old_chunks if c.document == CATALOG_DOCUMENT][:1]
        cited += [(c, eb) for c in new_chunks if c.document == CATALOG_DOCUMENT][:1]
        product = catalog.products[pid]
        hits, seen = [], set()
        for chunk, entry in cited:
            if (entry.chunk_version, chunk.chunk_id) in seen:
                continue
            seen.add((entry.chunk_version, chunk.chunk_id))
            hits.append(RetrievedChunk(chunk=chunk, release_id=release.id, product_version=entry.product_version,
                                       chunk_version=entry.chunk_version, embedding_version=entry.embedding_version,
                                       domain=product.domain, classification=entry.classification,
                                       score=1.0 / (len(hits) + 1), rank=len(hits) + 1))
        params = {"searcher": f"{NAME}@{VERSION}", "release": release.id, "requested_release": req.release,
                  "k": req.k, "filters": {"products": sorted(pins), "domains": None, "classifications": None,
                                          "documents": None},
                  "products_searched": sorted(entries), "reranker": None,
                  "version_diff": {"product": pid, "from": ea.product_version, "to": eb.product_version,
                                   "changes": len(changes), "quoted": len(prose)}}
        return SearchResult(release_id=release.id, hits=tuple(hits), params=params, timings_ms={})

    def answer(self, question: str, found: SearchResult) -> Answer | None:
        """The "what changed" answer of a diff search, citing both versions; None for any other search."""
        spec = found.params.get("version_diff")
        if not spec:
            return None
        pid, old, new = spec["product"], spec["from"], spec["to"]
        known = {pv.version: pv for pv in self.context.product_versions(self.context.release(found.release_id))[pid]}
        a, b = known[old], known[new]
        by_chunk = {(h.product_version, h.chunk_id): h for h in found.hits}
        cards = [h for h in found.hits if h.chunk.document == CATALOG_DOCUMENT]
        citations: list[Any] = []
        marker: dict[tuple[str, str], int] = {}
        sentences: list[AnswerSentence] = []

        def say(text: str, hits: Iterable[RetrievedChunk]) -> None:
            for h in hits:
                if (h.chunk_version, h.chunk_id) not in marker:
                    marker[(h.chunk_version, h.chunk_id)] = len(marker) + 1
                    citations.append(h.cite(len(marker), 1.0))
            markers = tuple(dict.fromkeys(marker[(h.chunk_version, h.chunk_id)] for h in hits))
            sentences.append(AnswerSentence(text + "".join(f" [{m}]" for m in markers), markers, 1.0))

        facts = [f"version {old} → {new}"]
        if b.since is not None:
            facts.append(f"version {new} in effect from {b.since.date().isoformat()}")
        if a.entry.classification != b.entry.classification:
            facts.append(f"classification {a.entry.classification} → {b.entry.classification}")
        say(f"What changed in {pid} from version {old} to version {new}: contract facts: {'; '.join(facts)}.", cards)
        old_docs, new_docs = set(a.entry.documents) - {CATALOG_DOCUMENT}, set(b.entry.documents) - {CATALOG_DOCUMENT}
        compared = sorted(old_docs & new_docs)
        changes = [c for c in document_changes(self.context.chunks_of(a.entry.chunk_version),
                                               self.context.chunks_of(b.entry.chunk_version)) if c.old and c.new]
        for change in changes[:MAX_CHANGES]:
            say(f"In {change.document}, version {old} said: \"{' '.join(_plain(t) for t, _ in change.old)}\"",
                [by_chunk[k] for _, c in change.old if (k := (old, c.chunk_id)) in by_chunk])
            say(f"Version {new} says: \"{' '.join(_plain(t) for t, _ in change.new)}\"",
                [by_chunk[k] for _, c in change.new if (k := (new, c.chunk_id)) in by_chunk])
        if not changes:
            sentences.append(AnswerSentence(f"The documents both versions hold ({', '.join(compared) or 'none'}) "
                                            "read the same.", (), 1.0))
        unkept = len(new_docs - old_docs)
        if unkept:
            sentences.append(AnswerSentence(f"Compared: {', '.join(compared) or 'no document'}; {unkept} other "
                                            f"document(s) of version {new} have no copy kept for version {old}.",
                                            (), 1.0))
        return Answer(question=question, text=" ".join(s.text for s in sentences), citations=tuple(citations),
                      abstained=False, support=1.0, answerer=f"{NAME}.diff@{VERSION}", sentences=tuple(sentences),
                      outcome="answered", decision={"rule": "version-diff", "product": pid, "from": old, "to": new,
                                                    "changes": len(changes),
                                                    "quoted": min(len(changes), MAX_CHANGES)})

    def replay(self, req: SearchRequest, params: Mapping[str, Any]) -> SearchResult:
        """The recorded retrieval again: a recorded diff is recomputed, anything else searched as recorded."""
        spec = params.get("version_diff")
        if spec:
            return self.diff(req, spec["product"], spec["from"], spec["to"])
        return self._search(req)
