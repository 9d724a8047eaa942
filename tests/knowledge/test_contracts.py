"""Each contract rule has a failing case, and each problem names file, field and a fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from knowledge.contracts import load_product


def _set_custom(contract: dict[str, Any], prop: str, value: Any) -> None:
    contract["customProperties"] = [c for c in contract["customProperties"] if c["property"] != prop]
    if value is not None:
        contract["customProperties"].append({"property": prop, "value": value})


def test_valid_product_loads_with_contract_terms(product_factory):
    product, problems = load_product(product_factory())
    assert problems == []
    assert product is not None
    assert product.id == "sales.playbooks"
    assert product.owner.username == "m.okafor"
    assert product.classification == "public"
    assert product.read_roles == ("everyone",)
    assert product.pii_policy == "allow"
    assert product.freshness_sla == timedelta(days=90)
    assert product.retention_sla == timedelta(days=3 * 365)
    assert [product.document_id(p) for p in product.documents()] == ["guide.md"]


def _drop_owner(d, c):
    c["team"]["members"] = [m for m in c["team"]["members"] if m["role"] != "owner"]


def _no_team(d, c):
    del c["team"]


def _bad_classification(d, c):
    _set_custom(c, "classification", "secret")


def _no_classification(d, c):
    _set_custom(c, "classification", None)


def _no_freshness(d, c):
    c["slaProperties"] = [s for s in c["slaProperties"] if s["property"] != "freshness"]


def _no_retention(d, c):
    c["slaProperties"] = [s for s in c["slaProperties"] if s["property"] != "retention"]


def _bad_sla_unit(d, c):
    c["slaProperties"][0]["unit"] = "fortnights"


def _negative_sla(d, c):
    c["slaProperties"][0]["value"] = -3


def _no_read_role(d, c):
    c["roles"] = [{"role": "auditor", "access": "write"}]


def _no_pii_policy(d, c):
    _set_custom(c, "piiPolicy", None)


def _bad_pii_policy(d, c):
    _set_custom(c, "piiPolicy", "ignore")


def _no_purpose(d, c):
    c["description"].pop("purpose")
    d["description"].pop("purpose")


def _odcs_schema_violation(d, c):
    c["kind"] = "Contract"


def _odps_schema_violation(d, c):
    del d["status"]


def _wrong_api_version(d, c):
    c["apiVersion"] = "v3.0.2"


def _id_mismatch(d, c):
    c["id"] = "sales.something-else"


def _version_mismatch(d, c):
    c["version"] = "9.9.9"


def _missing_source(d, c):
    d["inputPorts"][0]["customProperties"][0]["value"] = "no-such-folder"


def _bad_last_updated(d, c):
    _set_custom(c, "lastUpdated", "last tuesday")


RULES = [
    (_drop_owner, "contract.yaml", "team.members", "role: owner"),
    (_no_team, "contract.yaml", "team", "team"),
    (_bad_classification, "contract.yaml", "customProperties", "public"),
    (_no_classification, "contract.yaml", "customProperties", "classification"),
    (_no_freshness, "contract.yaml", "slaProperties", "freshness"),
    (_no_retention, "contract.yaml", "slaProperties", "retention"),
    (_bad_sla_unit, "contract.yaml", "slaProperties[0].unit", "use one of"),
    (_negative_sla, "contract.yaml", "slaProperties[0].value", "number"),
    (_no_read_role, "contract.yaml", "roles", "access: read"),
    (_no_pii_policy, "contract.yaml", "customProperties", "piiPolicy"),
    (_bad_pii_policy, "contract.yaml", "customProperties", "redact"),
    (_no_purpose, "contract.yaml", "description.purpose", "what the product is for"),
    (_odcs_schema_violation, "contract.yaml", "kind", "DataContract"),
    (_odps_schema_violation, "product.yaml", "(document)", "required"),
    (_wrong_api_version, "contract.yaml", "apiVersion", "v3.1.0"),
    (_id_mismatch, "contract.yaml", "id", "sales.playbooks"),
    (_version_mismatch, "contract.yaml", "version", "same version"),
    (_missing_source, "product.yaml", "inputPorts[0]", "existing folder"),
    (_bad_last_updated, "contract.yaml", "customProperties", "ISO 8601"),
]


@pytest.mark.parametrize("edit,file,field,fix_words", RULES, ids=[r[0].__name__.strip("_") for r in RULES])
def test_each_rule_rejects_its_violation(product_factory, edit, file, field, fix_words):
    product, problems = load_product(product_factory(edit=edit))
    assert product is None
    matching = [p for p in problems if p.file.endswith(file) and p.field.startswith(field)]
    assert matching, f"no problem on {file}:{field} in {problems}"
    text = " ".join(f"{p.message} {p.hint}" for p in matching)
    assert fix_words in text
    assert all(p.hint for p in problems)


def test_malformed_yaml_names_line(product_factory):
    folder = product_factory()
    (folder / "contract.yaml").write_text("apiVersion: v3.1.0\nkind: DataContract\nid: [unclosed\n")
    product, problems = load_product(folder)
    assert product is None
    assert problems[0].file.endswith("contract.yaml")
    assert "line" in problems[0].message
    assert "YAML" in problems[0].hint


def test_missing_contract_file(product_factory):
    folder = product_factory()
    (folder / "contract.yaml").unlink()
    product, problems = load_product(folder)
    assert product is None
    assert "missing" in problems[0].message and "scaffold" in problems[0].hint


def test_product_without_documents_is_invalid(product_factory):
    folder = product_factory(docs={"notes.bin": "x"})
    product, problems = load_product(folder)
    assert product is None
    assert any("no readable source documents" in p.message for p in problems)


def test_input_port_can_point_outside_the_folder(product_factory, tmp_path):
    elsewhere = tmp_path / "shared-drive"
    elsewhere.mkdir()
    (elsewhere / "memo.txt").write_text("A memo.")

    def edit(d, c):
        d["inputPorts"][0]["customProperties"][0]["value"] = str(elsewhere)

    product, problems = load_product(product_factory(edit=edit))
    assert problems == []
    assert [p.name for p in product.documents()] == ["memo.txt"]
