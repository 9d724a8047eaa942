"""Spot text written to steer an AI assistant that will later read it (indirect prompt injection).

Patterns, not a model: each one names instructions addressed to an assistant, so ordinary imperative
prose ("ignore the alarm", "reply to the customer") does not match. A match flags the chunk; retrieval
decides what to do with flagged chunks.
"""

from __future__ import annotations

import re

NAME = "prompt-injection-patterns"
VERSION = "1"

_AI = (
    r"(?:ai|a\.i\.|artificial intelligence|(?:ai |virtual |digital )?assistant|chat ?bot|llm|"
    r"language model|gpt|copilot)"
)
_PRIOR = (
    r"(?:(?:all|any|the|your|of|these|those)\s+)*"
    r"(?:previous|prior|above|earlier|preceding|original|system)"
)
_INSTRUCTIONS = r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|context|messages?)"
_PERSONA = (
    r"(?:ai|assistant|chat ?bot|model|dan|developer\s+mode|jailbroken|jailbreak|unrestricted|unfiltered|"
    r"uncensored|no\s+longer\s+bound|free\s+from|freed\s+from|persona|evil)"
)

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        (
            "ignore previous instructions",
            rf"\b(?:ignore|forget|disregard|override|bypass)\s+{_PRIOR}\s+{_INSTRUCTIONS}\b",
        ),
        (
            "disregard the system prompt",
            (r"\b(?:ignore|forget|disregard|override|bypass)\s+(?:all\s+|any\s+)?"
             r"(?:(?:your|the|its)\s+system\s+(?:prompt|message|instructions)|"
             r"your\s+(?:instructions|guidelines|guardrails|rules|programming|"
             r"safety\s+(?:rules|guidelines)))\b"),
        ),
        (
            "role reassignment ('you are now')",
            rf"\byou\s+are\s+now\s+(?:\S+\s+){{0,3}}?{_PERSONA}\b",
        ),
        (
            "note addressed to an AI assistant",
            (rf"\b(?:note|message|instructions?|attention|reminder|directive)\s+(?:to|for)\s+"
             rf"(?:(?:any|all|the|every|an?)\s+)?(?:{_AI})s?\b"
             rf"|\b(?:attention|dear|hey|hello|hi)\s+(?:{_AI})s?\s*[:,!]"),
        ),
        (
            "addresses AI readers directly",
            (rf"\b(?:if\s+you\s+are|as)\s+(?:an?\s+|the\s+)?(?:{_AI})\s+(?:reading|processing|summari[sz]ing|"
             rf"answering|retrieving)\b"),
        ),
        (
            "dictates the reply ('reply only with')",
            r"\b(?:reply|respond|answer)\s+(?:only|solely|exclusively)\s+(?:with|using)\b",
        ),
        (
            "asks to reveal the prompt",
            (r"\b(?:reveal|print|show|repeat|output|disclose|leak)\s+(?:me\s+)?(?:"
             r"your\s+(?:(?:full|entire|hidden|initial|original|system)\s+)?"
             r"(?:prompt|instructions|system\s+message)"
             r"|the\s+(?:(?:full|entire|hidden|initial|original)\s+)?(?:system\s+prompt|system\s+message)"
             r"|the\s+(?:full|entire|hidden|initial|original)\s+prompt)\b"),
        ),
    )
)


def detect_prompt_injection(text: str) -> list[str]:
    """Reasons the text looks like instructions aimed at an AI assistant; empty when it does not."""
    squashed = " ".join(text.split())
    return [reason for reason, pattern in _PATTERNS if pattern.search(squashed)]
