"""`meshrag products …` as a user runs it, on the bundled sample mesh and on broken copies."""

from __future__ import annotations

import json
import shutil

import yaml
from typer.testing import CliRunner

from api.cli.main import app
from knowledge.settings import SAMPLE_MESH

runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})


def test_validate_sample_mesh_passes_and_lists_every_product():
    result = runner.invoke(app, ["products", "validate", str(SAMPLE_MESH)])
    assert result.exit_code == 0, result.output
    ids = sorted(p.parent.parent.name + "." + p.parent.name for p in SAMPLE_MESH.glob("*/*/product.yaml"))
    assert len(ids) >= 6
    for pid in ids:
        assert f"valid   {pid}" in result.output


def test_list_json_shape_and_stale_product():
    result = runner.invoke(app, ["products", "list", "--json", "--root", str(SAMPLE_MESH)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) >= 6 and len({r["domain"] for r in rows}) >= 4
    for r in rows:
        assert {"id", "domain", "name", "owner", "classification", "version", "documents", "freshness"} <= set(r)
        assert r["freshness"]["status"] in ("fresh", "stale", "unknown")
    by_id = {r["id"]: r for r in rows}
    assert by_id["operations.fulfilment-ops"]["freshness"]["status"] == "stale"
    assert by_id["operations.fulfilment-ops"]["freshness"]["source"] == "declared"
    assert by_id["people.compensation-handbook"]["classification"] == "restricted"
    assert sum(r["documents"] for r in rows) >= 48


def test_validate_broken_copy_names_file_field_and_fix(tmp_path):
    mesh = tmp_path / "mesh"
    shutil.copytree(SAMPLE_MESH, mesh)

    def edit(rel, fn):
        path = mesh / rel / "contract.yaml"
        data = yaml.safe_load(path.read_text())
        fn(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def no_owner(c):
        c["team"]["members"] = [m for m in c["team"]["members"] if m["role"] != "owner"]

    def unknown_class(c):
        for cp in c["customProperties"]:
            if cp["property"] == "classification":
                cp["value"] = "top-secret"

    edit("finance/revenue-reporting", no_owner)
    edit("customer/support-knowledge", unknown_class)
    (mesh / "operations/fulfilment-ops/contract.yaml").write_text("apiVersion: v3.1.0\nteam:\n  name: [x\n")

    result = runner.invoke(app, ["products", "validate", str(mesh), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert {"platform.mesh-handbook", "customer.subscription-metrics", "people.compensation-handbook"} <= set(report["valid"])
    problems = {folder.split("/products/")[-1] if "/products/" in folder else folder.split("/mesh/")[-1]: ps
                for folder, ps in report["invalid"].items()}
    assert set(problems) == {"finance/revenue-reporting", "customer/support-knowledge", "operations/fulfilment-ops"}
    fin = problems["finance/revenue-reporting"][0]
    assert fin["file"].endswith("contract.yaml") and fin["field"] == "team.members" and "owner" in fin["hint"]
    sup = problems["customer/support-knowledge"][0]
    assert sup["field"].startswith("customProperties[") and "top-secret" in sup["message"] and "restricted" in sup["hint"]
    ops = problems["operations/fulfilment-ops"][0]
    assert "YAML does not parse at line" in ops["message"] and "YAML syntax" in ops["hint"]

    human = runner.invoke(app, ["products", "validate", str(mesh)])
    assert human.exit_code == 1
    assert "✗ invalid" in human.output and "fix:" in human.output and "3 invalid" in human.output


def test_show_json_and_unknown_product():
    result = runner.invoke(app, ["products", "show", "customer.subscription-metrics", "--json", "--root", str(SAMPLE_MESH)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["owner"] == "Priya Raman" and data["version"] == "2.0.0"
    assert "metrics/churn-rate.md" in data["document_ids"]
    missing = runner.invoke(app, ["products", "show", "nope.nothing", "--root", str(SAMPLE_MESH)])
    assert missing.exit_code == 2 and "known products" in missing.output


def test_scaffold_command(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.md").write_text("# X\n")
    result = runner.invoke(app, ["products", "scaffold", "growth", "campaigns", "--from", str(src), "--root", str(tmp_path / "mesh")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mesh/growth/campaigns/contract.yaml").exists()
    check = runner.invoke(app, ["products", "validate", str(tmp_path / "mesh")])
    assert check.exit_code == 1 and "TODO" in check.output

    outside = runner.invoke(app, ["products", "scaffold", "../../etc", "passwd", "--from", str(src),
                                  "--root", str(tmp_path / "mesh")])
    assert outside.exit_code == 2
    assert outside.output.count("\n") == 1 and "'../../etc'" in outside.output
    assert not (tmp_path.parent / "etc").exists() and not (tmp_path / "etc").exists()
