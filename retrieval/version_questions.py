"""The version-question rule (`VersionRouter.search`, ask only; explicit pins and `as_of` win): when a
question carries a version cue (retrieval/version_cues.py: "v1", "the second version", "before July", "back
in June", "last year", "previously", "the old rule", "originally") about a product with more than one
version, and the cue selects a version that is not current, the search is repeated pinned to that version
(and recorded as such). The product is the one the question names (id or title), else the one its words
link to through the catalog's names and tags that the hits also come from, else the best-ranked hit's. A
date pins only a product named or linked so, or the best hit's; and a date the question is set in ("in
June"), which may be the time of the data rather than of a rule, only when the question asks how something
was defined, counted or treated, or its best hit is that product's.

Answers (`VersionRouter.answer`, before any other answerer):
- "what changed" (two versions named; the versions in effect at the start and end of a time the question
  names, "over the summer of 2026"; or "what changed / what's new" about a product named or linked so,
  with a hit from a document that changed: the previous and the current version): the diff of both
  versions' documents and contract facts, each side cited to its own version's chunks;
- a question pinned to an older version: what that version said, its passages (sentences and table rows)
  ranked by three rankings: the question's words (idf over the version's own passages), meaning (the
  embedder's cosine), and the passages that differ from the version that replaced it (the old rule) by
  meaning; the top of their reciprocal-rank fusion is quoted, and the best of each beside it; led by the
  first changed sentence of the best passage's document (its definition), each quote citing its version's
  chunk; a question asking when ("on which day were figures final") adds a fourth ranking, the passages
  that state a time, by the question's other words. Two versions named diff only a product named, linked
  or best retrieved. When no topic word of the question is in that version,
  the pipeline's answerer answers from the pinned hits (and may abstain);
- a version the product does not have ("version 3"): an abstention naming the versions that exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from indexing.releases import ProductEntry, Release
from knowledge.cards import CATALOG_DOCUMENT
from knowledge.errors import ProductNotFound
from knowledge.versions import version_key
from retrieval.discovery.words import FUNCTION_WORDS, same_word, words
from retrieval.fusion import reciprocal_rank_fusion
from retrieval.types import Answer, AnswerSentence, RetrievedChunk, SearchRequest, SearchResult
from retrieval.version_cues import (
    CUE_WORDS,
    RULE_WORDS,
    VersionCue,
    across,
    asks_change,
    by_number,
    change_pair,
    cue_version,
    detect_cue,
    missing_numbers,
)
from retrieval.version_diff import document_changes, sentence_units
from retrieval.versions import ProductVersion, pinned

if TYPE_CHECKING:
    from retrieval.serving import ServingContext

__all__ = ["NAME", "VERSION", "VersionCue", "VersionRouter", "by_number", "change_pair", "cue_version",
           "detect_cue", "document_changes"]

NAME = "meshrag.versions"
VERSION = "5"  # 5: "different" before a noun and "change history" ask no change; "old vs new" asks one
MAX_CHANGES = 6  # changed passages quoted in a "what changed" answer
MAX_QUOTED = 3  # fused passages of an older version quoted in a pinned answer (plus its lead and each ranking's best)


_ASKS_TIME = re.compile(r"\b(?:when|what (?:day|date|time)|which (?:day|date)|how (?:soon|late)|by what)\b",
                        re.IGNORECASE)
_STATES_TIME = re.compile(r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}(?:st|nd|rd|th)|day[- ]\d+|(?:on|by|until|after) the \w+ "
                          r"(?:day|of)|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{4})\b", re.IGNORECASE)


def _plain(text: str) -> str:
    return text.replace("**", "").replace("`", "")


def _in_context(unit: tuple[str, Any]) -> str:
    """A sentence under its chunk's breadcrumb (document title > heading), as the index embeds chunks."""
    sentence, chunk = unit
    return f"{chunk.context}\n{_plain(sentence)}" if getattr(chunk, "context", "") else _plain(sentence)


def _relevance(question: str, units: Sequence[tuple[str, Any]]) -> dict[str, float]:
    """Each sentence's match with the question: the summed idf (over these sentences) of the question's
    topic words it or its breadcrumb holds (version-cue and function words left out; word forms match)."""
    terms = [w for w in dict.fromkeys(words(question)) if len(w) > 2 and not w.isdigit()
             and w not in FUNCTION_WORDS and w not in CUE_WORDS]
    bags = {s: set(words(_in_context((s, c)))) for s, c in units}
    holds = {t: {s for s, bag in bags.items() if any(same_word(t, w) for w in bag)} for t in terms}
    idf = {t: math.log(1 + len(bags) / len(found)) for t, found in holds.items() if found}
    return {s: sum(v for t, v in idf.items() if s in holds[t]) for s in bags}


def _current(versions: Sequence[ProductVersion]) -> ProductVersion:
    return next((pv for pv in versions if pv.current), versions[-1])


def _version_span(pv: ProductVersion, versions: Sequence[ProductVersion]) -> str:
    """"1.0.0 (in effect until 2026-06-30)", "2.0.0 (in effect from 2026-07-01, current)"."""
    i = list(versions).index(pv)
    after = versions[i + 1] if i + 1 < len(versions) else None
    parts = [f"from {pv.since.date().isoformat()}"] if pv.since is not None else []
    if after is not None and after.since is not None:
        parts.append(f"until {(after.since.date() - timedelta(days=1)).isoformat()}")
    when = "in effect " + " ".join(parts) if parts else "undated"
    return f"{pv.version} ({when}{', current' if pv.current else ''})"


def _hit(chunk: Any, entry: ProductEntry, release_id: str, domain: str, rank: int) -> RetrievedChunk:
    """A chunk of a version as a hit (the form a citation is made from)."""
    return RetrievedChunk(chunk=chunk, release_id=release_id, product_version=entry.product_version,
                          chunk_version=entry.chunk_version, embedding_version=entry.embedding_version,
                          domain=domain, classification=entry.classification, score=1.0 / max(rank, 1),
                          rank=rank)


class _Draft:
    """Sentences of a version answer and the hits they cite, numbered as first cited."""

    def __init__(self) -> None:
        self.sentences: list[AnswerSentence] = []
        self.citations: list[Any] = []
        self._marker: dict[tuple[str, str], int] = {}

    def say(self, text: str, hits: Iterable[RetrievedChunk]) -> None:
        hits = list(hits)
        for h in hits:
            if (h.chunk_version, h.chunk_id) not in self._marker:
                self._marker[(h.chunk_version, h.chunk_id)] = len(self._marker) + 1
                self.citations.append(h.cite(len(self._marker), 1.0))
        markers = tuple(dict.fromkeys(self._marker[(h.chunk_version, h.chunk_id)] for h in hits))
        self.sentences.append(AnswerSentence(text + "".join(f" [{m}]" for m in markers), markers, 1.0))

    def answer(self, question: str, answerer: str, decision: dict[str, Any]) -> Answer:
        return Answer(question=question, text=" ".join(s.text for s in self.sentences),
                      citations=tuple(self.citations), abstained=False, support=1.0, answerer=answerer,
                      sentences=tuple(self.sentences), outcome="answered", decision=decision)


class VersionRouter:
    """The version stage of the ask pipeline over a serving context and a search function."""

    NAME = NAME
    VERSION = VERSION

    def __init__(self, context: ServingContext, search: Callable[[SearchRequest], SearchResult],
                 today: Callable[[], date] = date.today,
                 embed_passages: Callable[[Sequence[str]], Any] | None = None) -> None:
        """`embed_passages`: passage vectors of texts, cached (the answerer's scorer: in memory and in the
        data dir's embedding cache, filled ahead by `passages`); default: the embedder, uncached."""
        self.context = context
        self._search = search
        self._today = today
        self._embed_passages = embed_passages or (lambda texts: context.embedder.embed_documents(list(texts)))
        self._vectors: dict[str, tuple[tuple[str, ...], Any]] = {}  # chunk version → its sentences' vectors

    def passages(self, release: Release) -> list[str]:
        """Every sentence an answer about an older version may compare a question with (each version that a
        newer one replaced), as `_similarity` embeds it: embedded ahead with the answer passages, so the
        first question about an old version does not wait for hundreds of sentences to be embedded."""
        out: list[str] = []
        for versions in self.context.product_versions(release).values():
            for old in versions[:-1]:
                chunks = [c for c in self.context.chunks_of(old.entry.chunk_version) if c.document != CATALOG_DOCUMENT]
                out.extend(_plain(s) for s, _ in sentence_units(chunks, tables=True))
        return out

    def search(self, req: SearchRequest) -> SearchResult:
        """The ask's retrieval: pinned by a version question's cue, or a diff of two versions, else as asked."""
        if req.as_of is not None or pinned(req.products):
            return self._search(req)
        release = self.context.release(req.release)
        multi = {pid: vs for pid, vs in self.context.product_versions(release).items() if len(vs) > 1}
        if not multi:
            return self._search(req)
        year = max((pv.since.year for vs in multi.values() for pv in vs if pv.since), default=self._today().year)
        cue = detect_cue(req.query, year, self._today())
        change = asks_change(req.query)
        if cue is None and not change:
            return self._search(req)
        found = self._search(req)
        pid, how = self._target(req, found, multi)
        if pid is None:
            return found
        # A date is about versions only for the product the question names or whose rule it asks about; a date
        # the question is set in ("in April") only when it asks how something was defined, counted or treated.
        strong = how in ("named", "linked")
        best = bool(found.hits) and found.hits[0].product_id == pid
        versions = multi[pid]
        # "what changed over the summer", when a new version took effect in it, asks about the rule's change
        spanned = change and across(cue, versions) is not None
        if cue is not None and cue.day is not None and not (strong or best):
            return found
        if cue is not None and cue.during and not (RULE_WORDS.search(req.query) or spanned) and not best:
            return found
        missing = missing_numbers(req.query, versions) if strong else ()
        if missing:
            spec = {"product": pid, "asked": list(missing), "versions": [pv.version for pv in versions]}
            return replace(found, params={**found.params, "version_missing": spec})
        pair = change_pair(req.query, versions, default=strong and self._changed_hit(found, pid, versions),
                           cue=cue) if change else None
        if pair is not None and not (strong or best):
            return found  # versions named of a product the question neither names nor mainly retrieves
        if pair is not None:
            try:
                return self.diff(req, pid, pair[0].version, pair[1].version)
            except ProductNotFound:
                return found
        chosen = cue_version(cue, versions) if cue is not None else None
        if chosen is None or chosen.current:
            return found
        result = self._search(replace(req, products=(f"{pid}@{chosen.version}",)))
        rule = {"rule": f"{NAME}@{VERSION}", "cue": cue.text if cue else "", "product": pid, "version": chosen.version,
                "target": how}
        return replace(result, params={**result.params, "version_rule": rule})

    def _target(self, req: SearchRequest, found: SearchResult, multi: Mapping[str, Sequence[ProductVersion]]
                ) -> tuple[str | None, str]:
        """(the product a version question is about, how it was found): named by id or title; linked by a
        word of its name, title or tags that is also a hit's product; else the best-ranked hit's."""
        catalog = self.context.catalog
        low = req.query.lower()
        readable = {pid: p for pid in multi if (p := catalog.products.get(pid)) is not None
                    and req.principal.can_read(p)}
        for pid, product in readable.items():
            if pid in low or product.title.lower() in low:
                return pid, "named"
        asked = [w for w in words(req.query) if w not in FUNCTION_WORDS and len(w) > 2]
        hit_products = {h.product_id for h in found.hits}
        for pid, product in readable.items():
            names = {w for part in (product.name, product.title, *product.tags) for w in words(part)}
            if pid in hit_products and any(same_word(q, n) for q in asked for n in names):
                return pid, "linked"
        return next((h.product_id for h in found.hits if h.product_id in readable), None), "hits"

    def _similarity(self, question: str, chunk_version: str, units: Sequence[tuple[str, Any]]) -> dict[str, float]:
        """Cosine of the question with each sentence of a version (alone, as a breadcrumb would make every
        sentence of a document alike; vectors from `embed_passages`, kept here per version)."""
        sentences = tuple(s for s, _ in units)
        cached = self._vectors.get(chunk_version)
        if cached is None or cached[0] != sentences:
            cached = (sentences, self._embed_passages([_plain(s) for s in sentences]))
            self._vectors[chunk_version] = cached
        q = self.context.embedder.embed_query(question)
        return dict(zip(sentences, (float(v) for v in cached[1] @ q), strict=True))

    def _changed_hit(self, found: SearchResult, pid: str, versions: Sequence[ProductVersion]) -> bool:
        """Does a hit of `pid` come from a document that differs between its previous and current version?"""
        current = next((i for i, pv in enumerate(versions) if pv.current), len(versions) - 1)
        if current == 0:
            return False
        old, new = versions[current - 1].entry.documents, versions[current].entry.documents
        changed = {d for d in set(old) & set(new) - {CATALOG_DOCUMENT} if old[d] != new[d]}
        return any(h.product_id == pid and h.chunk.document in changed for h in found.hits)

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
            hits.append(_hit(chunk, entry, release.id, product.domain, len(hits) + 1))
        params = {"searcher": f"{NAME}@{VERSION}", "release": release.id, "requested_release": req.release,
                  "k": req.k, "filters": {"products": sorted(pins), "domains": None, "classifications": None,
                                          "documents": None},
                  "products_searched": sorted(entries), "reranker": None,
                  "version_diff": {"product": pid, "from": ea.product_version, "to": eb.product_version,
                                   "changes": len(changes), "quoted": len(prose)}}
        return SearchResult(release_id=release.id, hits=tuple(hits), params=params, timings_ms={})

    def answer(self, question: str, found: SearchResult) -> Answer | None:
        """The version stage's own answer: a "what changed" diff, what a pinned older version said, or an
        abstention for a version that does not exist; None for any other search."""
        if found.params.get("version_diff"):
            return self._diff_answer(question, found)
        if found.params.get("version_missing"):
            return self._missing_answer(question, found)
        if found.params.get("version_rule"):
            return self._pinned_answer(question, found)
        return None

    def _versions(self, found: SearchResult, pid: str) -> tuple[ProductVersion, ...]:
        return self.context.product_versions(self.context.release(found.release_id))[pid]

    def _missing_answer(self, question: str, found: SearchResult) -> Answer:
        spec = found.params["version_missing"]
        known = "; ".join(_version_span(pv, vs) for vs in [self._versions(found, spec["product"])] for pv in vs)
        asked = ", ".join(a.replace("#", "number ") for a in spec["asked"])
        text = f"{spec['product']} has no version {asked}; its versions are: {known}."
        return Answer(question=question, text=text, citations=(), abstained=True, support=0.0,
                      answerer=f"{NAME}.missing@{VERSION}", sentences=(AnswerSentence(text, (), 0.0),),
                      outcome="abstained", decision={"rule": "version-missing", **spec})

    def _pinned_answer(self, question: str, found: SearchResult) -> Answer | None:
        """What the pinned version said where it differs from the version that replaced it (see the module
        docstring); None when no changed passage matches the question at least as well as an unchanged one."""
        rule = found.params["version_rule"]
        pid, version = rule["product"], rule["version"]
        versions = self._versions(found, pid)
        i = next(n for n, pv in enumerate(versions) if pv.version == version)
        if i + 1 >= len(versions):
            return None
        old, newer = versions[i], versions[i + 1]
        old_chunks = [c for c in self.context.chunks_of(old.entry.chunk_version) if c.document != CATALOG_DOCUMENT]
        changed = {s for c in document_changes(old_chunks, self.context.chunks_of(newer.entry.chunk_version), True)
                   for s, _ in c.old}
        units = sentence_units(old_chunks, tables=True)
        if not changed or not units:
            return None
        # Three rankings of the version's passages, fused as retrieval fuses its own (retrieval.fusion): by the
        # question's words, by meaning (the embedder's cosine), and the changed passages (the old rule) by meaning.
        scores = _relevance(question, units)
        order = {s: n for n, (s, _) in enumerate(units)}
        by_words = sorted((s for s, _ in units if scores[s] > 0), key=lambda s: (-scores[s], order[s]))
        if not by_words:
            return None  # no topic word of the question in this version: the answerer's to answer or abstain
        cosine = self._similarity(question, old.entry.chunk_version, units)
        by_meaning = sorted(order, key=lambda s: (-cosine[s], order[s]))
        by_change = [s for s in by_meaning if s in changed]
        # A question asking when ("on which day were figures final") is answered by a passage stating a time:
        # those passages by the question's words then meaning, a fourth ranking (empty for any other question).
        timed = [s for s in order if _ASKS_TIME.search(question) and _STATES_TIME.search(s)]
        topic = _relevance(_ASKS_TIME.sub(" ", question), units) if timed else {}  # "which day": not a topic
        by_time = sorted(timed, key=lambda s: (-topic[s], -cosine[s], order[s]))
        fused = reciprocal_rank_fusion({"words": by_words, "meaning": by_meaning, "changed": by_change,
                                        "time": by_time})
        chunk_of = dict(units)
        # The fused top passages, and each ranking's best beside them (a detail the question's rare words find,
        # such as a date or a record number, is not outvoted by the two meaning rankings).
        best = [ranking[0] for ranking in (by_words, by_meaning, by_change, by_time) if ranking]
        picks = [(s, chunk_of[s]) for s in dict.fromkeys([*(s for s, _ in fused[:MAX_QUOTED]), *best])]
        prose = {s for s, _ in sentence_units(old_chunks)}
        lead = next((sc for sc in units if sc[0] in changed and sc[0] in prose
                     and sc[1].document == chunk_of[fused[0][0]].document), None)
        if lead is not None and lead not in picks:
            picks.insert(0, lead)  # a document states its rule first: the version's definition sentence
        picks.sort(key=lambda sc: order[sc[0]])
        cards = [c for c in self.context.chunks_of(old.entry.chunk_version) if c.document == CATALOG_DOCUMENT][:1]
        draft = _Draft()
        domain = self.context.catalog.products[pid].domain if pid in self.context.catalog.products else ""
        cite = [_hit(c, old.entry, found.release_id, domain, n) for n, c in enumerate(cards, start=1)]
        draft.say(f"{pid} version {_version_span(old, versions)} said, where it differs from version "
                  f"{newer.version} (the current version is {_current(versions).version}):", cite)
        hits = {h.chunk_id: h for h in found.hits}
        for sentence, chunk in picks:
            draft.say(f"In {chunk.document}: \"{_plain(sentence)}\"",
                      [hits.get(chunk.chunk_id) or _hit(chunk, old.entry, found.release_id, domain, len(hits) + 1)])
        return draft.answer(question, f"{NAME}.pinned@{VERSION}",
                            {"rule": "version-pinned", "product": pid, "version": version,
                             "compared_with": newer.version, "quoted": len(picks)})

    def _diff_answer(self, question: str, found: SearchResult) -> Answer:
        """The "what changed" answer of a diff search, citing both versions."""
        spec = found.params["version_diff"]
        pid, old, new = spec["product"], spec["from"], spec["to"]
        known = {pv.version: pv for pv in self._versions(found, pid)}
        a, b = known[old], known[new]
        by_chunk = {(h.product_version, h.chunk_id): h for h in found.hits}
        cards = [h for h in found.hits if h.chunk.document == CATALOG_DOCUMENT]
        draft = _Draft()
        facts = [f"version {old} → {new}"]
        if b.since is not None:
            facts.append(f"version {new} in effect from {b.since.date().isoformat()}")
        if a.entry.classification != b.entry.classification:
            facts.append(f"classification {a.entry.classification} → {b.entry.classification}")
        draft.say(f"What changed in {pid} from version {old} to version {new}: contract facts: {'; '.join(facts)}.",
                  cards)
        old_docs, new_docs = set(a.entry.documents) - {CATALOG_DOCUMENT}, set(b.entry.documents) - {CATALOG_DOCUMENT}
        compared = sorted(old_docs & new_docs)
        changes = [c for c in document_changes(self.context.chunks_of(a.entry.chunk_version),
                                               self.context.chunks_of(b.entry.chunk_version)) if c.old and c.new]
        for change in changes[:MAX_CHANGES]:
            draft.say(f"In {change.document}, version {old} said: \"{' '.join(_plain(t) for t, _ in change.old)}\"",
                      [by_chunk[k] for _, c in change.old if (k := (old, c.chunk_id)) in by_chunk])
            draft.say(f"Version {new} says: \"{' '.join(_plain(t) for t, _ in change.new)}\"",
                      [by_chunk[k] for _, c in change.new if (k := (new, c.chunk_id)) in by_chunk])
        if not changes:
            draft.say(f"The documents both versions hold ({', '.join(compared) or 'none'}) read the same.", [])
        unkept = len(new_docs - old_docs)
        if unkept:
            draft.say(f"Compared: {', '.join(compared) or 'no document'}; {unkept} other document(s) of version "
                      f"{new} have no copy kept for version {old}.", [])
        return draft.answer(question, f"{NAME}.diff@{VERSION}",
                            {"rule": "version-diff", "product": pid, "from": old, "to": new,
                             "changes": len(changes), "quoted": min(len(changes), MAX_CHANGES)})

    def replay(self, req: SearchRequest, params: Mapping[str, Any]) -> SearchResult:
        """The recorded retrieval again: a recorded diff is recomputed, anything else searched as recorded."""
        spec = params.get("version_diff")
        if spec:
            return self.diff(req, spec["product"], spec["from"], spec["to"])
        return self._search(req)
