"""`meshrag mcp`: the MCP tools over stdio, for a local assistant."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from api.cli.common import domain_errors, err_console
from knowledge.model import Principal
from retrieval.service import MeshService
from retrieval.settings import RetrievalSettings


def mcp(
    roles: list[str] = typer.Option(None, "--as", help="Act with this role (repeatable). Without it and without a key: public products only."),
    principal_name: str = typer.Option("mcp-stdio", "--principal", help="Who the assistant acts as (recorded in provenance)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag)."),
) -> None:
    """Serve search_catalog, get_product, search and ask over stdio (MCP). With MESHRAG_API_KEY set, the
    key's principal and roles are used instead of --as/--principal."""
    from api.auth import open_key_store
    from api.mcp_server import run_stdio
    from api.settings import ApiSettings

    with domain_errors():
        overrides = {"data_dir": data_dir} if data_dir is not None else {}
        principal = Principal(principal_name, frozenset(roles or ()))
        key = os.environ.get("MESHRAG_API_KEY")
        if key:
            api_settings = ApiSettings(**overrides)
            store = open_key_store(api_settings)
            store.warm_up()
            principal = store.principal_for(key)
        service = MeshService(RetrievalSettings(**overrides))
        service.warm_up()
    err_console.print(f"meshrag MCP on stdio as {principal.id} (roles: {', '.join(sorted(principal.roles)) or 'none'})")
    run_stdio(service, principal)
