"""Governance that never fails silently: a product whose files break keeps its last valid version in a
reloaded catalog, marked invalid with the reason; every problem is logged once; the reload stamp sees
every descriptor and contract under the roots, valid or not, added or removed."""

from __future__ import annotations

import logging
import shutil

from knowledge.catalog import Catalog, log_problem_changes, mesh_unchanged, product_details, product_summary
from tests.knowledge.conftest import write_product

BROKEN_YAML = "apiVersion: v3.1.0\nteam:\n  name: [unclosed\n"


def _retitle(title: str):
    def edit(d, c):
        c["name"] = title
    return edit


def test_a_product_that_breaks_keeps_its_last_valid_version_marked_invalid(tmp_path):
    folder = write_product(tmp_path, "sales", "playbooks", edit=_retitle("Sales Playbooks"))
    write_product(tmp_path, "hr", "handbook")
    first = Catalog.load([tmp_path])
    valid_text = (folder / "contract.yaml").read_text()
    (folder / "contract.yaml").write_text(BROKEN_YAML)

    broken = Catalog.load([tmp_path], previous=first)
    kept = broken.get("sales.playbooks")
    assert kept.title == "Sales Playbooks" and kept.problem is not None
    assert kept.problem.startswith("contract.yaml: (document): YAML does not parse at line 4")
    assert str(tmp_path) not in kept.problem  # no server paths for readers
    summary = product_summary(kept)
    assert (summary["validity"], summary["problem"]) == ("invalid", kept.problem)
    assert product_details(kept)["validity"] == "invalid"
    assert product_summary(broken.get("hr.handbook"))["validity"] == "ok"
    [item] = broken.invalid_products()
    assert (item.product_id, item.folder, item.serving) == ("sales.playbooks", folder.resolve(), kept)

    # Still broken at the next reload (another product changed): still the last valid version.
    again = Catalog.load([tmp_path], previous=broken)
    assert again.get("sales.playbooks").title == "Sales Playbooks"

    (folder / "contract.yaml").write_text(valid_text.replace("Sales Playbooks", "Sales Playbooks II"))
    fixed = Catalog.load([tmp_path], previous=again)
    assert fixed.get("sales.playbooks").title == "Sales Playbooks II"
    assert fixed.get("sales.playbooks").problem is None and fixed.invalid_products() == []


def test_a_product_broken_at_first_load_is_reported_not_served(tmp_path):
    folder = write_product(tmp_path, "sales", "playbooks")
    (folder / "product.yaml").write_text("id: [")
    catalog = Catalog.load([tmp_path])
    assert "sales.playbooks" not in catalog.products
    [item] = catalog.invalid_products()
    assert item.product_id == "sales.playbooks" and item.serving is None
    assert item.problems[0].file.endswith("product.yaml")
    # A reload with a previous catalog that never had it valid does not invent one.
    assert "sales.playbooks" not in Catalog.load([tmp_path], previous=catalog).products


def test_only_the_same_folder_keeps_a_last_valid_version(tmp_path):
    write_product(tmp_path / "a", "sales", "playbooks")
    (tmp_path / "b").mkdir()
    first = Catalog.load([tmp_path / "a", tmp_path / "b"])
    assert "sales.playbooks" in first.products
    shutil.rmtree(tmp_path / "a" / "sales")
    other = write_product(tmp_path / "b", "sales", "playbooks")
    (other / "contract.yaml").write_text(BROKEN_YAML)
    moved = Catalog.load([tmp_path / "a", tmp_path / "b"], previous=first)
    assert "sales.playbooks" not in moved.products  # a removed product is gone, not kept by its namesake
    assert [item.serving for item in moved.invalid_products()] == [None]


def test_the_stamp_sees_every_product_file_valid_or_not(tmp_path):
    good = write_product(tmp_path, "sales", "playbooks")
    bad = write_product(tmp_path, "sales", "broken")
    (bad / "contract.yaml").write_text(BROKEN_YAML)

    def changed(change) -> bool:
        stamp = Catalog.load([tmp_path]).stamp
        change()
        return not mesh_unchanged(stamp)

    assert not changed(lambda: (good / "docs" / "guide.md").write_text("# Guide\n\nEdited.\n"))
    assert changed(lambda: (bad / "contract.yaml").write_text(BROKEN_YAML + "# edited\n"))  # invalid one
    assert changed(lambda: (good / "product.yaml").write_text((good / "product.yaml").read_text() + "\n"))
    assert changed(lambda: write_product(tmp_path, "hr", "handbook"))  # a new product
    assert changed(lambda: shutil.rmtree(tmp_path / "hr"))  # a removed one
    assert changed(lambda: (tmp_path / "ops").mkdir())
    empty = tmp_path / "ops" / "runbooks"
    assert changed(lambda: empty.mkdir())
    assert changed(lambda: (empty / "contract.yaml").write_text("kind: [\n"))  # in a folder new since load
    assert changed(lambda: (bad / "contract.yaml").unlink())


def test_problems_are_logged_once_when_new_and_once_when_fixed(tmp_path, caplog):
    folder = write_product(tmp_path, "sales", "playbooks")
    never = write_product(tmp_path, "hr", "handbook")
    (never / "contract.yaml").write_text(BROKEN_YAML)
    caplog.set_level(logging.INFO, logger="knowledge.catalog")

    first = Catalog.load([tmp_path])
    log_problem_changes(None, first)
    assert [(r.levelname, "hr.handbook" in r.message, "not served" in r.message) for r in caplog.records] == [
        ("WARNING", True, True)]
    assert str(never / "contract.yaml") in caplog.records[0].message  # the operator gets the file

    caplog.clear()
    valid_text = (folder / "contract.yaml").read_text()
    (folder / "contract.yaml").write_text(BROKEN_YAML)
    broken = Catalog.load([tmp_path], previous=first)
    log_problem_changes(first, broken)
    [record] = caplog.records
    assert record.levelname == "WARNING" and "sales.playbooks" in record.message
    assert "last valid version" in record.message and "YAML does not parse" in record.message

    caplog.clear()
    log_problem_changes(broken, Catalog.load([tmp_path], previous=broken))  # nothing new: nothing logged
    assert caplog.records == []

    (folder / "contract.yaml").write_text(valid_text)
    fixed = Catalog.load([tmp_path], previous=broken)
    log_problem_changes(broken, fixed)
    [record] = caplog.records
    assert record.levelname == "INFO" and "sales.playbooks is valid again" in record.message
