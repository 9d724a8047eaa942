"""`meshrag search` as a user runs it, on a small indexed mesh."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from api.cli.main import app
from tests.retrieval.conftest import INTERNAL, PUBLIC, RESTRICTED, SmallMesh


def run(mesh: SmallMesh, *args: str):
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1", "MESHRAG_EMBEDDER": "hash",
                            "MESHRAG_MESH_ROOTS": json.dumps([str(mesh.root)])})
    return runner.invoke(app, ["search", *args, "--data-dir", str(mesh.data_dir)])


def test_json_output_as_a_role(small_mesh: SmallMesh):
    result = run(small_mesh, "carrier misses the pickup", "--as", "analyst", "--principal", "ana", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["principal"] == {"id": "ana", "roles": ["analyst"]}
    assert out["release_id"].startswith("rel-") and 1 <= len(out["hits"]) <= 3
    top = out["hits"][0]
    assert top["product_id"] == INTERNAL and top["document"] == "carrier-pickup.md" and top["rank"] == 1
    assert {"chunk_id", "product_version", "doc_revision", "start", "end", "heading_path", "text", "scores"} <= set(top)
    assert out["params"]["k"] == 3 and out["params"]["products_searched"] == [INTERNAL, PUBLIC]
    assert "total" in out["timings_ms"]
    assert "no roles" not in result.stderr


def test_anonymous_by_default_and_says_so(small_mesh: SmallMesh):
    result = run(small_mesh, "quokka midpoint carrier pickup", "--json", "-k", "50")
    assert result.exit_code == 0, result.output
    assert "public products only" in result.stderr
    out = json.loads(result.stdout)
    assert out["principal"] == {"id": "anonymous", "roles": []}
    assert {h["product_id"] for h in out["hits"]} == {PUBLIC}


def test_table_output_and_filters(small_mesh: SmallMesh):
    result = run(small_mesh, "label printer", "--as", "employee", "--domain", "ops")
    assert result.exit_code == 0, result.output
    assert "label-printer.md" in result.stdout and PUBLIC not in result.stdout.split("searched")[0]


def test_unknown_product_error_hides_restricted_ids(small_mesh: SmallMesh):
    result = run(small_mesh, "bonus", "--as", "analyst", "--product", "people.nothing")
    assert result.exit_code == 2
    assert "people.nothing" in result.stderr and RESTRICTED not in result.stderr and INTERNAL in result.stderr


def test_unknown_release(small_mesh: SmallMesh):
    result = run(small_mesh, "owner", "--release", "rel-0000000000000000")
    assert result.exit_code == 2 and "no release" in result.stderr
