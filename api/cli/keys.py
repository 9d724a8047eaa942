"""`meshrag keys create|list|revoke`: API keys of the HTTP service. A key is printed once, when it is
created; only its sha256 hash is kept — in the key file, or in shared mode (`--store pgvector`, or
MESHRAG_STORE) in PostgreSQL, where every replica sees a new or revoked key within about a second."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from api.auth import create_key, read_key_file, revoke_key
from api.cli.common import console, domain_errors, err_console, print_json
from api.settings import ApiSettings
from api.state.keys import PgKeyTable, key_table
from knowledge.errors import ConfigError

app = typer.Typer(help="Create, list and revoke API keys of the HTTP service.", no_args_is_help=True)

DataDirOption = typer.Option(
    None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag)."
)
KeysFileOption = typer.Option(
    None, "--keys-file", help="Key file (default: MESHRAG_API_KEYS_FILE, else <data dir>/api-keys.json). "
    "Not with --store pgvector, which keeps keys in PostgreSQL."
)
StoreOption = typer.Option(
    None, "--store",
    help="faiss (default: keys in the key file) or pgvector (shared mode: keys in PostgreSQL)."
)
DsnOption = typer.Option(
    None, "--dsn", help="PostgreSQL URL of shared mode (default: MESHRAG_DSN, else the embedded server under "
    "the data dir)."
)


def _settings(data_dir: Path | None, keys_file: Path | None, store: str | None, dsn: str | None
              ) -> ApiSettings:
    given = {"data_dir": data_dir, "api_keys_file": keys_file, "store": store, "dsn": dsn}
    settings = ApiSettings(**{k: v for k, v in given.items() if v is not None})
    if keys_file is not None and settings.store == "pgvector":
        raise ConfigError("--keys-file names a key file, but shared mode (store pgvector) keeps keys in "
                          "PostgreSQL; drop --keys-file, or use --store faiss for a key file")
    return settings


@contextmanager
def _table(settings: ApiSettings) -> Iterator[PgKeyTable | None]:
    table = key_table(settings)
    try:
        yield table
    finally:
        if table is not None:
            table.close()


@app.command("create")
def create(
    principal: str = typer.Option(..., "--principal", help="Who the key acts as (recorded in provenance)."),
    roles: list[str] = typer.Option(
        None, "--role", help="A contract role the key holds (repeatable). None: public products only."
    ),
    data_dir: Path | None = DataDirOption,
    keys_file: Path | None = KeysFileOption,
    store: str | None = StoreOption,
    dsn: str | None = DsnOption,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the key and its stored entry (the entry is what MESHRAG_API_KEYS takes) as JSON.",
    ),
) -> None:
    """Create a key and print it once; only its hash is written (the key file atomically with mode 0600, or
    PostgreSQL in shared mode)."""
    with domain_errors():
        settings = _settings(data_dir, keys_file, store, dsn)
        with _table(settings) as table:
            if table is not None:
                new, where = table.create(principal, roles or ()), table.where
            else:
                path = settings.resolved_api_keys_file()
                new, where = create_key(path, principal, roles or ()), str(path)
    if new.other_roles:
        shown = "; ".join(", ".join(r) or "none" for r in new.other_roles)
        err_console.print(
            f"warning: principal {new.entry.principal!r} already has keys with other roles ({shown}); its "
            "keys share its provenance records. Use another --principal for a different caller.",
            markup=False, highlight=False, soft_wrap=True,
        )
    if as_json:
        target = {"table": where} if table is not None else {"file": where}
        print_json({"key": new.key, "entry": new.entry.model_dump()} | target)
        return
    console.print(new.key, soft_wrap=True, highlight=False)
    err_console.print(
        f"key {new.entry.id} for principal {new.entry.principal!r} "
        f"(roles: {', '.join(new.entry.roles) or 'none'}) written to {where}. "
        "Copy the key now: it is not shown again.",
        markup=False, highlight=False,
    )


@app.command("list")
def list_keys(
    data_dir: Path | None = DataDirOption,
    keys_file: Path | None = KeysFileOption,
    store: str | None = StoreOption,
    dsn: str | None = DsnOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Principals, roles and key ids (prefixes) — never keys or hashes. Shared mode lists revoked keys
    too."""
    with domain_errors():
        settings = _settings(data_dir, keys_file, store, dsn)
        rows: list[dict[str, Any]] = []
        with _table(settings) as table:
            if table is not None:
                rows += [_row(e, "postgres", revoked) for e, revoked in table.all()]
                title = table.where
            else:
                title = str(settings.resolved_api_keys_file())
        # The server reads a key file in shared mode too (keys made before it): list what it would accept.
        rows += [_row(e, "file") for e in read_key_file(settings.resolved_api_keys_file())]
        rows += [_row(e, "env") for e in settings.api_keys]
    if as_json:
        print_json(rows)
        return
    table_out = Table(title=f"{len(rows)} API keys ({title})")
    for col in ("prefix", "principal", "roles", "created", "source", "revoked"):
        table_out.add_column(col, no_wrap=col == "prefix")
    for r in rows:
        table_out.add_row(r["prefix"], r["principal"], ", ".join(r["roles"]) or "-", r["created_at"] or "-",
                          r["source"], r.get("revoked_at") or "-")
    console.print(table_out)


def _row(entry: Any, source: str, revoked: str | None = None) -> dict[str, Any]:
    row = {"id": entry.id, "prefix": f"mr_{entry.id}_", "principal": entry.principal, "roles": entry.roles,
           "created_at": entry.created_at, "source": source}
    return row | ({"revoked_at": revoked} if source == "postgres" else {})


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(
        ..., help="The key id (`meshrag keys list`), with or without the mr_ prefix."
    ),
    data_dir: Path | None = DataDirOption,
    keys_file: Path | None = KeysFileOption,
    store: str | None = StoreOption,
    dsn: str | None = DsnOption,
) -> None:
    """Revoke a key: running servers stop accepting it at once (shared mode: every replica within about a
    second)."""
    kid = key_id.removeprefix("mr_").rstrip("_")
    with domain_errors():
        settings = _settings(data_dir, keys_file, store, dsn)
        path = settings.resolved_api_keys_file()
        with _table(settings) as table:
            if table is None:
                entry = revoke_key(path, kid)
            elif kid in {e.id for e in read_key_file(path)}:
                entry = revoke_key(path, kid)  # a key of the file the server still reads in shared mode
            else:
                entry = table.revoke(kid)
    console.print(f"revoked key {entry.id} of principal {entry.principal!r}")
