"""Golden sets, metrics, the evaluation harness, BEIR runner and gates."""
