"""`meshrag serve`: index the mesh if nothing is published yet, then run the HTTP API with uvicorn."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from api.cli.common import domain_errors, err_console
from api.cli.index import prepare_answer_passages, print_index_report
from api.cli.progress import RichProgress
from api.settings import ApiSettings
from indexing.pipeline import IndexPipeline
from indexing.releases import ReleaseRegistry
from retrieval.answer.model import load_answer_model


def serve(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag)."
    ),
    host: str | None = typer.Option(
        None, "--host", help="Interface to bind (default 127.0.0.1: this machine only)."
    ),
    port: int | None = typer.Option(None, "--port", help="TCP port (default 8321)."),
    store: str | None = typer.Option(None, "--store", help="faiss (default) or pgvector."),
    dsn: str | None = typer.Option(
        None, "--dsn", help="PostgreSQL URL for pgvector (default: embedded server under the data dir)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Serve the HTTP API (ask, search, catalog, releases, provenance, OpenAI-compatible chat). With no
    current release in the data directory, first index the configured mesh (default: the bundled sample)."""
    from api.request_context import configure_logging

    overrides = {"data_dir": data_dir, "host": host, "port": port, "store": store, "dsn": dsn}
    with domain_errors():
        settings = ApiSettings(**{k: v for k, v in overrides.items() if v is not None})
        # The app loads it again when it starts; checked here too so that a missing or damaged model
        # stops `serve` with one clear line before it spends minutes indexing.
        load_answer_model(settings.answer_model)
        if ReleaseRegistry(settings.resolved_data_dir()).current_id() is None:
            roots = ", ".join(str(r) for r in settings.mesh_roots)
            err_console.print(
                f"[bold]no release is current in {settings.resolved_data_dir()}[/]: indexing {roots} "
                "first, then embed the answer passages (3–5 minutes for the sample mesh on 2 cores)"
            )
            with RichProgress() as bars:
                report = IndexPipeline(settings, progress=bars).run()
            print_index_report(report)
            if report.release_id is None:
                err_console.print(
                    "[bold red]error:[/] nothing could be indexed, so there is nothing to serve; "
                    "fix the products (`meshrag products validate`) and retry"
                )
                raise typer.Exit(2)
            if settings.precompute_answer_vectors:
                passages = prepare_answer_passages(settings, report.release_id)
                err_console.print(f"answer passages: {passages['passages']} ({passages['embedded']} embedded) "
                                  f"in {passages['seconds']:.1f} s")
    if not _is_loopback(settings.host):
        err_console.print(
            f"[yellow]binding {settings.host}: reachable from other machines. Requests without a key "
            "read public products; create keys with `meshrag keys create`.[/]"
        )
    configure_logging(log_level)
    import uvicorn

    from api.app import create_app

    err_console.print(f"serving on http://{settings.host}:{settings.port}: the web page at /, API docs at /docs")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        log_level=log_level,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
