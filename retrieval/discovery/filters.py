"""Filters an across-products question states by comparison rather than by name (pure rules over its
wording): a classification above, below or at least another ("anything above internal?", "the most
sensitive tier"), an SLA period against a length ("refreshed at least weekly", "more than 60 days between
reviews", "kept for longer than three years"), and products the asker may find but not read ("which can I
see in the catalog but not open?"). `comparisons` returns them as filter values; `matches` and `words`
apply and state them. Filters by name (stale, a team, a domain) stay in recognise.py."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from knowledge.facts import sla_words
from knowledge.model import CLASSIFICATIONS, KnowledgeProduct

_LEVEL = "|".join(CLASSIFICATIONS)
# "above internal", "stricter than internal", "confidential or higher", "at least confidential"
_CLASS_ABOVE = re.compile(rf"\b(?:above|higher than|stricter than|more sensitive than|more restricted than|"
                          rf"over)\s+(?:the\s+)?({_LEVEL})\b", re.IGNORECASE)
_CLASS_AT_LEAST = re.compile(rf"\b({_LEVEL})\s+or\s+(?:above|higher|stricter|more)\b|\bat least\s+({_LEVEL})\b",
                             re.IGNORECASE)
_CLASS_BELOW = re.compile(rf"\b(?:below|lower than|less sensitive than|less restricted than|under)\s+(?:the\s+)?"
                          rf"({_LEVEL})\b", re.IGNORECASE)
_CLASS_AT_MOST = re.compile(rf"\b({_LEVEL})\s+or\s+(?:below|lower|less)\b|\bat most\s+({_LEVEL})\b", re.IGNORECASE)
_CLASS_TOP = re.compile(r"\b(?:most|highest|strictest|top)\s+(?:\w+\s+)?(?:sensitiv\w*|classif\w*|restrict\w*|"
                        r"secret\w*|confidential\w*|tier|level)\b|\bmost locked[- ]down\b", re.IGNORECASE)
_CLASS_BOTTOM = re.compile(r"\b(?:least|lowest|most open|least restrict\w*)\s+(?:\w+\s+)?(?:sensitiv\w*|classif\w*|"
                           r"restrict\w*|tier|level)\b|\bmost open\b", re.IGNORECASE)

# Products the asker may find but not read.
UNREADABLE = re.compile(
    r"\b(?:can'?t|cannot|can not|could not|couldn'?t|not (?:actually |be )?(?:able to |allowed to |permitted to )?)"
    r"\s*(?:actually\s+)?(?:read|open|access|get into|look inside|view)\b"
    r"|\bbut not (?:actually )?(?:read|open|access)\b|\b(?:no|without) access\b|\bdon'?t have access\b"
    r"|\b(?:locked|closed) (?:to|for) me\b|\bonly (?:discover|see the (?:catalog|catalogue) (?:entry|facts|card))\b",
    re.IGNORECASE)

_UNIT_DAYS = {"hour": 1 / 24, "day": 1, "week": 7, "fortnight": 14, "month": 30, "quarter": 91, "year": 365}
_ADVERB_DAYS = {"hourly": 1 / 24, "daily": 1, "weekly": 7, "fortnightly": 14, "biweekly": 14, "monthly": 30,
                "quarterly": 91, "yearly": 365, "annually": 365}
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "eighteen": 18, "thirty": 30, "sixty": 60,
                 "ninety": 90}
_NUMBER = r"(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
_UNIT = r"(hour|day|week|fortnight|month|quarter|year)s?"
_ADVERB = "|".join(_ADVERB_DAYS)
# Comparison, then a length or an adverb: (comparator, number or None, unit or adverb)
_PERIOD = re.compile(
    rf"\b(at least|more often than|less often than|longer than|more than|over|shorter than|less than|under|"
    rf"within|at most|up to|no more than|no longer than|every|once (?:a|an|per|every))?\s*"
    rf"(?:(?:{_NUMBER})\s*{_UNIT}|({_ADVERB}))\b", re.IGNORECASE)
_RETENTION = re.compile(r"\b(retain\w*|retention|kept|keep\w*|hold on to|hang on to|archiv\w*|stor(?:e|ed|es))\b",
                        re.IGNORECASE)
_FRESHNESS = re.compile(r"\b(refresh\w*|review\w*|updat\w*|fresh\w*|touched|looked over|revisit\w*|checked)\b",
                        re.IGNORECASE)
# comparator words → the relation of the product's SLA to the length said; "at least weekly" = no longer
_SLA_RELATION = {"at least": "<=", "more often than": "<", "less often than": ">", "longer than": ">",
                 "more than": ">", "over": ">", "shorter than": "<", "less than": "<", "under": "<",
                 "within": "<=", "at most": "<=", "up to": "<=", "no more than": "<=", "no longer than": "<=",
                 "every": "==", "": "=="}
# "at least a year" said of keeping is a lower bound on the retention, not an upper one as of refreshing
_RETENTION_RELATION = _SLA_RELATION | {"at least": ">="}


def _days(number: str | None, unit: str | None, adverb: str | None) -> float:
    if adverb:
        return _ADVERB_DAYS[adverb.lower()]
    n = _NUMBER_WORDS.get((number or "").lower())
    return float(n if n is not None else number or 1) * _UNIT_DAYS[(unit or "day").lower()]


def comparisons(question: str, visible: Sequence[KnowledgeProduct]) -> dict[str, str]:
    """Filter values the question states by comparison: "classification" (">internal", ">=confidential",
    "<confidential", "<=internal", or the top / bottom level among `visible`), "freshness_sla" and
    "retention" ("<=7": days), "readable" ("no")."""
    out: dict[str, str] = {}
    for pattern, op in ((_CLASS_ABOVE, ">"), (_CLASS_AT_LEAST, ">="), (_CLASS_BELOW, "<"), (_CLASS_AT_MOST, "<=")):
        if m := pattern.search(question):
            out["classification"] = op + next(g for g in m.groups() if g).lower()
            break
    else:
        levels = sorted({CLASSIFICATIONS.index(p.classification) for p in visible})
        if levels and _CLASS_TOP.search(question):
            out["classification"] = CLASSIFICATIONS[levels[-1]]
        elif levels and _CLASS_BOTTOM.search(question):
            out["classification"] = CLASSIFICATIONS[levels[0]]
    if UNREADABLE.search(question):
        out["readable"] = "no"
    key = "retention" if _RETENTION.search(question) else "freshness_sla" if _FRESHNESS.search(question) else None
    if key is not None:
        for m in _PERIOD.finditer(question):
            said = re.sub(r"\s+", " ", (m.group(1) or "").lower())
            said = "every" if said.startswith("once") else said
            if not said and not m.group(4):
                continue  # a bare length ("3 years") is no filter; an adverb ("weekly") is
            relations = _RETENTION_RELATION if key == "retention" else _SLA_RELATION
            out[key] = f"{relations[said]}{_days(m.group(2), m.group(3), m.group(4)):g}"
            break
    return out


def _compare(value: float, spec: str) -> bool:
    op, bound = re.fullmatch(r"(<=|>=|==|<|>)(.+)", spec).groups()  # type: ignore[union-attr]
    limit = float(bound)
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit,
            "==": value == limit}[op]


def class_matches(classification: str, spec: str) -> bool:
    """An exact level, or a comparison with one (">internal")."""
    m = re.fullmatch(r"(<=|>=|<|>)?(\w+)", spec)
    if m is None or m.group(1) is None:
        return classification == spec
    return _compare(CLASSIFICATIONS.index(classification), m.group(1) + str(CLASSIFICATIONS.index(m.group(2))))


def period_matches(sla: timedelta, spec: str) -> bool:
    return _compare(sla / timedelta(days=1), spec)


_RELATION_WORDS = {"<": "under", "<=": "at most", ">": "over", ">=": "at least", "==": "exactly"}


def words(key: str, spec: str) -> str:
    """The filter as the answer states it: "are classified above internal", "promise a refresh at most every
    7 days"."""
    if key == "classification":
        m = re.fullmatch(r"(<=|>=|<|>)?(\w+)", spec)
        op, level = (m.group(1), m.group(2)) if m else (None, spec)
        said = {None: "", ">": "above ", ">=": "at least ", "<": "below ", "<=": "at most "}[op]
        return f"are classified {said}{level}"
    op, bound = re.fullmatch(r"(<=|>=|==|<|>)(.+)", spec).groups()  # type: ignore[union-attr]
    length = sla_words(timedelta(days=float(bound)))
    if key == "retention":
        return f"keep versions for {_RELATION_WORDS[op]} {length}"
    return f"have a freshness SLA of {_RELATION_WORDS[op]} {length}"
