"""The pattern recognisers of the PII scanner, offline: presidio's (e-mail, phone, card, IBAN, US SSN, IP
address) on a blank spaCy pipeline, the phone-number context rule and the postcode rules. Thresholds and
rules are described in `indexing.pii`."""

from __future__ import annotations

import re
from typing import Any

from indexing.types import PiiFinding

_PHONE_CONTEXT = re.compile(
    r"\b(phone|call|tel|telephone|mobile|cell|fax|sms|whatsapp)\b[^\d\n]{0,20}$", re.IGNORECASE
)
_PHONE_CONTEXT_WINDOW = 30
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")

_US_STATES = re.findall(
    r"\w\w", "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
    "NC ND OH OK OR PA PR RI SC SD TN TX UT VT VA WA WV WI WY"
)
_ZIP = r"(?<![\w$.,/:-])\d{5}(?:-\d{4})?(?![\w/:-]|[.,]\d)"
_ZIP_AFTER_STATE = re.compile(rf"\b(?:{'|'.join(_US_STATES)}),?[ \t]+({_ZIP})")
_POSTCODE_WORD = re.compile(r"\b(?:zip|zip[ -]?code|post[ -]?code|postal[ -]code)s?\b", re.IGNORECASE)
_POSTCODE_REACH = 150
_ZIP_TOKEN = re.compile(_ZIP)
_UK_POSTCODE = re.compile(r"(?<![\w-])(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})(?![\w-])")


def build_analyzer(language: str) -> Any:
    """presidio's AnalyzerEngine with the recognisers above, tokenising with a blank spaCy pipeline."""
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

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        """Tokenises with a blank spaCy pipeline: the pattern recognizers need no trained model."""

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
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[language])


def postcodes(text: str) -> list[PiiFinding]:
    """UK postcodes, and US ZIP codes after a state code or a postcode word."""
    found = [PiiFinding("POSTCODE", m.start(), m.end(), 0.6) for m in _UK_POSTCODE.finditer(text)]
    found.extend(PiiFinding("POSTCODE", m.start(1), m.end(1), 0.85) for m in _ZIP_AFTER_STATE.finditer(text))
    for word in _POSTCODE_WORD.finditer(text):
        zip_code = _ZIP_TOKEN.search(text, word.end())
        if zip_code is not None and zip_code.start() - word.end() <= _POSTCODE_REACH:
            found.append(PiiFinding("POSTCODE", zip_code.start(), zip_code.end(), 0.7))
    return found


def plausible(text: str, entity_type: str, start: int, end: int) -> bool:
    """False for a presidio phone number that is a bare run of digits with no phone word before it."""
    if entity_type != "PHONE_NUMBER":
        return True
    matched = text[start:end]
    if not matched.strip().isdigit():
        return True  # formatted: "(503) 555-0147", "971-204-3318", "+1 541 555 0199"
    before = text[max(0, start - _PHONE_CONTEXT_WINDOW) : start]
    return bool(_PHONE_CONTEXT.search(before))
