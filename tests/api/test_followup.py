"""The deterministic follow-up rewrite of the OpenAI-compatible chat."""

from __future__ import annotations

import pytest

from api.followup import key_phrase, standalone_question

CASES = [
    # (user turns, standalone question, rule)
    (["Who owns the churn rate metric?"], "Who owns the churn rate metric?", "none"),
    (["Who owns the churn rate metric?", "and net revenue?"], "Who owns net revenue?", "connector"),
    (
        ["Who owns the churn rate metric?", "What about the net revenue retention metric?"],
        "Who owns the net revenue retention metric?",
        "connector",
    ),
    (
        ["Who owns the revenue reporting product?", "and the subscription metrics product?"],
        "Who owns the subscription metrics product?",
        "connector",
    ),
    (
        ["Who owns the churn rate metric?", "How fresh is it?"],
        "How fresh is the churn rate metric?",
        "pronoun",
    ),
    (
        ["Who owns the revenue reporting product?", "How fresh is it?"],
        "How fresh is the revenue reporting product?",
        "pronoun",
    ),
    (
        ["Who owns the churn rate metric?", "Who is its maintainer?"],
        "Who is the churn rate metric's maintainer?",
        "pronoun",
    ),
    (["Which product defines net revenue?", "Who owns that?"], "Who owns net revenue?", "pronoun"),
    (["Who owns the churn rate metric?", "Owner?"], "Owner of the churn rate metric?", "short"),
    (
        ["Who owns the churn rate metric?", "freshness SLA?"],
        "freshness SLA of the churn rate metric?",
        "short",
    ),
    (["What is a release?", "How do I roll back?"], "How do I roll back?", "none"),
    (["What is net revenue?", "Why?"], "Why?", "none"),
    (
        ["Which product defines net revenue?", "How is gross margin calculated in the close?"],
        "How is gross margin calculated in the close?",
        "none",
    ),
    # Chains keep their subject: each turn is made standalone before the next one uses it.
    (
        ["Who owns the mesh handbook?", "how fresh is it?", "and the compensation handbook?"],
        "how fresh is the compensation handbook?",
        "connector",
    ),
]


@pytest.mark.parametrize(("turns", "question", "rule"), CASES)
def test_rewrite_rule(turns, question, rule):
    result = standalone_question(turns)
    assert (result.question, result.rule, result.rewritten) == (question, rule, rule != "none")


def test_key_phrase_is_the_longest_content_run():
    assert key_phrase("Who owns the churn rate metric?") == "churn rate metric"
    assert key_phrase("Which product defines net revenue?") == "net revenue"
    assert key_phrase("What is it?") is None


def test_no_user_turn_is_an_error():
    with pytest.raises(ValueError):
        standalone_question([])
