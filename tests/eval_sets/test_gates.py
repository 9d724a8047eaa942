"""Eval gates: the thresholds file, `meshrag eval --gate`, `meshrag releases publish --gate`, and the
committed thresholds on the real sample mesh (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from eval_sets.gates import check_gate, check_regression, load_thresholds
from eval_sets.harness import EvalHarness, EvalRun
from eval_sets.report import EvalReport
from indexing.types import Embedder
from knowledge.errors import ConfigError
from knowledge.settings import SAMPLE_MESH
from retrieval.settings import RetrievalSettings
from tests.eval_sets.conftest import EvalMesh
from tests.retrieval.conftest import INTERNAL


def write_thresholds(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_committed_thresholds_gate_retrieval_access_and_the_answer_stage():
    t = load_thresholds()
    # Retrieval, citation and access floors are the evaluation issue's; the answer-stage floors hold the
    # measured state of the fitted answer model (below the answer issue's targets; see thresholds.yaml).
    assert t.overall.min == {"recall@5": 0.90, "ndcg@10": 0.80, "abstention_accuracy": 0.30,
                             "supported_citation_share": 0.95, "answer_correctness": 0.15,
                             "answerability_auc": 0.58, "discovery_fact_rate": 0.70,
                             "discovery_aggregation_exact": 0.80, "version_correct": 0.25}
    assert t.overall.max == {"false_abstention_rate": 0.26, "access_leaks": 0}
    # A product's own entry replaces single bounds of the "*" defaults and keeps the others.
    finance = t.for_product("finance.revenue-reporting")
    assert finance.min["ndcg@10"] < 0.80 and finance.min["recall@5"] == 0.87 and finance.max["access_leaks"] == 0
    assert t.regression.overall["recall@5"] > 0


def test_unknown_metric_in_thresholds_is_named(tmp_path: Path):
    path = write_thresholds(tmp_path / "t.yaml", {"overall": {"min": {"recal@5": 0.9}}})
    with pytest.raises(ConfigError, match="recal@5"):
        load_thresholds(path)


def report(overall: dict, per_product: dict | None = None) -> EvalReport:
    return EvalReport(release_id="rel-x", overall=overall, per_product=per_product or {})


def test_gate_bounds_directions_and_unmeasured_metrics(tmp_path: Path):
    t = load_thresholds(write_thresholds(tmp_path / "t.yaml", {
        "overall": {"min": {"recall@5": 0.9, "abstention_accuracy": 0.85}, "max": {"false_abstention_rate": 0.1}},
        "per_product": {"*": {"min": {"recall@5": 0.9}}, "a.b": {"min": {"recall@5": 0.5}}},
        "regression": {"overall": {"recall@5": 0.02, "false_abstention_rate": 0.03}}}))
    result = check_gate(report({"recall@5": 0.95, "abstention_accuracy": None, "false_abstention_rate": 0.2},
                               {"a.b": {"recall@5": 0.6}, "c.d": {"recall@5": 0.8}}), t)
    assert [f.message() for f in result.failures] == [
        "false_abstention_rate (overall) = 0.200 > max 0.1", "recall@5 (product c.d) = 0.800 < min 0.9"]
    assert result.not_measured == ("overall:abstention_accuracy",)
    # Regressions count only in the worse direction: recall down, false abstention up.
    fell = check_regression(report({"recall@5": 0.90, "false_abstention_rate": 0.05}),
                            report({"recall@5": 0.95, "false_abstention_rate": 0.10}), t)
    assert [f.message() for f in fell.failures] == [
        "recall@5 (overall) regressed from 0.950 to 0.900, beyond the tolerance 0.02"]


def test_answer_stage_metrics_can_be_gated_in_their_direction(tmp_path: Path):
    t = load_thresholds(write_thresholds(tmp_path / "t.yaml", {
        "overall": {"min": {"answer_correctness": 0.8, "answerability_auc": 0.9},
                    "max": {"heldout_false_abstention_rate": 0.1}},
        "regression": {"overall": {"answer_correctness": 0.02, "heldout_false_abstention_rate": 0.02}}}))
    result = check_gate(report({"answer_correctness": 0.75, "answerability_auc": None,
                                "heldout_false_abstention_rate": 0.2}), t)
    assert [f.message() for f in result.failures] == [
        "answer_correctness (overall) = 0.750 < min 0.8", "heldout_false_abstention_rate (overall) = 0.200 > max 0.1"]
    assert result.not_measured == ("overall:answerability_auc",)
    # Correctness up is better; held-out false abstention up is worse.
    moved = check_regression(report({"answer_correctness": 0.90, "heldout_false_abstention_rate": 0.10}),
                             report({"answer_correctness": 0.85, "heldout_false_abstention_rate": 0.05}), t)
    assert [f.message() for f in moved.failures] == [
        "heldout_false_abstention_rate (overall) regressed from 0.050 to 0.100, beyond the tolerance 0.02"]


def test_eval_gate_fails_naming_the_metric_above_what_is_achieved(eval_mesh: EvalMesh, tmp_path: Path):
    out = tmp_path / "r.json"
    first = eval_mesh.cli("eval", str(eval_mesh.golden), "--json", str(out), "--no-answer-metrics")
    assert first.exit_code == 0, first.output
    achieved = json.loads(out.read_text())["overall"]["ndcg@10"]

    at = write_thresholds(tmp_path / "at.yaml", {"overall": {"min": {"ndcg@10": achieved}, "max": {"access_leaks": 0}}})
    passed = eval_mesh.cli("eval", str(eval_mesh.golden), "--gate", "--thresholds", str(at), "--no-answer-metrics")
    assert passed.exit_code == 0, passed.output
    assert "gate passed" in passed.stderr

    above = write_thresholds(tmp_path / "above.yaml", {"overall": {"min": {"ndcg@10": round(achieved + 0.05, 3)}}})
    failed = eval_mesh.cli("eval", str(eval_mesh.golden), "--gate", "--thresholds", str(above), "--no-answer-metrics")
    assert failed.exit_code == 1, failed.output
    assert f"ndcg@10 (overall) = {achieved:.3f} < min {round(achieved + 0.05, 3):g}" in failed.stderr
    assert "gate failed" in failed.stderr


def test_publish_gate_refuses_a_degraded_release_and_keeps_current(eval_mesh: EvalMesh, tmp_path: Path):
    registry = eval_mesh.registry()
    good = registry.current_id()
    degraded = eval_mesh.drop_product(INTERNAL)
    moves = len(registry.alias_log())
    limits = write_thresholds(tmp_path / "t.yaml", {
        "overall": {"min": {"recall@5": 0.9}, "max": {"access_leaks": 0}},
        "per_product": {"*": {"min": {"recall@5": 0.9}}},
        "regression": {"overall": {"recall@5": 0.02, "ndcg@10": 0.02}}})

    refused = eval_mesh.cli("releases", "publish", degraded, "--gate", "--thresholds", str(limits),
                            "--set", str(eval_mesh.golden))
    assert refused.exit_code == 1, refused.output
    assert f"recall@5 (product {INTERNAL}) = 0.000 < min 0.9" in refused.stderr
    assert "recall@5 (overall) regressed from 1.000 to" in refused.stderr
    assert "ndcg@10 (overall) regressed from" in refused.stderr
    assert f"refused: {degraded} fails the eval gate" in refused.stderr and f"current stays {good}" in refused.stderr
    assert registry.current_id() == good and len(registry.alias_log()) == moves

    # Published without the gate, the degraded release is current; the gate then lets the good one back.
    assert eval_mesh.cli("releases", "publish", degraded).exit_code == 0
    restored = eval_mesh.cli("releases", "publish", good, "--gate", "--thresholds", str(limits), "--json",
                             "--set", str(eval_mesh.golden))
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.stdout) == {"current": good}
    assert registry.current_id() == good and registry.alias_log()[-1]["reason"] == "publish --gate"


@pytest.mark.slow
def test_sample_mesh_passes_the_committed_gate(sample_index: Path, minilm: Embedder):
    settings = RetrievalSettings(data_dir=sample_index, mesh_roots=[SAMPLE_MESH])
    with EvalHarness(settings, answer_metrics=False, embedder=minilm) as harness:
        report = harness.evaluate(EvalRun.load())
    result = check_gate(report, load_thresholds())
    assert result.passed, [f.message() for f in result.failures]
    assert report.overall["access_leaks"] == 0 and report.restricted_products == ("people.compensation-handbook",)
    assert result.not_measured == ()
