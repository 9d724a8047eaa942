from __future__ import annotations

import pytest
import yaml

from knowledge.contracts import load_product
from knowledge.errors import ConfigError
from knowledge.scaffold import scaffold_product


def test_scaffold_creates_a_product_that_validates_once_completed(tmp_path):
    src = tmp_path / "drafts"
    (src / "sub").mkdir(parents=True)
    (src / "a.md").write_text("# A\n\ntext")
    (src / "sub" / "b.txt").write_text("b")
    (src / "ignore.bin").write_bytes(b"\0")
    folder = scaffold_product(tmp_path / "mesh", "marketing", "campaigns", src)

    assert sorted(p.relative_to(folder / "docs").as_posix() for p in (folder / "docs").rglob("*") if p.is_file()) \
        == ["a.md", "sub/b.txt"]
    product, problems = load_product(folder)
    assert product is None
    fields = {p.field for p in problems}
    assert {"team.members", "roles", "description.purpose"} <= fields
    assert any("classification" in p.message for p in problems)

    contract = yaml.safe_load((folder / "contract.yaml").read_text())
    contract["team"] = {"name": "Growth", "members": [{"username": "a.b", "name": "A B", "role": "owner"}]}
    contract["roles"] = [{"role": "employee", "access": "read"}]
    contract["description"] = {"purpose": "Campaign playbooks for the growth team."}
    contract["customProperties"][0]["value"] = "internal"
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract))
    product, problems = load_product(folder)
    assert problems == [] and product.id == "marketing.campaigns"


def test_scaffold_refuses_existing_or_empty(tmp_path):
    src = tmp_path / "empty"
    src.mkdir()
    with pytest.raises(ConfigError, match="no readable documents"):
        scaffold_product(tmp_path / "mesh", "m", "c", src)
    with pytest.raises(ConfigError, match="does not exist"):
        scaffold_product(tmp_path / "mesh", "m", "c", tmp_path / "nope")


@pytest.mark.parametrize(("domain", "name", "bad"), [
    ("../../etc", "passwd", "../../etc"),
    ("marketing", "../../outside", "../../outside"),
    ("marketing", "..", ".."),
    ("/tmp", "x", "/tmp"),
    ("marketing", "a/b", "a/b"),
    ("marketing", "a\\b", "a\\b"),
    ("marketing", "", ""),
    ("Marketing", "campaigns", "Marketing"),
    ("marketing", "campaigns\n", "campaigns\n"),
])
def test_scaffold_refuses_names_that_are_not_plain_ids(tmp_path, domain, name, bad):
    src = tmp_path / "drafts"
    src.mkdir()
    (src / "a.md").write_text("# A")
    root = tmp_path / "work" / "mesh"
    with pytest.raises(ConfigError, match="lower-case letters, digits and dashes") as err:
        scaffold_product(root, domain, name, src)
    assert repr(bad) in str(err.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["drafts", "drafts/a.md"]
