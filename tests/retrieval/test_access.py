"""Which products a principal may read: release ∩ current catalog ∩ filters."""

from __future__ import annotations

import shutil

import pytest
import yaml

from indexing.releases import ReleaseRegistry
from knowledge.catalog import Catalog
from knowledge.errors import ConfigError, ProductNotFound
from knowledge.model import Principal
from retrieval.access import readable_entries, readable_product_ids
from tests.retrieval.conftest import INTERNAL, PUBLIC, RESTRICTED, SmallMesh

ANALYST = Principal("ana", frozenset({"analyst"}))
PEOPLE = Principal("pat", frozenset({"people-partner"}))
ANON = Principal.anonymous()


@pytest.fixture
def release_and_catalog(small_mesh: SmallMesh):
    return ReleaseRegistry(small_mesh.data_dir).get("current"), Catalog.load([small_mesh.root])


def test_roles_decide_what_is_readable(release_and_catalog):
    release, catalog = release_and_catalog
    assert readable_product_ids(release, catalog, ANON) == (PUBLIC,)
    assert readable_product_ids(release, catalog, ANALYST) == (INTERNAL, PUBLIC)
    assert readable_product_ids(release, catalog, PEOPLE) == (RESTRICTED, PUBLIC)
    everyone = Principal("all", frozenset({"analyst", "people-partner"}))
    assert readable_product_ids(release, catalog, everyone) == (INTERNAL, RESTRICTED, PUBLIC)


def test_filters_narrow_and_never_widen(release_and_catalog):
    release, catalog = release_and_catalog
    assert list(readable_entries(release, catalog, ANALYST, products=[INTERNAL])) == [INTERNAL]
    assert list(readable_entries(release, catalog, ANALYST, domains=["platform"])) == [PUBLIC]
    assert list(readable_entries(release, catalog, ANALYST, classifications=["internal"])) == [INTERNAL]
    # A classification filter cannot reach past the roles: nothing, not the restricted product.
    assert readable_entries(release, catalog, ANALYST, classifications=["restricted"]) == {}
    assert readable_entries(release, catalog, ANALYST, domains=["people"]) == {}
    assert readable_entries(release, catalog, ANALYST, products=[]) == {}
    with pytest.raises(ConfigError, match="secret"):
        readable_entries(release, catalog, ANALYST, classifications=["secret"])


def test_unknown_and_unreadable_products_fail_alike_without_naming_restricted_ids(release_and_catalog):
    release, catalog = release_and_catalog
    with pytest.raises(ProductNotFound) as unreadable:
        readable_entries(release, catalog, ANALYST, products=[RESTRICTED])
    with pytest.raises(ProductNotFound) as missing:
        readable_entries(release, catalog, ANALYST, products=["people.nothing"])
    assert str(unreadable.value).replace(RESTRICTED, "X") == str(missing.value).replace("people.nothing", "X")
    assert RESTRICTED not in str(missing.value)
    with pytest.raises(ProductNotFound) as anon:
        readable_entries(release, catalog, ANON, products=["nope.nope"])
    assert INTERNAL not in str(anon.value) and RESTRICTED not in str(anon.value) and PUBLIC in str(anon.value)


def test_current_contract_decides_not_the_indexed_one(small_mesh: SmallMesh, release_and_catalog):
    release, _ = release_and_catalog
    contract_path = small_mesh.root / "ops" / "runbooks" / "contract.yaml"
    contract = yaml.safe_load(contract_path.read_text())
    contract["roles"] = [{"role": "employee", "access": "read"}]
    contract_path.write_text(yaml.safe_dump(contract, sort_keys=False))
    assert readable_product_ids(release, Catalog.load([small_mesh.root]), ANALYST) == (PUBLIC,)


def test_product_gone_from_catalog_is_not_readable(small_mesh: SmallMesh, release_and_catalog):
    release, _ = release_and_catalog
    shutil.rmtree(small_mesh.root / "ops" / "runbooks")
    catalog = Catalog.load([small_mesh.root])
    assert INTERNAL in release.products
    assert readable_product_ids(release, catalog, ANALYST) == (PUBLIC,)
