"""The scanner skips presidio for text with no digit, "@" or ":" (indexing/pii.py `_PATTERN_CHARS`). These tests
run the analyzer itself on such text, so the shortcut cannot hide a finding the analyzer would have made."""

from __future__ import annotations

import pytest

from indexing.pii import _PATTERN_CHARS, _PRESIDIO_ENTITIES, THRESHOLDS, PiiScanner
from knowledge.settings import SAMPLE_MESH


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    s = PiiScanner()
    s.warm_up()
    return s


def analyzer_findings(scanner: PiiScanner, text: str) -> list[str]:
    results = scanner._analyzer.analyze(text=text, language=scanner.language, entities=list(_PRESIDIO_ENTITIES))
    return [f"{r.entity_type}: {text[r.start:r.end]!r}" for r in results if r.score >= THRESHOLDS.get(r.entity_type, 1.0)]


def sample_lines() -> list[str]:
    """Every line of the sample mesh's documents with the pattern characters taken out."""
    lines = []
    for path in sorted(SAMPLE_MESH.rglob("*")):
        if path.suffix in {".md", ".txt", ".csv", ".yaml", ".json", ".html"} and path.is_file():
            lines += [_PATTERN_CHARS.sub(" ", line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return lines


def test_the_analyzer_finds_nothing_in_text_without_pattern_characters(scanner: PiiScanner) -> None:
    lines = sample_lines()
    assert len(lines) > 1000
    # Whole documents at once are slow through spaCy; batches of lines keep the check to seconds.
    batches = ["\n".join(lines[i:i + 200]) for i in range(0, len(lines), 200)]
    tricky = [
        "write to dana dot kowalski at example dot com", "my card is four one one one", "IBAN DE XX",
        "dead beef cafe", "fe eight zero", "Phone: call Nadia", "ssn is nine nine nine",
    ]
    found = [f for text in batches + [_PATTERN_CHARS.sub(" ", t) for t in tricky] for f in analyzer_findings(scanner, text)]
    assert found == []


@pytest.mark.parametrize("text", [
    "write to dana.kowalski@example.com now", "call (503) 555-0147 today", "logged in from 192.168.10.20",
    "IBAN DE89 3704 0044 0532 0130 00", "SSN 536-22-1234 on the form", "visa 4111111111111111 stored",
])
def test_what_the_analyzer_flags_the_scanner_still_finds(scanner: PiiScanner, text: str) -> None:
    flagged = analyzer_findings(scanner, text)
    assert flagged and _PATTERN_CHARS.search(text)
    assert {f.split(":")[0] for f in flagged} <= {f.entity_type for f in scanner.scan(text)}


def test_the_shortcut_changes_no_scan_of_the_sample_mesh(scanner: PiiScanner) -> None:
    """Documents with pattern characters are scanned as before: every presidio finding of the scanner is one
    the analyzer makes on the whole text."""
    for path in sorted(SAMPLE_MESH.rglob("*.md"))[:40]:
        text = path.read_text("utf-8")
        flagged = {f.split(": ", 1)[1] for f in analyzer_findings(scanner, text)}
        scanned = {repr(text[f.start:f.end]) for f in scanner.scan(text) if f.entity_type in _PRESIDIO_ENTITIES}
        assert scanned <= flagged
