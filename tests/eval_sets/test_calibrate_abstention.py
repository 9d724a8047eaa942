"""The threshold search of the abstention calibration (the full run needs an index: see the script)."""

from __future__ import annotations

import pytest

from eval_sets.calibrate_abstention import ScoredQuestion, at_threshold, best_threshold


def _scored(answerable: list[float], unanswerable: list[float]) -> list[ScoredQuestion]:
    return ([ScoredQuestion(f"a{i}", "factual", True, v) for i, v in enumerate(answerable)]
            + [ScoredQuestion(f"u{i}", "unanswerable", False, v) for i, v in enumerate(unanswerable)])


def test_separable_scores_give_a_threshold_between_them() -> None:
    best = best_threshold(_scored([0.7, 0.8, 0.9], [0.3, 0.4]))
    assert best.threshold == pytest.approx(0.55)
    assert (best.balanced_accuracy, best.false_abstention_rate, best.true_abstention_rate) == (1.0, 0.0, 1.0)


def test_rates_at_a_threshold() -> None:
    result = at_threshold(_scored([0.5, 0.7, 0.9, 0.95], [0.6, 0.8]), 0.75)
    assert result.false_abstention_rate == 0.5 and result.true_abstention_rate == 0.5
    assert result.balanced_accuracy == 0.5


def test_false_abstention_cap_trades_balanced_accuracy_for_fewer_refusals() -> None:
    scored = _scored([0.60, 0.70, 0.75, 0.80, 0.85, 0.90, 0.92, 0.95, 0.97, 0.99], [0.40, 0.65])
    unconstrained = best_threshold(scored)
    assert unconstrained.threshold == pytest.approx(0.675)  # catches both, refuses one answerable in ten
    assert (unconstrained.balanced_accuracy, unconstrained.false_abstention_rate) == (0.95, 0.1)
    capped = best_threshold(scored, max_false_abstention=0.05)
    assert capped.threshold == pytest.approx(0.5)
    assert (capped.balanced_accuracy, capped.false_abstention_rate) == (0.75, 0.0)


def test_needs_both_kinds_of_question() -> None:
    with pytest.raises(ValueError, match="both"):
        best_threshold(_scored([0.7, 0.8], []))
