"""Support scores (the citation check): lexical parts exactly, embedding parts with the real MiniLM.
Whether to answer at all is the answer model's decision: tests/retrieval/test_answer_stage.py."""

from __future__ import annotations

from typing import Any

import pytest

from retrieval.answer.support import MIN_SUPPORT, content_words, lexical_recall

NET_REVENUE = ("finance.revenue-reporting", "metrics/net-revenue.md")


def test_content_words_drop_stop_words_and_fold_inflections() -> None:
    assert content_words("Which refunds were shipped to the customers?") == {"refund", "ship", "customer"}
    assert content_words("policy policies") == {"polici"}
    assert content_words("1,000 boxes at 41.8%") == {"1000", "box", "41.8"}


def test_lexical_recall_is_the_share_of_the_needles_content_words() -> None:
    claim = "Refunds reduce net revenue."
    assert lexical_recall(claim, "Net revenue: gross sales, which refunds reduced.") == 1.0
    assert lexical_recall(claim, "Gross sales include shipping.") == 0.0
    changed_figure = lexical_recall("Refunds of $150 need approval.", "Refunds of $500 need approval.")
    assert changed_figure == pytest.approx(2 / 3)
    assert lexical_recall("Is it?", "anything") is None


def test_hash_scorer_scores_are_bounded_and_verbatim_quotes_fully_supported(
        hash_answer_scorer: Any, sample_chunks: Any) -> None:
    chunk = sample_chunks(*NET_REVENUE)[1]
    sentence = chunk.text.split(". ")[0] + "."
    assert hash_answer_scorer.support(sentence, chunk.text) == 1.0
    pairs = [("Quokkas nap.", chunk.text), ("Net revenue.", chunk.text)]
    for score in hash_answer_scorer.support_many(pairs):
        assert 0.0 <= score <= 1.0


@pytest.mark.slow
def test_minilm_support_separates_paraphrase_from_unrelated_text(answer_scorer: Any,
                                                                  sample_chunks: Any) -> None:
    excluded = next(c for c in sample_chunks(*NET_REVENUE) if c.heading_path[-1] == "What is excluded")
    paraphrase = "Sales tax collected from customers is not part of net revenue."
    unrelated = "Employees at the Reno fulfilment centre are paid in geo zone C."
    pairs = [(paraphrase, excluded.text), (unrelated, excluded.text)]
    supported, unsupported = answer_scorer.support_many(pairs)
    assert supported >= MIN_SUPPORT > unsupported
