"""What kind of phrase a question asks for, and where phrases of that kind are in a sentence.

    expected_type("Who owns churn?")            → "person"   (a person or a team)
    expected_type("When does the credit post?") → "date"
    expected_type("How much is the credit?")    → "amount"   (money, or a figure with a unit)
    expected_type("How many orders were late?") → "number"
    expected_type("Where is the liability?")    → "place"    (a place, account, system or folder)
    expected_type("How is churn defined?")      → None       (a definition, a procedure: no short answer)

`spans(sentence, kind)` finds the phrases of one kind by surface form (Unicode-aware): figures with
their unit or currency, dates in the usual written forms, capitalised name sequences. It is a tagger
for short answers and for the answerability features, not a named-entity recogniser: "Reno" and
"Priya Raman" are both capitalised sequences, and the question word decides which kind is wanted.
"""

from __future__ import annotations

import re
from typing import Literal

AnswerType = Literal["person", "date", "number", "amount", "place"]

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_DURATION = (r"\b\d+(?:\.\d+)?\s+(?:business\s+|working\s+|calendar\s+)?"
             r"(?:days?|weeks?|months?|years?|hours?|minutes?|seconds?)\b")
_DATE = re.compile(
    rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b"                                # 2026-09-30
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\.?,?(?:\s+\d{{4}})?\b"  # 5 March 2026
    rf"|\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b"  # March 5, 2026
    rf"|\b{_MONTH}\s+\d{{4}}\b"                                    # March 2026
    rf"|\b(?:early|mid|late)?-?{_MONTH}\b"                          # March
    rf"|\b{_WEEKDAY}s?\b"
    rf"|\b(?:Q[1-4]|H[12]|FY)\s?'?\d{{2,4}}\b"                      # Q3 2026, FY2025
    rf"|\b(?:1[0-9]|20)\d{{2}}s?\b"                                 # 1998, 2026, 1990s
    rf"|{_DURATION}"
    rf"|\b(?:daily|weekly|monthly|quarterly|annually|yearly|hourly)\b",
    re.IGNORECASE)
_CURRENCY = r"(?:[$€£¥]|USD|EUR|GBP)"
_SCALE = r"(?:\s?(?:[kKmMbB]n?|thousand|million|billion|trillion))?"
_AMOUNT = re.compile(
    rf"{_CURRENCY}\s?\d[\d,]*(?:\.\d+)?{_SCALE}"
    rf"|\b\d[\d,]*(?:\.\d+)?{_SCALE}\s?(?:{_CURRENCY}|dollars?|euros?|pounds?|cents?)(?!\w)"
    rf"|\b\d[\d,]*(?:\.\d+)?\s?(?:%|per\s?cent|percent|percentage points?|pp)(?!\w)",
    re.IGNORECASE)
_NUMBER_WORDS = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                 r"fifty|hundred|thousand|million|billion|dozen|half|twice|double)")
_NUMBER = re.compile(
    rf"(?<![\w-])[-+±]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:\s?(?:%|x|×|[kKmMbB]n?\b|thousand|million|billion))?"
    rf"|\b{_NUMBER_WORDS}(?:[\s-]{_NUMBER_WORDS})*\b",
    re.IGNORECASE)
# A capitalised sequence: "Priya Raman", "Finance Analytics", "Reno", "Ögedei Khan", "São Paulo".
_NAME = re.compile(r"(?<![\w-])(?:[^\W\d_a-z][\w'’.-]*)(?:\s+(?:(?:of|de|da|van|von|der|la|le|the|and|&)\s+)?"
                   r"[^\W\d_a-z][\w'’.-]*)*")
_NOT_A_NAME = re.compile(rf"(?:{_MONTH}|{_WEEKDAY}|[A-Z]{{2,5}}|The|This|That|These|It|If|When|A|An|In|On|For)\.?",
                         re.IGNORECASE)
_PLACE_CUE = re.compile(r"\b(?:in|at|from|to|near|into|under|on)\s+((?:the\s+)?[^\W\d_a-z][\w'’.-]*"
                        r"(?:\s+[^\W\d_a-z][\w'’.-]*)*)")
_ACCOUNT = re.compile(r"\b(?:account|table|folder|channel|queue|system|schema|dashboard)\s+`?[\w./#-]+`?"
                      r"|`[^`]{2,60}`", re.IGNORECASE)

_WH_PATTERNS: tuple[tuple[re.Pattern[str], AnswerType], ...] = (
    (re.compile(r"\bhow\s+much\b.*\b(?:cost|costs|pay|paid|price|charge|charged|worth|spend|spent|revenue|"
                r"fee|fees|credit|refund|budget|salary|bonus|owe)\b|\bwhat(?:'?s|\s+(?:is|was|are|were))\b[^?]*?"
                r"\b(?:price|cost|fee|amount|salary|budget|revenue|total|spend|mrr|arpu|ltv|pay)\b",
                re.IGNORECASE), "amount"),
    (re.compile(r"\b(?:how\s+(?:many|much|long|often|big|large|high|low|far|old|fast)|what\s+(?:percentage|"
                r"percent|share|proportion|fraction|rate|number|ratio|threshold|target|limit|level)|"
                r"which\s+(?:percentage|number|rate)|what(?:'?s|\s+(?:is|was|are|were))\b[^?]*?\b(?:rate|"
                r"percentage|share|count|ratio|margin|nrr|score))\b", re.IGNORECASE), "number"),
    (re.compile(r"^\W*(?:and\s+|so\s+|but\s+)?when\b|\b(?:what\s+(?:year|date|day|month|time|quarter|week|deadline)|which\s+(?:year|date|day|"
                r"month|quarter|week)|how\s+soon|by\s+what\s+date|since\s+when|until\s+when)\b", re.IGNORECASE), "date"),
    (re.compile(r"\b(?:where|what\s+(?:country|city|state|place|location|region|site|account|folder|table|"
                r"warehouse|channel|system)|which\s+(?:country|city|state|place|location|region|site|account|"
                r"folder|table|warehouse|channel|system))\b", re.IGNORECASE), "place"),
    (re.compile(r"\b(?:who|whom|whose|which\s+(?:person|team|people|group|department|role|company|"
                r"organi[sz]ation|owner)|what\s+(?:team|person|group|department|company))\b", re.IGNORECASE), "person"),
)


_DEFINITION = re.compile(r"\b(?:defin\w*|mean|means|meaning|explain\w*|describe\w*|why|how\s+(?:do|does|is|are|"
                         r"can|should|to))\b", re.IGNORECASE)


_LEADING_WH = re.compile(r"^\W*(?:when|who|whom|whose|where|how\s+(?:many|much))\b", re.IGNORECASE)


def expected_type(question: str) -> AnswerType | None:
    """The kind of phrase the question asks for, or None when it asks for more than a phrase."""
    if _DEFINITION.search(question) and not _LEADING_WH.match(question):
        return None
    for pattern, kind in _WH_PATTERNS:
        if pattern.search(question):
            return kind
    return None


def spans(sentence: str, kind: AnswerType) -> list[tuple[int, int]]:
    """(start, end) of each phrase of `kind` in `sentence`, in order, without overlaps."""
    if kind == "date":
        found = [m.span() for m in _DATE.finditer(sentence)]
    elif kind == "amount":
        found = [m.span() for m in _AMOUNT.finditer(sentence)]
    elif kind == "number":
        durations = [m.span() for m in re.finditer(_DURATION, sentence, re.IGNORECASE)]
        dates = [m.span() for m in _DATE.finditer(sentence) if m.span() not in durations]
        found = durations + [m.span() for m in _AMOUNT.finditer(sentence)] + [
            m.span() for m in _NUMBER.finditer(sentence)
            if all(m.end() <= a or m.start() >= b for a, b in dates)]
    elif kind == "place":
        found = [m.span(1) for m in _PLACE_CUE.finditer(sentence)] + [m.span() for m in _ACCOUNT.finditer(sentence)]
    else:
        found = [m.span() for m in _NAME.finditer(sentence)
                 if (m.start() > 0 or " " in m.group(0).strip()) and not _NOT_A_NAME.fullmatch(m.group(0))]
    return _without_overlaps(found)


def _without_overlaps(found: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Longest first among overlapping spans, then in text order."""
    kept: list[tuple[int, int]] = []
    for a, b in sorted(found, key=lambda s: (-(s[1] - s[0]), s[0])):
        if b > a and all(b <= x or a >= y for x, y in kept):
            kept.append((a, b))
    return sorted(kept)


def has_type(sentence: str, kind: AnswerType | None, question: str = "") -> float:
    """1 when the sentence holds a phrase of the wanted kind that the question does not already
    contain, 0 when it holds none, 0.5 when the question wants no particular kind."""
    if kind is None:
        return 0.5
    asked = question.casefold()
    return float(any(sentence[a:b].casefold().strip() not in asked for a, b in spans(sentence, kind)))
