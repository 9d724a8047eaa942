"""Find personal data in text and replace it with typed placeholders.

Uses presidio-analyzer's pattern recognizers (e-mail, phone, card, IBAN, US SSN, IP address) on a blank
spaCy pipeline: no NER model is downloaded or loaded, so nothing here needs the network. Names of people
are deliberately not detected (that needs an NER model, and our documents name their owners on purpose).

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
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from indexing.types import PiiFinding
from knowledge.errors import ConfigError

ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
)

THRESHOLDS: dict[str, float] = {
    "EMAIL_ADDRESS": 0.5,
    "PHONE_NUMBER": 0.4,
    "CREDIT_CARD": 0.9,
    "IBAN_CODE": 0.9,
    "US_SSN": 0.5,
    "IP_ADDRESS": 0.6,
}

_PHONE_CONTEXT = re.compile(
    r"\b(phone|call|tel|telephone|mobile|cell|fax|sms|whatsapp)\b[^\d\n]{0,20}$", re.IGNORECASE
)
_PHONE_CONTEXT_WINDOW = 30
_WINDOW = 100_000  # characters analysed at once
_WINDOW_OVERLAP = 500  # longer than any finding, so one cut by a window edge is whole in the next
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")


class PiiScanner:
    """Detects PII in text. `warm_up()` builds the analyzer: no downloads, but a few seconds the first time
    in a process, because presidio imports transformers."""

    NAME = "pii-presidio-patterns"
    # Bump when detection changes (entities, thresholds, recognizer settings): redacted text changes.
    VERSION = "1"

    def __init__(self, entities: Sequence[str] = ENTITIES, language: str = "en") -> None:
        unknown = sorted(set(entities) - set(ENTITIES))
        if unknown:
            raise ConfigError(f"unknown PII entity types {unknown}; choose from {list(ENTITIES)}")
        self.name = self.NAME
        self.version = self.VERSION
        self.entities = tuple(entities)
        self.language = language
        self._analyzer: Any = None

    def warm_up(self) -> None:
        if self._analyzer is not None:
            return
        # presidio imports transformers (for engines we do not use): keep the hub offline from the start.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import spacy
        from presidio_analyzer import AnalyzerEngine, Pattern, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UsSsnRecognizer,
        )

        language = self.language

        class BlankSpacyNlpEngine(SpacyNlpEngine):
            """Tokenises with a blank spaCy pipeline instead of downloading a trained model."""

            def load(self) -> None:
                self.nlp = {language: spacy.blank(language)}

        class OfflineEmailRecognizer(EmailRecognizer):
            """presidio validates domains against the public-suffix list, fetched over the network."""

            def validate_result(self, pattern_text: str) -> bool | None:
                return bool(_EMAIL_DOMAIN.search(pattern_text))

        mastercard_2_series = Pattern(
            "Mastercard 2-series (weak, Luhn-checked)",
            r"\b(2(?:2[2-9]\d|[3-6]\d{2}|7[01]\d|720))[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{4})\b",
            0.3,
        )
        engine = BlankSpacyNlpEngine(models=[{"lang_code": language, "model_name": f"blank:{language}"}])
        engine.load()
        registry = RecognizerRegistry(supported_languages=[language])
        for recognizer in (
            OfflineEmailRecognizer(supported_language=language),
            PhoneRecognizer(supported_language=language, supported_regions=("US",)),
            CreditCardRecognizer(
                supported_language=language, patterns=[*CreditCardRecognizer.PATTERNS, mastercard_2_series]
            ),
            IbanRecognizer(supported_language=language),
            UsSsnRecognizer(supported_language=language),
            IpRecognizer(supported_language=language),
        ):
            registry.add_recognizer(recognizer)
        self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[language])

    def scan(self, text: str) -> list[PiiFinding]:
        """PII findings in `text`, sorted by start; overlaps resolved (longest, then highest score, wins)."""
        if self._analyzer is None:
            raise RuntimeError("PiiScanner is not warmed up: call warm_up() first")
        if not text.strip():
            return []
        candidates: list[PiiFinding] = []
        # spaCy refuses texts over 1M characters; overlapping windows also keep memory flat.
        for offset in range(0, len(text), _WINDOW - _WINDOW_OVERLAP):
            window = text[offset : offset + _WINDOW]
            results = self._analyzer.analyze(text=window, language=self.language, entities=list(self.entities))
            candidates.extend(
                PiiFinding(r.entity_type, offset + r.start, offset + r.end, round(float(r.score), 4))
                for r in results
                if r.score >= THRESHOLDS.get(r.entity_type, 1.0)
                and _plausible(text, r.entity_type, offset + r.start, offset + r.end)
            )
            if offset + _WINDOW >= len(text):
                break
        return resolve_overlaps(candidates)

    def redact_span(self, text: str, start: int, end: int, findings: Sequence[PiiFinding]) -> tuple[str, int]:
        """See `redact_span`."""
        return redact_span(text, start, end, findings)


def _plausible(text: str, entity_type: str, start: int, end: int) -> bool:
    if entity_type != "PHONE_NUMBER":
        return True
    matched = text[start:end]
    if not matched.strip().isdigit():
        return True  # formatted: "(503) 555-0147", "971-204-3318", "+1 541 555 0199"
    before = text[max(0, start - _PHONE_CONTEXT_WINDOW) : start]
    return bool(_PHONE_CONTEXT.search(before))


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
