"""`meshrag keys create|list|revoke`: API keys of the HTTP service. A key is printed once, when it is
created; only its sha256 hash is kept."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from api.auth import create_key, read_key_file, revoke_key
from api.cli.common import console, domain_errors, err_console, print_json
from api.settings import ApiSettings

app = typer.Typer(help="Create, list and revoke API keys of the HTTP service.", no_args_is_help=True)

DataDirOption = typer.Option(
    None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag)."
)
KeysFileOption = typer.Option(
    None, "--keys-file", help="Key file (default: MESHRAG_API_KEYS_FILE, else <data dir>/api-keys.json)."
)


def _keys_file(data_dir: Path | None, keys_file: Path | None) -> Path:
    values = {k: v for k, v in {"data_dir": data_dir, "api_keys_file": keys_file}.items() if v is not None}
    return ApiSettings(**values).resolved_api_keys_file()


@app.command("create")
def create(
    principal: str = typer.Option(..., "--principal", help="Who the key acts as (recorded in provenance)."),
    roles: list[str] = typer.Option(
        None, "--role", help="A contract role the key holds (repeatable). None: public products only."
    ),
    data_dir: Path | None = DataDirOption,
    keys_file: Path | None = KeysFileOption,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the key and its stored entry (the entry is what MESHRAG_API_KEYS takes) as JSON.",
    ),
) -> None:
    """Create a key and print it once; only its hash is written (atomically, mode 0600)."""
    with domain_errors():
        path = _keys_file(data_dir, keys_file)
        new = create_key(path, principal, roles or ())
    if new.other_roles:
        shown = "; ".join(", ".join(r) or "none" for r in new.other_roles)
        err_console.print(
            f"warning: principal {new.entry.principal!r} already has keys with other roles ({shown}); its "
            "keys share its provenance records. Use another --principal for a different caller.",
            markup=False, highlight=False, soft_wrap=True,
        )
    if as_json:
        print_json({"key": new.key, "entry": new.entry.model_dump(), "file": str(path)})
        return
    console.print(new.key, soft_wrap=True, highlight=False)
    err_console.print(
        f"key {new.entry.id} for principal {new.entry.principal!r} "
        f"(roles: {', '.join(new.entry.roles) or 'none'}) written to {path}. "
        "Copy the key now: it is not shown again."
    )


@app.command("list")
def list_keys(
    data_dir: Path | None = DataDirOption,
    keys_file: Path | None = KeysFileOption,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Principals, roles and key ids (prefixes) — never keys or hashes."""
    with domain_errors():
        settings = ApiSettings(
            **{k: v for k, v in {"data_dir": data_dir, "api_keys_file": keys_file}.items() if v is not None}
        )
        rows = [(e, "file") for e in read_key_file(settings.resolved_api_keys_file())]
        rows += [(e, "env") for e in settings.api_keys]
    shown = [
        {
            "id": e.id,
            "prefix": f"mr_{e.id}_",
            "principal": e.principal,
            "roles": e.roles,
            "created_at": e.created_at,
            "source": source,
        }
        for e, source in rows
    ]
    if as_json:
        print_json(shown)
        return
    table = Table(title=f"{len(shown)} API keys ({settings.resolved_api_keys_file()})")
    for col in ("prefix", "principal", "roles", "created", "source"):
        table.add_column(col, no_wrap=col == "prefix")
    for r in shown:
        table.add_row(
            r["prefix"], r["principal"], ", ".join(r["roles"]) or "-", r["created_at"] or "-", r["source"]
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(
        ..., help="The key id (`meshrag keys list`), with or without the mr_ prefix."
    ),
    data_dir: Path | None = DataDirOption,
    keys_file: Path | None = KeysFileOption,
) -> None:
    """Remove a key from the key file; a running server stops accepting it at once."""
    with domain_errors():
        entry = revoke_key(_keys_file(data_dir, keys_file), key_id.removeprefix("mr_").rstrip("_"))
    console.print(f"revoked key {entry.id} of principal {entry.principal!r}")
