"""What a discovery question asks of the catalog (pure rules over the question and the catalog's own
vocabulary, never over our golden questions): `asked` gives the fact groups its wording asks for;
`recognise` adds the scope — one product (catalog linking, `link_products`, fused with retrieval's
ranking for "which product …") or all visible products through filters — and returns a `Recognised`,
or None when the question is not a discovery question."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from knowledge.catalog_search import QUESTION_WORDS
from knowledge.model import CLASSIFICATIONS, KnowledgeProduct, Principal
from retrieval.discovery.cache import TEXT_WEIGHT, CatalogFacts
from retrieval.discovery.filters import comparisons
from retrieval.discovery.words import _FUNCTION, _match, _words, respelt_words
from retrieval.fusion import reciprocal_rank_fusion

# What a question asks for: fact group → cue pattern. Order = the order sentences are written in.
ASKS: dict[str, re.Pattern[str]] = {k: re.compile(v, re.IGNORECASE) for k, v in {
    "which": r"\b(which|what)\s+(\w+\s+)?(product|data product|knowledge product|dataset|knowledge base)\b"
             r"|\bwhere\b.*\b(defined|definition|documented|published|written|kept|live|lives|find)\b"
             r"|\bwhere (would|should|do|can|could|might) (i|we|one) (go|look|turn|start)\b"
             r"|\bwhat should i (read|use|look at|check)\b|\bshould i (use|read|look in|look at|check)\b",
    "purpose": r"\bwhat (does|do|is|'s)\b.*\b(cover|covers|contain|contains|hold|holds|include|includes|for|about)\b",
    "owner": r"\b(own|owns|owned|owner|owners|ownership|in charge|responsible|accountable|maintain|maintains|maintained|"
             r"maintainer|look after|looks after|looking after|behind|belong|belongs|steward\w*|lead|leads)\b"
             r"|\b(which|what) team\b|\bwho (runs|manages|curates|keeps)\b",
    "contact": r"\b(contact|ping|talk to|speak to|reach|reach out to|get in touch|email|message|whom)\b"
               r"|\bwho (do|should|can|would) (i|we) (ask|go to|bug|chase)\b|\bwho to (ask|go to)\b"
               r"|\bgo-?to (person|people|guy|contact|team)\b|\bpoint (of contact|person)\b",
    "members": r"\b(members?|who else(?! (can|may|is allowed to|gets to|is able to) )|who works)\b|\bwho(?:'?s| is| are)? (?:on|in) (?:the )?(?:\w+\s+){0,3}team\s*[?.!]*$",
    "freshness": r"\b(fresh\w*|stale\w*|up[ -]?to[ -]?date|out[ -]?of[ -]?date|outdated|refresh\w*|how old|"
                 r"last (updated|changed|reviewed|touched|edited|modified)|updated|reviews?|reviewed|looked over|"
                 r"how often|how recent\w*|touched|overdue|past due|gone (off|stale|old)|"
                 r"(updated|reviewed|looked at|touched|checked)(\s+\S+){0,6}?\s+recently|"
                 r"recently (updated|reviewed|looked at|touched|checked)|"
                 # "still valid or expired?", "is it obsolete": whether a product can still be relied on
                 r"still (valid|accurate|reliable|usable|good)|valid or|expired|obsolete|lapsed|"
                 r"(look|looks|seem|seems|feel|feels) (old|dated|outdated|stale|out of date))\b"
                 # "current" said of a product ("is it still current?"), not of a version or a rule
                 r"|\bcurrent\b(?=\s*(?:[?.!,;]|$|or\b|and\b|enough\b))",
    "retention": r"\b(retain\w*|retention|kept|keep|hang on to|hold on to|old (versions|copies|releases|snapshots)|"
                 r"archiv\w*|stick around|(get|gets|are|is) (deleted|purged|thrown away))\b",
    "classification": r"\b(classif\w*|confidential|restricted|sensitiv\w*|locked[ -]down|secret|"
                      r"open (to|for) (everybody|everyone|anyone|all))\b"
                      r"|\b(public|internal|private) or\b|\bor (public|internal|private)\b",
    "access": r"\b(who (else )?(can|may|is allowed to|gets to|is able to) (read|see|access|look at|view|open)|allowed to|"
              r"read access|access|(which|what) roles?|roles? (can|may|with|have)|permission\w*|"
              r"can i (\w+ )?(read|see|access|open|use|look at|view)|am i allowed|may i (read|see))\b",
    "pii": r"\b(pii|personal (data|details|information|info)|customer details|redact\w*|scrub\w*|"
           r"anonymi[sz]\w*|masked|privacy)\b",
    "domain": r"\bdomains?\b|\b(which|what) (area|part) of the (business|company|org\w*)\b|\bfalls? under\b"
              r"|\bbusiness area\b",
    "version": r"\b(which|what|current|latest) (version|release)\b|\bversion\b.*\b(current|published|latest)\b"
               r"|\b(version|release) (number|no)\b|\bversions (exist|are there|are kept|are available|do we have)\b"
               r"|\b(which|what|how many|any|list|all)\s+(\w+\s+)?(versions|releases)\b",
}.items()}
# A version question about what changed or what was before is about versions' content, not a fact.
_HISTORY = re.compile(r"\b(chang\w*|differ\w*|before|between|compared?|since|history|previous|earlier)\b",
                      re.IGNORECASE)
# "what does the runbook say about X": a question about content, not what a product is for.
_SAYS = re.compile(r"\b(say|says|said|mention\w*|tell|tells|state|states|explain\w*|recommend\w*)\b", re.IGNORECASE)
# "which versions are there", "any older releases": the list of versions, a catalog fact.
_VERSION_LIST = re.compile(r"\b(which|what|how many|any|list|all)\s+(\w+\s+)?(versions|releases)\b"
                           r"|\bversions (exist|are there|are kept|are available|do we have)\b", re.IGNORECASE)
_COMPARE = re.compile(r"\b(chang\w*|differ\w*|between|compar\w*|vs|versus|diff)\b", re.IGNORECASE)

# Words that refer to a product as a thing in the catalog ("the shipping data", "the revenue stuff").
PRODUCT_NOUNS = re.compile(
    r"\b(products?|data|datasets?|docs|documentation|documents|knowledge base|kb|handbook|rulebook|catalog|"
    r"catalogue|stuff|numbers|figures|metrics?|kpis?|definitions?|reports?|reporting|wiki|runbooks?|guides?|"
    r"info|information|materials?|write-?ups?|pages?|content|knowledge|procedures|playbooks?|articles|manuals?|"
    r"handbooks|sops|defs?|specs?|notes|guidance|guidelines|collection|library|repository)\b",
    re.IGNORECASE)
# Questions about products in the plural: "which products…", "which of our data…", "list…", "how many…".
PLURAL = re.compile(
    r"\b(which|what|any|all|list|show)\b\s+(\w+\s+){0,2}(products|datasets|data products|knowledge products)\b"
    r"|\b(which|what) of (our|the|my|your) (data|stuff|products)\b|\bwhat (data|stuff) (is|are)\b"
    r"|\blist\b|\bhow many\b.*\bproducts\b|\bproducts (are|do|does|can|have)\b",
    re.IGNORECASE)
# Wording that asks across products only together with a filter ("anything stale?", "is any of the data I can
# see out of date?", "what confidential stuff is there?", "what can I read?"), and names no product.
SOME = re.compile(
    r"\banything\b|\bany of\b|\bany (data|datasets?|products?|docs|stuff)\b"
    r"|\b(which|what)\s+(\w+\s+){0,2}?(data|stuff|docs|documentation|info|information|material|content|things|"
    r"ones)\b"
    # a question that is a filter alone: "what's stale?", "which are confidential?"
    r"|^\s*(what|which)(?:'?s| is| are| ones are)?\s+(stale|overdue|out of date|outdated|fresh|up to date|public|"
    r"internal|confidential|restricted)\s*[?.!]*\s*$"
    r"|\bwhat (can|may) (i|we) (\w+ )?(read|see|access|open|use)\s*(here|at all|in (the|our) (catalog|mesh))?\s*[?.!]*\s*$",
    re.IGNORECASE)
# "what does <team or person> own / look after", "which products does <team> own"
_OWNER_AGGREGATE = re.compile(r"\b(what|which)\b", re.IGNORECASE)
_WHO = re.compile(r"^\s*(who|whom|who's|whos|whose)\b", re.IGNORECASE)
_STALE = re.compile(r"\b(stale\w*|out[ -]?of[ -]?date|outdated|overdue|expired|obsolete|past (its|their) \w*\s*sla|not (up[ -]?to[ -]?"
                    r"date|fresh)|behind)\b", re.IGNORECASE)
_FRESH = re.compile(r"\b(fresh|up[ -]?to[ -]?date|current)\b", re.IGNORECASE)
_READABLE = re.compile(r"\b(can|may) i (\w+ )?(read|see|access|open|use|get into)\b|"
                       r"\bi (can|may) (\w+ )?(read|see|access|open|use|get into)\b|"
                       r"\b(am i|i am|i'm|im) (allowed|permitted|able) to (\w+ )?(read|see|access|open|use|view)\b|"
                       r"\bi have access\b|\b(available|open|accessible) to me\b|\bmy products\b", re.IGNORECASE)


@lru_cache(maxsize=64)
def _literals(pattern: re.Pattern[str]) -> frozenset[str]:
    """The words a cue pattern spells out (not those its gaps, `.*` or `\\w+`, match)."""
    return frozenset(w for w in re.findall(r"[a-z]+", re.sub(r"\\[a-zA-Z]", " ", pattern.pattern.lower()))
                     if len(w) > 1)


def _cue_words(question: str) -> set[str]:
    """Words of a cue match or a product noun that the cue spells out: they say what is asked, never which
    product (a word in a cue's gap, "where are the *support* runbooks kept", still links)."""
    out: set[str] = set()
    for pattern in (*ASKS.values(), PRODUCT_NOUNS, PLURAL, SOME, _STALE, _FRESH, _READABLE):
        spelled = _literals(pattern)
        for m in pattern.finditer(question):
            out.update(w for w in _words(m.group(0)) if w in spelled or any(
                (len(s) >= 4 and w.startswith(s)) or (len(w) >= 4 and s.startswith(w) and len(s) - len(w) <= 1)
                for s in spelled))
    return out



@dataclass(frozen=True)
class Person:
    name: str
    username: str


@dataclass(frozen=True)
class Recognised:
    """What a discovery question asks: facts (`asks`), of which products (`products`), or across
    products through `filters` (`aggregate`)."""

    asks: tuple[str, ...]
    products: tuple[str, ...] = ()
    aggregate: bool = False
    filters: dict[str, str] = field(default_factory=dict)
    linked_by: str = ""


@lru_cache(maxsize=1)
def _cue_spellings() -> tuple[str, ...]:
    return tuple(sorted({w for pattern in ASKS.values() for w in _literals(pattern) if len(w) >= 5}))


def respell(question: str) -> str:
    """The question with its misspelt cue words spelt as the cues spell them ("who mantains …")."""
    return respelt_words(question, _cue_spellings())


def asked(question: str) -> list[str]:
    """The fact groups the question's wording asks for, in sentence order."""
    out = [name for name, pattern in ASKS.items() if pattern.search(question)]
    if "version" in out and _HISTORY.search(question) and not (_VERSION_LIST.search(question)
                                                              and not _COMPARE.search(question)):
        out.remove("version")
    if "purpose" in out and (len(out) > 1 or _SAYS.search(question)):
        out.remove("purpose")  # "what does X cover" only when nothing more specific is asked
    return out


# "what version of the escalation policy …": the noun a version is asked of, the last word of its phrase.
_VERSION_OF = re.compile(r"\b(?:version|release)s?\s+of\s+(?:the\s+|our\s+|this\s+|that\s+)?((?:[\w-]+\s+){0,4}?[\w-]+?)"
                         r"(?=\s+(?:is|are|was|were|do|does|did|we|in|on|at|currently|now|right|that|should|for|live|"
                         r"running|used|exist|exists|there|kept|available|have|has|had|go|went|apply|applies|say|says)\b"
                         r"|\s*[?.!,:;]|\s*$)", re.IGNORECASE)


def _version_of_other(question: str, visible: Sequence[KnowledgeProduct]) -> bool:
    """Is the version asked of a thing the documents describe ("the support escalation policy"), not of a
    product (a product noun, "the mesh handbook", or a word of a product's id or title, "fulfilment ops")?"""
    m = _VERSION_OF.search(question)
    if m is None:
        return False
    head = _words(m.group(1))[-1:] or ("",)
    if PRODUCT_NOUNS.fullmatch(head[0]) or head[0] in ("it", "them", "this", "that"):
        return False
    names = {w for p in visible for part in (p.id, p.name, p.title) for w in _words(part)}
    return not any(_match(head[0], w) for w in names)


def _people(products: Iterable[KnowledgeProduct]) -> dict[str, Person]:
    return {p.owner.username: Person(p.owner.name, p.owner.username) for p in products}


def _named(question: str, name: str, username: str = "") -> bool:
    """Is the person or team named: every word of the name, its first or last word (a person's), or the
    username."""
    words = set(_words(question))
    parts = _words(name)
    if parts and all(any(_match(w, part) for w in words) for part in parts):
        return True
    return bool(username and username.lower() in question.lower())


def _person_named(question: str, person: Person) -> bool:
    if _named(question, person.name, person.username):
        return True
    words = set(_words(question))
    parts = _words(person.name)
    # A first or last name alone ("Priya's product"): names are rare words, compared exactly.
    return bool(parts) and (parts[0] in words or parts[-1] in words)


# "what does finance own", "show me what support looks after": the subject of an owning verb.
_OWNED_BY = re.compile(r"\b([a-z][a-z-]*)\s+(own|owns|looks? after|maintains?|runs?|manages?|curates?|"
                       r"(is|are) responsible for)\b", re.IGNORECASE)


def _owning_subject(question: str, visible: Sequence[KnowledgeProduct]) -> tuple[str, str] | None:
    """A word of one team's name, or a domain, said as the one who owns: ("team", name) or ("domain", name)."""
    domains = {p.domain for p in visible}
    for m in _OWNED_BY.finditer(question):
        word = m.group(1).lower()
        if word in _FUNCTION:
            continue
        teams = {p.team for p in visible if any(_match(word, w) for w in _words(p.team) if w not in _FUNCTION)}
        if len(teams) == 1:
            return "team", teams.pop()
        if word in domains:
            return "domain", word
    return None


# "in the mesh", "in our catalog": where a product is, not which one.
_WHERE = re.compile(r"\b(in|across|on|from) (the|our) (data )?(mesh|catalog|catalogue)\b", re.IGNORECASE)


def link_products(question: str, visible: Sequence[KnowledgeProduct], principal: Principal,
                  facts: CatalogFacts) -> list[tuple[float, str]]:
    """(score, product id) of every visible product some question word links to, best first."""
    question = _WHERE.sub(" ", question)
    cues = _cue_words(question)
    terms = [w for w in dict.fromkeys(_words(question)) if w not in _FUNCTION and w not in cues and len(w) > 1]
    vocabs = {p.id: (facts.vocab_read if principal.can_read(p) else facts.vocab_facts)[p.id] for p in visible}
    scores: dict[str, float] = {}
    for term in terms:
        weights = {pid: max((wt for w, wt in vocab.items() if _match(term, w)), default=0.0)
                   for pid, vocab in vocabs.items()}
        matching = [pid for pid, wt in weights.items() if wt > 0]
        if not matching:
            continue
        idf = math.log(1 + len(visible) / len(matching))
        for pid in matching:
            scores[pid] = scores.get(pid, 0.0) + weights[pid] * idf
    return sorted(((s, pid) for pid, s in scores.items()), key=lambda sp: (-sp[0], sp[1]))


def _title_named(question: str, product: KnowledgeProduct) -> bool:
    """A word of the product's folder name or title is in the question (not a cue or function word)."""
    cues = _cue_words(question)
    names = {w for part in (product.name, product.title) for w in _words(part)} - _FUNCTION
    return any(_match(q, w) for q in set(_words(question)) - cues - _FUNCTION for w in names if len(q) > 2)


def _filters(question: str, asks: list[str], visible: Sequence[KnowledgeProduct], team: str | None,
             person: Person | None, plural: bool) -> dict[str, str]:
    """The filters an across-products question states: freshness, classification (also by comparison, from
    retrieval/discovery/filters.py with the SLA periods and "found but not readable"), readable by me, team
    or person, domain."""
    filters: dict[str, str] = comparisons(question, visible)
    if _STALE.search(question):
        filters["freshness"] = "stale"
    elif "freshness" in asks and _FRESH.search(question):
        filters["freshness"] = "fresh"
    for c in CLASSIFICATIONS:
        if "classification" not in filters and re.search(rf"\b{c}\b", question, re.IGNORECASE):
            filters["classification"] = c
    if _READABLE.search(question) and "readable" not in filters:
        filters["readable"] = "yes"
    if team is not None and ("owner" in asks or plural):
        filters["team"] = team
    elif person is not None and ("owner" in asks or plural):
        filters["owner"] = person.username
    domains = sorted({p.domain for p in visible})
    domain = next((d for d in domains if re.search(rf"\b{re.escape(d)}\b", question, re.IGNORECASE)), None)
    if domain is not None and ("domain" in asks or "team" not in filters):
        filters["domain"] = domain
    return filters


def _domain_phrase(question: str, visible: Sequence[KnowledgeProduct]) -> bool:
    """"the finance domain", "the customer area": a domain named as a filter, not asked about."""
    return any(re.search(rf"\b{re.escape(d)}\s+(domain|area|side)\b", question, re.IGNORECASE)
               for d in {p.domain for p in visible})


def recognise(question: str, visible: Sequence[KnowledgeProduct], principal: Principal, facts: CatalogFacts,
              retrieved: Sequence[str] = (), evidence: Mapping[str, str] | None = None,
              meaning: Callable[[], str | None] | None = None) -> Recognised | None:
    """What the question asks of the catalog, or None when it is not a discovery question. `visible`:
    the products the principal may discover; `retrieved`: products of the retrieval hits, best first;
    `evidence`: the text of each retrieved product's hits (what retrieval found the question's words in);
    `meaning`: the product the question's topic means when no catalog word links one
    (retrieval/discovery/meaning.py), asked only then."""
    question = respell(question)
    asks = asked(question)
    if "version" in asks and _version_of_other(question, visible):
        asks.remove("version")  # the version of a policy or an API the documents describe: content
    plural = bool(PLURAL.search(question))
    some = bool(SOME.search(question) or (_domain_phrase(question, visible) and _OWNER_AGGREGATE.search(question)))
    if not (asks or plural or some):
        return None  # what the rest would conclude, without matching every team and person (most questions)
    people = _people(visible)
    teams = sorted({p.team for p in visible})
    team = next((t for t in teams if _named(question, t)), None)
    person = next((pp for pp in people.values() if _person_named(question, pp)), None)
    by_id = {p.id: p for p in visible}
    subject = None
    if "owner" in asks and team is None and person is None and not _WHO.search(question):
        subject = _owning_subject(question, visible)
        team = subject[1] if subject is not None and subject[0] == "team" else None

    # Across products: plural wording, "what does <team / person / domain> own", or wording such as
    # "anything" / "what … stuff" with a filter and no product named.
    owner_aggregate = ("owner" in asks and (team or person or subject) is not None
                       and _OWNER_AGGREGATE.search(question) and not _WHO.search(question))
    filters = _filters(question, asks, visible, team, person, plural)
    stated = {"freshness", "classification", "readable", "freshness_sla", "retention"} & set(filters) or (
        "domain" in filters and _domain_phrase(question, visible))
    if not (plural or owner_aggregate) and some and stated and not any(_title_named(question, p) for p in visible):
        plural = True
    if plural or owner_aggregate:
        # A domain, team or person the question names but no visible product has: answered as for a
        # name that does not exist (by the answerer), so a hidden product's names are no oracle.
        if "domain" in asks and "domain" not in filters:
            return None
        if "owner" in asks and not filters:
            return None
        if filters or plural:
            extra = tuple(a for a in asks if a not in ("which", "purpose", "domain")
                          and not (a == "freshness" and "freshness" in filters)
                          and not (a == "classification" and "classification" in filters)
                          and not (a == "access" and "readable" in filters)
                          and not (a == "retention" and "retention" in filters)
                          and not (a == "owner" and ("team" in filters or "owner" in filters)))
            return Recognised(asks=extra, aggregate=True, filters=filters, linked_by="filters")
        return None

    if not asks:
        return None
    # One product (or a few equally named): the question must refer to a product.
    if person is not None and re.search(rf"\b{re.escape(_words(person.name)[0])}'?s\b", question, re.IGNORECASE):
        owned = tuple(p.id for p in visible if p.owner.username == person.username)
        if owned:
            return Recognised(asks=tuple(a for a in asks if a != "which") or ("owner",), products=owned,
                              linked_by="owner")
    linked = link_products(question, visible, principal, facts)
    noun = bool(PRODUCT_NOUNS.search(question))
    if "which" in asks:
        # "Which product covers X": where retrieval found X is evidence too, but with no catalog link only a
        # product whose hits hold every topic word of the question answers it.
        ranking = list(retrieved) if linked else [
            pid for pid in retrieved if pid in by_id and _covers(question, by_id[pid], principal, facts, evidence)]
        if not (linked or ranking):
            return None
        chosen, how = _fused(linked, ranking)
        rest = tuple(a for a in asks if a != "which")
        return Recognised(asks=("which", *rest), products=chosen, linked_by=how)
    if not linked:
        # A fact of one product needs the product named in the catalog's own words, or a catalog card clearly
        # nearest in meaning ("the helpdesk playbook"): that retrieval found the question's words in a
        # product's documents does not make it the product the question means.
        pid = meaning() if meaning is not None and (noun or "contact" in asks or _fragment(question)) else None
        return Recognised(asks=tuple(asks), products=(pid,), linked_by="meaning") if pid is not None else None
    chosen = _best(linked, retrieved)
    if meaning is not None and not any(_named_strongly(question, by_id[pid], principal, facts) for pid in chosen):
        # Linked by a word of a purpose or usage sentence alone ("stats", "recorded"): weak evidence, so a
        # card clearly nearest in meaning wins over it; when none is, the word's link stands.
        pid = meaning()
        if pid is not None and pid not in chosen:
            return Recognised(asks=tuple(asks), products=(pid,), linked_by="meaning")
    # "who do I ping about X": whom to contact about a topic is the catalog's answer, product noun or not.
    if not (noun or "contact" in asks or _fragment(question)
            or any(_title_named(question, by_id[pid]) for pid in chosen)):
        return None
    return Recognised(asks=tuple(asks), products=chosen, linked_by="catalog")


def _named_strongly(question: str, product: KnowledgeProduct, principal: Principal, facts: CatalogFacts) -> bool:
    """Does a question word match a name or tag of the product (weight above a purpose word's)?"""
    cues = _cue_words(_WHERE.sub(" ", question))
    vocab = (facts.vocab_read if principal.can_read(product) else facts.vocab_facts)[product.id]
    strong = [w for w, wt in vocab.items() if wt > TEXT_WEIGHT]
    return any(_match(q, w) for q in set(_words(question)) - cues - _FUNCTION if len(q) > 1 for w in strong)


def _fragment(question: str) -> bool:
    """A chat fragment ("churn owner?", "refunds: classification?"): a few words, no question word or verb
    of its own, so the fact asked and the topic that links a product are all it says."""
    ws = _words(question)
    return len(ws) <= 4 and not set(ws) & QUESTION_WORDS


def _covers(question: str, product: KnowledgeProduct, principal: Principal, facts: CatalogFacts,
            evidence: Mapping[str, str] | None) -> bool:
    """Does every topic word of the question (no cue, function or product-noun word) occur in what the
    principal may see of the product: its catalog vocabulary, or the text of its hits?"""
    cues = _cue_words(_WHERE.sub(" ", question))
    terms = [w for w in dict.fromkeys(_words(_WHERE.sub(" ", question)))
             if w not in _FUNCTION and w not in cues and len(w) > 2]
    if not terms:
        return False
    vocab = set((facts.vocab_read if principal.can_read(product) else facts.vocab_facts)[product.id])
    vocab |= set(_words((evidence or {}).get(product.id, "")))
    return all(any(_match(t, w) for w in vocab) for t in terms)


def _fused(linked: list[tuple[float, str]], retrieved: Sequence[str]) -> tuple[tuple[str, ...], str]:
    """"Which product…": the catalog's ranking (what the products say they cover) and retrieval's (where
    the question's words are written), fused by reciprocal rank (retrieval.fusion, k = 60); a tie goes to
    the catalog's ranking."""
    catalog_rank = [pid for _, pid in linked]
    fused = reciprocal_rank_fusion({"catalog": catalog_rank, "retrieval": list(retrieved)})
    top = fused[0][1]
    tied = [pid for pid, score in fused if score == top]
    best = min(tied, key=lambda pid: catalog_rank.index(pid) if pid in catalog_rank else len(catalog_rank))
    how = "catalog+retrieval" if best in catalog_rank and best in retrieved else (
        "catalog" if best in catalog_rank else "retrieval")
    return (best,), how


def _best(linked: list[tuple[float, str]], retrieved: Sequence[str]) -> tuple[str, ...]:
    """The best-scored product; among equal scores the first retrieved, else all of them."""
    top = linked[0][0]
    tied = [pid for score, pid in linked if score == top]
    if len(tied) == 1:
        return (tied[0],)
    ranked = [pid for pid in retrieved if pid in tied]
    return (ranked[0],) if ranked else tuple(tied)
