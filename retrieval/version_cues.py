"""What a question says about versions (pure rules over its wording, no index): `detect_cue` finds a named
version ("v1", "version 2.0.0", "the second version"), a day ("before July", "back in June 2026", "in
Q2 2026", "last year") or a relative version ("previously", "the old rule", "before the last version",
"originally"); `cue_version` maps a cue onto a product's versions; `change_pair` gives the two versions a
"what changed" question compares. The router that acts on them: retrieval/version_questions.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from knowledge.versions import version_key
from retrieval.versions import ProductVersion, version_at

MONTHS = {m: i for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                      "september", "october", "november", "december"), start=1)}
MONTHS |= {m[:3]: i for m, i in list(MONTHS.items())} | {"sept": 9}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
# Seasons (northern; winter Y = December Y-1 to February Y) and the parts of a year people name.
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
_PART = r"(?:early|mid|late)[- ]"
# A day first ("1 March 2026", "the 3rd of June"), as much of the world writes it; an ISO month ("2026-03").
_DAY_FIRST = rf"\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH})\.?(?:,?\s+\d{{4}})?"
_DATE = (rf"(\d{{4}}-\d{{2}}-\d{{2}}|\d{{4}}-\d{{2}}(?![\d-])|{_DAY_FIRST}|q[1-4](?:\s+\d{{4}})?|(?:{_MONTH})\.?(?:\s+\d{{1,2}}(?!\d)(?:st|nd|rd|th)?)?"
         rf"(?:,?\s+\d{{4}})?|(?:{_PART})?(?:spring|summer|autumn|fall|winter)(?:\s+(?:of\s+)?\d{{4}})?"
         rf"|h[12](?:\s+\d{{4}})?|(?:first|second) half(?:\s+of)?(?:\s+\d{{4}})?|(?:{_PART})?\d{{4}}"
         rf"|(?:last|this) (?:year|month|quarter|spring|summer|autumn|fall|winter))\b")
_BEFORE = re.compile(rf"\b(?:before|prior to|until|up to|till)\s+(?:the\s+)?{_DATE}", re.IGNORECASE)
_DURING = re.compile(rf"\b(?:in|during|back in|as of|as at|throughout|over|across)\s+(?:the\s+)?{_DATE}"
                     r"|\b((?:last|this) (?:year|month|quarter|spring|summer|autumn|fall|winter))\b"
                     rf"|\bon\s+(?:the\s+)?({_DAY_FIRST}|\d{{4}}-\d{{2}}-\d{{2}})\b", re.IGNORECASE)
_NUMBERED = re.compile(r"\b(?:version|ver\.?|v)\s?(\d+(?:\.\d+){0,2})\b|\b(\d+\.\d+\.\d+)\b|\b(\d+)\.x\b", re.IGNORECASE)
_WORD_NUMBERS = {"one": "1", "two": "2", "three": "3", "four": "4"}
# "before v2", "pre-2.0", "prior to version 2": the version preceding the one named; "after v1": the next.
_AROUND = re.compile(r"\b(before|prior to|until|pre|after|since)[- ]?(?:the\s+)?(?:version|ver\.?|v)?\s?(\d+(?:\.\d+){0,2})\b"
                     r"(?!-\d)", re.IGNORECASE)
_WORDED = re.compile(r"\bversion\s+(one|two|three|four)\b", re.IGNORECASE)
# "the first and second version", "the 2nd release": positions among a product's versions, oldest first.
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}
_ORDINAL = re.compile(r"\b(first|1st|second|2nd|third|3rd|fourth|4th)\b", re.IGNORECASE)
_VERSION_NOUN = re.compile(r"\b(versions?|releases?|revisions?|editions?|iterations?|drafts?)\b", re.IGNORECASE)
# What a rule, definition or way of doing something was called in speech: "the old churn rule", "the earlier page".
_THING = (r"(?:version|definition|rule|release|page|doc\w*|way|method|formula|logic|wording|policy|approach|"
          r"calculation|criteria|model|text|guidance|process|example|table)")
_OLDEST = re.compile(rf"\b(?:original|initial|earliest|very first)\s+(?:\w+\s+){{0,2}}?{_THING}\b|\boriginally\b",
                     re.IGNORECASE)
_PREVIOUS = re.compile(
    rf"(?<!how )\b(?:previous|prior|earlier|old|older|former|superseded|legacy)\s+(?:\w+\s+){{0,2}}?{_THING}\b"
    r"|\bpreviously\b|\bused to\b|\bformerly\b|\bback then\b|\bin the past\b|\buntil recently\b"
    r"|\b(?:before|earlier)\s*[?.!]*\s*$"
    r"|\b(?:before|prior to|ahead of|until) (?:the |it |they |we |this |that |our )?(?:\w+\s+){0,2}?"
    r"(?:chang\w*|switch\w*|updat\w*|revis\w*|rewr[io]t\w*|overhaul\w*|new (?:rule|definition|version))\b"
    rf"|\bbefore the (?:new|newest|latest|last|current|recent|most recent)\s+(?:\w+\s+)?{_THING}\b", re.IGNORECASE)
# "different" before a noun is an adjective ("how many different reasons"), not a change asked about.
_DIFFER = (r"(?:differ(?:s|ed|ing|ence|ences)?\b|different\b(?!\s+(?!(?:from|between|now|then|today|in|about|to|than|"
           r"after|before|since|at|on)\b)[a-z]))")
# "old vs new", "then and now", "before and after": two sides of a change, neither named by number.
_OLD_NEW = (r"\b(?:old|older|previous|earlier|original|before|then)\s+(?:vs\.?|versus|v\.?|and|or|compared to|"
            r"against|->|→)\s+(?:the\s+)?(?:new|newer|current|latest|now|after|today)\b")
_CHANGE = re.compile(rf"\b(?:what|whats|which|how)\b.*\b(?:chang(?!elog)\w*\b(?!\s*(?:history|log|record|note)s?\b)|{_DIFFER})|\bcompar\w*\b|\bdiff\b|{_OLD_NEW}"
                     r"|\bwhat(?:'?s| is| was) new\b"
                     r"|\bhow (?:has|have|did) .*\bevolv\w*", re.IGNORECASE)
_VERSUS = re.compile(r"\b(?:vs\.?|versus)\b", re.IGNORECASE)
_TWO_SIDES = re.compile(r"\b(?:chang\w*|differ\w*|delta|diffs?|new)\b|->|=>|→", re.IGNORECASE)
# Change over time ("what changed", "what's new", "how has it evolved"), not a comparison of two things.
_CHANGED = re.compile(r"\bwhat(?:'?s| has| have)?\s+(?:been\s+)?changed\b|\bwhat (?:were|are) the changes\b"
                      r"|\bhow (?:has|have|did|does) (?:\w+\s+){1,6}?chang(?:ed|e)\s*[?.!]*\s*$"
                      r"|\bwhat(?:'?s| is| was) (?:new|different)\b|\bhow (?:has|have|did) .*\bevolv\w*|" + _OLD_NEW,
                      re.IGNORECASE)
_VERSIONS_WORD = re.compile(r"\bversions\b|\b(?:new|newest|latest|last|previous|current)\s+(?:version|release)\b",
                            re.IGNORECASE)
# A "during" date is also the time of the data asked about ("churn in Q2 2026"); it is a version cue when the
# question asks how something was defined, counted or treated then.
RULE_WORDS = re.compile(r"\b(?:rule\w*|defin\w*|mean\w*|count\w*|treat\w*|handl\w*|calculat\w*|measur\w*|"
                        r"work\w*|polic\w*|criteri\w*|formula|method|includ\w*|exclud\w*|based|"
                        # "when did a failed payment become churn", "what was considered a churned subscriber"
                        r"becam\w*|becom\w*|turn\w* into|consider\w*|regard\w*|qualif\w*|classed)\b", re.IGNORECASE)


@dataclass(frozen=True)
class VersionCue:
    """What a question says about versions: named versions (as written), positions ("the second version"),
    a day it is asked about, or "the previous" / "the oldest" version."""

    text: str  # the words that carry the cue
    numbers: tuple[str, ...] = ()
    day: date | None = None
    relative: str | None = None  # "previous" | "oldest"; with numbers, "before" | "after" the one named
    positions: tuple[int, ...] = ()  # 1 = the oldest version
    during: bool = False  # the day is a time the question is set in ("in June"), not a bound ("before July")
    span: tuple[date, date] | None = None  # of a time the question is set in: its first and last day


def _end_of_month(y: int, month: int) -> date:
    return date(y + month // 12, month % 12 + 1, 1) - timedelta(days=1)


def _span(text: str, year: int, today: date) -> tuple[date, date] | None:
    """The first and last day a date phrase names (a day, a month, a quarter, a year, "last year")."""
    t = text.lower().strip().rstrip(".")
    if m := re.fullmatch(r"(last|this) (spring|summer|autumn|fall|winter)", t):
        # "last spring": the latest that has ended by today; "this winter": the one today's year names
        y = today.year + (m.group(2) == "winter" and today.month == 12)
        span = _span(f"{m.group(2)} {y}", y, today)
        while m.group(1) == "last" and span is not None and span[1] >= today:
            y -= 1
            span = _span(f"{m.group(2)} {y}", y, today)
        return span
    if m := re.fullmatch(rf"(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})\.?(?:,?\s+(\d{{4}}))?", t):
        d = date(int(m.group(3) or year), MONTHS[m.group(2)], int(m.group(1)))
        return d, d
    if m := re.fullmatch(r"(\d{4})-(\d{2})", t):
        return date(int(m.group(1)), int(m.group(2)), 1), _end_of_month(int(m.group(1)), int(m.group(2)))
    if m := re.fullmatch(r"(last|this) (year|month|quarter)", t):
        back = m.group(1) == "last"
        if m.group(2) == "year":
            y = today.year - back
            return date(y, 1, 1), date(y, 12, 31)
        if m.group(2) == "month":
            first = today.replace(day=1)
            first = (first - timedelta(days=1)).replace(day=1) if back else first
            return first, _end_of_month(first.year, first.month)
        q = (today.month - 1) // 3 - back
        y, q = (today.year - 1, 3) if q < 0 else (today.year, q)
        return date(y, 3 * q + 1, 1), _end_of_month(y, 3 * q + 3)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        d = date.fromisoformat(t)
        return d, d
    if m := re.fullmatch(r"(?:(early|mid|late)[- ])?(\d{4})", t):
        y, third = int(m.group(2)), ("early", "mid", "late").index(m.group(1)) if m.group(1) else None
        if third is None:
            return date(y, 1, 1), date(y, 12, 31)
        return date(y, 4 * third + 1, 1), _end_of_month(y, 4 * third + 4)
    if m := re.fullmatch(r"(?:(early|mid|late)[- ])?(spring|summer|autumn|fall|winter)(?:\s+(?:of\s+)?(\d{4}))?", t):
        start, y = SEASONS[m.group(2)], int(m.group(3) or year)
        first = date(y - 1, 12, 1) if start == 12 else date(y, start, 1)
        months = [(first.year + (first.month + i - 1) // 12, (first.month + i - 1) % 12 + 1) for i in range(3)]
        if m.group(1):
            months = [months[("early", "mid", "late").index(m.group(1))]]
        return date(*months[0], 1), _end_of_month(*months[-1])
    if m := re.fullmatch(r"(?:h([12])|(first|second) half)(?:\s+(?:of\s+)?(\d{4}))?", t):
        half, y = (1 if (m.group(1) or "") == "1" or m.group(2) == "first" else 2), int(m.group(3) or year)
        return date(y, 6 * half - 5, 1), _end_of_month(y, 6 * half)
    if m := re.fullmatch(r"q([1-4])(?:\s+(\d{4}))?", t):
        q, y = int(m.group(1)), int(m.group(2) or year)
        return date(y, 3 * q - 2, 1), _end_of_month(y, 3 * q)
    m = re.match(rf"({_MONTH})\.?(?:\s+(\d{{1,2}})(?!\d)(?:st|nd|rd|th)?)?(?:,?\s+(\d{{4}}))?", t)
    if m is None:
        return None
    month, day_of, y = MONTHS[m.group(1)], m.group(2), int(m.group(3)) if m.group(3) else year
    if day_of:
        d = date(y, month, int(day_of))
        return d, d
    return date(y, month, 1), _end_of_month(y, month)


def _day(text: str, before: bool, year: int, today: date | None = None) -> date | None:
    """The day a date phrase points at: for `before X`, the day before X starts; else the last day of X."""
    try:
        span = _span(text, year, today or date.today())
    except ValueError:
        return None
    if span is None:
        return None
    return span[0] - timedelta(days=1) if before else span[1]


def named_numbers(question: str) -> tuple[str, ...]:
    return tuple(n for m in _NUMBERED.finditer(question) for n in m.groups() if n) + \
        tuple(_WORD_NUMBERS[m.group(1).lower()] for m in _WORDED.finditer(question))


def positions(question: str) -> tuple[int, ...]:
    """Ordinal positions of versions ("the first and second version"), when the question names versions."""
    if not _VERSION_NOUN.search(question):
        return ()
    return tuple(dict.fromkeys(ORDINALS[m.group(1).lower()] for m in _ORDINAL.finditer(question)))


def detect_cue(question: str, year: int, today: date | None = None) -> VersionCue | None:
    """The version cue of a question, if any. `year` completes a month or quarter without one (the current
    version's); `today` anchors "last year" / "this month" (default: the system date)."""
    around = _AROUND.search(question)
    if around and (_NUMBERED.search(around.group(0)) or "." in around.group(2)):
        side = "before" if around.group(1).lower() in ("before", "prior to", "until", "pre") else "after"
        return VersionCue(around.group(0), numbers=(around.group(2),), relative=side)
    if numbers := named_numbers(question):
        first = _NUMBERED.search(question) or _WORDED.search(question)
        return VersionCue(first.group(0) if first else question, numbers=numbers)
    if ordinal := positions(question):
        return VersionCue(" ".join(m.group(0) for m in _ORDINAL.finditer(question)), positions=ordinal)
    for pattern, before in ((_BEFORE, True), (_DURING, False)):
        m = pattern.search(question)
        if m and (d := _day(phrase := next(g for g in m.groups() if g), before, year, today)) is not None:
            span = None if before else _span(phrase, year, today or date.today())
            return VersionCue(m.group(0), day=d, during=not before, span=span)
    if m := _OLDEST.search(question):
        return VersionCue(m.group(0), relative="oldest")
    if m := _PREVIOUS.search(question):
        return VersionCue(m.group(0), relative="previous")
    return None


def asks_change(question: str) -> bool:
    """"What changed / how does it differ / compare v1 and v2 / v1 vs v2"."""
    if _CHANGE.search(question):
        return True
    named = set(named_numbers(question)) | set(positions(question))
    # "v1 vs v2", "v1 -> v2 changes", "from v1 to v2, differences?": two versions named with a comparison
    return bool(named and _VERSUS.search(question)) or (len(named) >= 2 and bool(_TWO_SIDES.search(question)))


def by_number(versions: Sequence[ProductVersion], number: str) -> ProductVersion | None:
    """The newest version whose numbers start with `number`'s ("1" → 1.x.y, "2.1" → 2.1.z)."""
    want = version_key(number)[0]
    matching = [pv for pv in versions if version_key(pv.version)[0][:len(want)] == want]
    return matching[-1] if matching else None


def _current(versions: Sequence[ProductVersion]) -> int:
    return next((i for i, pv in enumerate(versions) if pv.current), len(versions) - 1)


def cue_version(cue: VersionCue, versions: Sequence[ProductVersion]) -> ProductVersion | None:
    """The version a cue selects among a product's versions (None when it selects none)."""
    current = _current(versions)
    if cue.numbers:
        named = by_number(versions, cue.numbers[0])
        if named is None or cue.relative not in ("before", "after"):
            return named
        i = list(versions).index(named) + (1 if cue.relative == "after" else -1)
        return versions[i] if 0 <= i < len(versions) else None
    if cue.positions:
        return versions[cue.positions[0] - 1] if cue.positions[0] <= len(versions) else None
    if cue.day is not None:
        return version_at(versions, cue.day)
    if cue.relative == "oldest":
        return versions[0]
    if cue.relative == "previous" and current > 0:
        return versions[current - 1]
    return None


def missing_numbers(question: str, versions: Sequence[ProductVersion]) -> tuple[str, ...]:
    """Versions the question names that the product does not have ("version 3" of a product with 1 and 2)."""
    asked = [n for n in named_numbers(question) if by_number(versions, n) is None]
    asked += [f"#{p}" for p in positions(question) if p > len(versions)]
    return tuple(asked)


def across(cue: VersionCue | None, versions: Sequence[ProductVersion]) -> tuple[ProductVersion, ProductVersion] | None:
    """The versions in effect on the first and the last day of the time a question is set in ("over the
    summer of 2026"), when they differ."""
    if cue is None or cue.span is None or not versions:
        return None
    first, last = version_at(versions, cue.span[0]), version_at(versions, cue.span[1])
    return (first, last) if first != last else None


def change_pair(question: str, versions: Sequence[ProductVersion], default: bool = False,
                cue: VersionCue | None = None) -> tuple[ProductVersion, ProductVersion] | None:
    """(older, newer) when the question asks what changed between versions (two named; one named and its
    neighbour; the versions at the start and end of a time it is set in, `cue`; "the previous / latest
    version"; the first version and the current one; with `default`, when it asks what changed over time,
    the previous and the current version); None otherwise."""
    if not asks_change(question) or len(versions) < 2:
        return None
    named = [pv for n in named_numbers(question) if (pv := by_number(versions, n)) is not None]
    named += [versions[p - 1] for p in positions(question) if p <= len(versions)]
    named = list({pv.version: pv for pv in named}.values())
    current = _current(versions)
    if len(named) >= 2:
        a, b = sorted(named[:2], key=lambda pv: version_key(pv.version))
        return (a, b) if a != b else None
    if len(named) == 1:
        i = versions.index(named[0])
        if i == 0 or (versions[i].current is False and i < current):
            return versions[i], versions[i + 1]
        return versions[i - 1], versions[i]
    if (spanned := across(cue, versions)) is not None:
        return spanned
    if current == 0:
        return None
    if _OLDEST.search(question):
        return versions[0], versions[current]
    if _VERSIONS_WORD.search(question) or _PREVIOUS.search(question) or (default and _CHANGED.search(question)):
        return versions[current - 1], versions[current]
    return None


def _literals(*patterns: re.Pattern[str]) -> frozenset[str]:
    return frozenset(w for p in patterns for w in re.findall(r"[a-z]+", re.sub(r"\\[a-zA-Z]", " ", p.pattern.lower()))
                     if len(w) > 1)


# Words that carry a version cue rather than the question's topic ("before", "june", "previous", "rule").
CUE_WORDS = _literals(_BEFORE, _DURING, _OLDEST, _PREVIOUS, _CHANGE, _VERSION_NOUN, _VERSIONS_WORD, _NUMBERED,
                      _WORDED, _VERSUS) | frozenset(MONTHS) | frozenset(ORDINALS) | frozenset(SEASONS)
