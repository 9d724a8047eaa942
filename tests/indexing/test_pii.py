from __future__ import annotations

import itertools

import pytest

from indexing.pii import PiiScanner, redact_span, resolve_overlaps
from indexing.types import PiiFinding


def found(scanner: PiiScanner, text: str) -> list[tuple[str, str]]:
    return [(f.entity_type, text[f.start : f.end]) for f in scanner.scan(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("best number is (503) 555-0147 today", "PHONE_NUMBER", "(503) 555-0147"),
        ("my partner can take it on 971-204-3318.", "PHONE_NUMBER", "971-204-3318"),
        ("reach me on +1 541 555 0199 after six", "PHONE_NUMBER", "+1 541 555 0199"),
        ("or 503.555.0182 at home", "PHONE_NUMBER", "503.555.0182"),
        ("dial 1-617-555-0163 please", "PHONE_NUMBER", "1-617-555-0163"),
        ("London office +44 20 7946 0958", "PHONE_NUMBER", "+44 20 7946 0958"),
        ("call me at 5035550147", "PHONE_NUMBER", "5035550147"),
        ("write to dana.kowalski@example.com now", "EMAIL_ADDRESS", "dana.kowalski@example.com"),
        ("ops at first.last+tag@corp.example.org", "EMAIL_ADDRESS", "first.last+tag@corp.example.org"),
        ("card 4916 2033 3543 5702 exp 08/28", "CREDIT_CARD", "4916 2033 3543 5702"),
        ("card 5425-4898-2938-2994 was declined", "CREDIT_CARD", "5425-4898-2938-2994"),
        ("new one: 2223 0031 2200 3222, expiry 09/29", "CREDIT_CARD", "2223 0031 2200 3222"),
        ("amex 3782 822463 10005 on file", "CREDIT_CARD", "3782 822463 10005"),
        ("visa 4111111111111111 stored", "CREDIT_CARD", "4111111111111111"),
        ("IBAN DE89 3704 0044 0532 0130 00 for refunds", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
        ("SSN 536-22-1234 on the form", "US_SSN", "536-22-1234"),
        ("logged in from 192.168.10.20 twice", "IP_ADDRESS", "192.168.10.20"),
        ("Shipping zip is 97214.", "POSTCODE", "97214"),
        ("Could you confirm the postcode?\n\n[10:04] Harriet: 22207.", "POSTCODE", "22207"),
        ("ship to 12 Elm St, Portland, OR 97214-1203 please", "POSTCODE", "97214-1203"),
        ("my flat is at SW1A 1AA in London", "POSTCODE", "SW1A 1AA"),
        ("post code: M1 1AE", "POSTCODE", "M1 1AE"),
    ],
)
def test_finds_personal_data(pii_scanner, text, entity, value):
    assert (entity, value) in found(pii_scanner, text)


@pytest.mark.parametrize(
    "text",
    [
        "Order 1000234 shipped on 2024-03-15 and was delivered 03/15/2024.",
        "Order CK-7730215 totalled $1,234.56; FY2025 net revenue was $84,200,000 (4,512,300 units).",
        "Invoice INV-2024-00017, PO 4500012345, SKU 100-200-300, GL 4000-100, 97214 units.",
        "Verify the postcode. Order CK-7730215 totalled $97,214.00 and ticket 41820-A was closed.",
        "FY25 Q3 revenue; GL code 4000 in the OR 2025 plan; 12345 bags in 2026.",
        "Version 1.2.3 released at 09:17 on 2026-10-14T09:17:00Z; churn was 4.1% in Q3 2026.",
        "Card 4111 1111 1111 1112 fails the Luhn check.",
        "Refund order 5035550147 within 30 days.",
        "Run 20240315-0001 processed 212,400 subscribers and 12345678 rows.",
        "Procedure id FIN-PROC-011, ticket #418207, tracking 1Z999AA10123456784.",
    ],
)
def test_ordinary_numbers_are_not_personal_data(pii_scanner, text):
    assert found(pii_scanner, text) == []


def test_scan_returns_sorted_non_overlapping_findings(pii_scanner):
    text = "Mail a@example.com or call (503) 555-0147; card 4111-1111-1111-1111."
    findings = pii_scanner.scan(text)
    assert [f.entity_type for f in findings] == ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
    assert pii_scanner.scan("   ") == []


def test_scan_requires_warm_up():
    with pytest.raises(RuntimeError, match="warm_up"):
        PiiScanner().scan("a@example.com")


def test_overlaps_keep_the_longest_then_the_highest_score():
    kept = resolve_overlaps(
        [
            PiiFinding("PHONE_NUMBER", 10, 20, 0.4),
            PiiFinding("CREDIT_CARD", 8, 27, 1.0),
            PiiFinding("US_SSN", 30, 41, 0.5),
            PiiFinding("PHONE_NUMBER", 30, 41, 0.4),
            PiiFinding("EMAIL_ADDRESS", 50, 60, 1.0),
        ]
    )
    assert kept == [
        PiiFinding("CREDIT_CARD", 8, 27, 1.0),
        PiiFinding("US_SSN", 30, 41, 0.5),
        PiiFinding("EMAIL_ADDRESS", 50, 60, 1.0),
    ]


def test_redact_span_replaces_findings_with_typed_placeholders(pii_scanner):
    text = "Ticket: mail dana@example.com or call 971-204-3318. Card 4916 2033 3543 5702. Thanks."
    findings = pii_scanner.scan(text)
    start, end = text.index("mail"), text.index(" Thanks")
    redacted, n = pii_scanner.redact_span(text, start, end, findings)
    assert redacted == "mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>. Card <CREDIT_CARD>."
    assert n == 3


def test_redact_span_removes_the_visible_part_of_a_finding_cut_by_the_span():
    text = "call 971-204-3318 now"
    findings = [PiiFinding("PHONE_NUMBER", 5, 17, 0.4)]
    assert redact_span(text, 0, 10, findings) == ("call <PHONE_NUMBER>", 1)
    assert redact_span(text, 9, len(text), findings) == ("<PHONE_NUMBER> now", 1)
    assert redact_span(text, 17, len(text), findings) == (" now", 0)


def test_redact_span_without_findings_is_the_plain_span():
    assert redact_span("abcdef", 1, 4, []) == ("bcd", 0)
    with pytest.raises(ValueError):
        redact_span("abc", 2, 5, [])


def test_long_texts_are_scanned_in_windows_without_losing_findings(pii_scanner):
    filler = "Nothing personal here, just order 1000234 and some words. " * 1800  # ~104k characters
    text = filler + "Mail dana@example.com or call (503) 555-0147." + filler + " card 4111 1111 1111 1111"
    found_values = [text[f.start : f.end] for f in pii_scanner.scan(text)]
    assert found_values == ["dana@example.com", "(503) 555-0147", "4111 1111 1111 1111"]


def test_a_finding_across_a_window_edge_is_found_once(pii_scanner):
    from indexing import pii

    prefix = "x " * ((pii._WINDOW - 8) // 2)  # the e-mail straddles the first window's end
    text = prefix + "dana@example.com is the address."
    assert [(f.entity_type, text[f.start : f.end]) for f in pii_scanner.scan(text)] == [
        ("EMAIL_ADDRESS", "dana@example.com")
    ]
