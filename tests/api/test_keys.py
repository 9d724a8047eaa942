"""API keys: hashed storage, atomic 0600 file, lookup by prefix id, `meshrag keys …`."""

from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from api.auth import KeyStore, create_key, hash_key, presented_key, read_key_file, revoke_key
from api.cli.main import app
from api.errors import InvalidApiKey, KeyStoreUnavailable
from api.settings import ApiKeyEntry, ApiSettings
from knowledge.errors import ConfigError
from knowledge.model import Principal

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_created_key_is_stored_hashed_and_authenticates(tmp_path):
    path = tmp_path / "keys.json"
    new = create_key(path, "ana", ["analyst", "employee", "analyst"])
    assert new.key.startswith(f"mr_{new.entry.id}_") and new.entry.roles == ["analyst", "employee"]
    text = path.read_text()
    assert new.key not in text and new.key.split("_", 2)[2] not in text
    assert json.loads(text)["keys"][0]["hash"] == hash_key(new.key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    store = KeyStore(path)
    assert store.principal_for(new.key) == Principal("ana", frozenset({"analyst", "employee"}))
    assert store.principal_for(None) == Principal.anonymous()
    for bad in (
        new.key[:-1] + ("A" if new.key[-1] != "A" else "B"),
        "mr_000000000000_" + "x" * 43,
        "garbage",
    ):
        with pytest.raises(InvalidApiKey) as err:
            store.principal_for(bad)
        assert bad not in str(err.value)


def test_new_and_revoked_keys_take_effect_without_restart(tmp_path):
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    store.warm_up()
    first = create_key(path, "ana", ["analyst"])
    assert store.principal_for(first.key).id == "ana"
    second = create_key(path, "pat", ["people-partner"])
    assert [e.principal for e in read_key_file(path)] == ["ana", "pat"]
    revoke_key(path, first.entry.id)
    with pytest.raises(InvalidApiKey):
        store.principal_for(first.key)
    assert store.principal_for(second.key).id == "pat"
    with pytest.raises(ConfigError, match="key ids there"):
        revoke_key(path, "nope")


def test_environment_entries_and_broken_file(tmp_path, monkeypatch):
    key = "mr_abcdef123456_" + "s" * 43
    entry = {"id": "abcdef123456", "hash": hash_key(key), "principal": "ci-bot", "roles": ["analyst"]}
    monkeypatch.setenv("MESHRAG_API_KEYS", json.dumps([entry]))
    settings = ApiSettings(data_dir=tmp_path)
    store = KeyStore(settings.resolved_api_keys_file(), settings.api_keys)
    assert store.principal_for(key) == Principal("ci-bot", frozenset({"analyst"}))

    settings.resolved_api_keys_file().write_text("{not json")
    with pytest.raises(KeyStoreUnavailable):  # fail closed: the broken file may have revoked this key
        store.principal_for(key)
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        KeyStore(settings.resolved_api_keys_file()).warm_up()


def test_reserved_and_invalid_principals_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="reserved"):
        create_key(tmp_path / "k.json", "anonymous", [])
    with pytest.raises(ConfigError, match="not valid"):
        create_key(tmp_path / "k.json", "ana", ["bad\nrole"])
    with pytest.raises(ValueError):
        ApiKeyEntry(id="abcd1234", hash="sha256:" + "0" * 64, principal="anonymous")


def test_presented_key_headers():
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key(None, "xyz") == "xyz"
    assert presented_key(None, None) is None
    for bad in ("Basic abc", "Bearer ", "abc"):
        with pytest.raises(InvalidApiKey):
            presented_key(bad, None)


def test_keys_cli_prints_the_key_once_and_lists_without_it(tmp_path):
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--principal",
            "ana",
            "--role",
            "analyst",
            "--role",
            "employee",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("mr_")
    as_json = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--principal",
            "pat",
            "--role",
            "people-partner",
            "--data-dir",
            str(tmp_path),
            "--json",
        ],
    )
    data = json.loads(as_json.stdout)
    assert data["entry"]["principal"] == "pat" and data["key"].startswith(f"mr_{data['entry']['id']}_")

    listed = runner.invoke(app, ["keys", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "ana" in listed.stdout and "people-partner" in listed.stdout
    rows = json.loads(runner.invoke(app, ["keys", "list", "--data-dir", str(tmp_path), "--json"]).stdout)
    assert {r["principal"] for r in rows} == {"ana", "pat"}
    for out in (listed.stdout, json.dumps(rows)):
        assert key not in out and data["key"] not in out and "sha256:" not in out

    revoked = runner.invoke(app, ["keys", "revoke", rows[0]["prefix"], "--data-dir", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    bad = runner.invoke(app, ["keys", "create", "--principal", "anonymous", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "reserved" in bad.output


def test_keys_create_warns_when_the_principal_has_keys_with_other_roles(tmp_path):
    def create(*roles: str):
        args = ["keys", "create", "--principal", "dana", "--data-dir", str(tmp_path)]
        return runner.invoke(app, [*args, *(a for r in roles for a in ("--role", r))])

    first = create("analyst")
    assert first.exit_code == 0 and "warning" not in first.stderr
    same = create("analyst")
    assert same.exit_code == 0 and "warning" not in same.stderr
    fewer = create("employee")
    assert fewer.exit_code == 0, fewer.output
    assert fewer.stdout.strip().startswith("mr_")
    warnings = [line for line in fewer.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'dana'" in warnings[0] and "(analyst)" in warnings[0]
    assert [e.roles for e in read_key_file(tmp_path / "api-keys.json")] == [["analyst"], ["analyst"], ["employee"]]
