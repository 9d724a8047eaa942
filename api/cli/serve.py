"""`meshrag serve`: index the mesh if nothing is published yet, then run the HTTP API with uvicorn: in
this process (`--workers 1`, the default), or in N worker processes that share one listening socket.

With N workers the parent indexes (if needed) and starts the embedded PostgreSQL (shared mode) before any
worker exists, hands its resolved settings to the workers as MESHRAG_* variables (each worker builds its
app with `api.app:create_app`, which reads them), and points prometheus_client at a metrics directory
that every worker writes to and `/metrics` sums up. A worker takes connections only once its lifespan has
warmed it up; uvicorn restarts one that dies.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer

from api.cli.common import domain_errors, err_console
from api.cli.index import prepare_answer_passages, print_index_report
from api.cli.progress import RichProgress
from api.settings import ApiSettings
from indexing.pipeline import IndexPipeline
from indexing.releases import release_registry
from knowledge.errors import ConfigError
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
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64,
        help="Server processes sharing the port (default: MESHRAG_WORKERS, else 1). Each loads its own models.",
    ),
) -> None:
    """Serve the HTTP API (ask, search, catalog, releases, provenance, OpenAI-compatible chat). With no
    current release in the data directory, first index the configured mesh (default: the bundled sample)."""
    from api.request_context import configure_logging

    overrides = {"data_dir": data_dir, "host": host, "port": port, "store": store, "dsn": dsn, "workers": workers}
    with domain_errors():
        settings = ApiSettings(**{k: v for k, v in overrides.items() if v is not None})
        # The app loads it again when it starts; checked here too so that a missing or damaged model
        # stops `serve` with one clear line before it spends minutes indexing.
        load_answer_model(settings.answer_model)
        if release_registry(settings).current_id() is None:
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
    if settings.workers > 1:
        _serve_workers(settings, log_level)
        return
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


# Seconds a worker may take to answer uvicorn's liveness ping (a thread in the worker) before it is
# killed and replaced: uvicorn's 5 s is too short while a worker imports torch and loads its models on a
# busy machine, and a worker killed there would be restarted into the same wait, again and again.
WORKER_HEALTHCHECK_S = 60


def _serve_workers(settings: ApiSettings, log_level: str) -> None:
    import uvicorn

    from indexing.stores.pg_shared import is_shared, shared_dsn

    with domain_errors():
        if is_shared(settings):
            shared_dsn(settings)  # the embedded server, if any, is started once here, not raced by N workers
        worker_environment(settings)
    metrics_dir, owned = _metrics_dir()
    err_console.print(f"serving on http://{settings.host}:{settings.port} with {settings.workers} workers: the "
                      "web page at /, API docs at /docs")
    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            log_config=_worker_log_config(log_level),
            access_log=False,
            log_level=log_level,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        )
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_environment(settings: ApiSettings) -> None:
    """Put `settings` into this process's environment as MESHRAG_* variables, from which each worker's
    `ApiSettings()` rebuilds the same settings (checked here: a value that would not survive the trip
    stops the start with its name). Secrets are left as they are: they came from the environment."""
    secret = {name for name, value in settings if hasattr(value, "get_secret_value")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None or name in secret:
            continue
        os.environ[f"MESHRAG_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    rebuilt = ApiSettings()
    changed = [name for name in type(settings).model_fields if getattr(rebuilt, name) != getattr(settings, name)]
    if changed:
        raise ConfigError(f"the setting(s) {', '.join(changed)} do not survive being handed to the worker "
                          "processes as MESHRAG_* variables; set them as environment variables yourself, or serve "
                          "with --workers 1")


def _metrics_dir() -> tuple[Path, bool]:
    """prometheus_client's multiprocess directory, set before any worker imports it: the one named by
    PROMETHEUS_MULTIPROC_DIR, emptied of the last run's files, else a fresh temporary one (removed after).
    True when it is ours to remove."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # counts of an earlier run would be added to this one's
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="meshrag-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path, True


def _worker_log_config(level: str) -> dict[str, Any]:
    """`configure_logging` as a dictConfig that uvicorn applies in every worker, with the worker's pid in
    each line (which worker answered a request, and whose warnings these are)."""
    from api.request_context import LOG_FORMAT

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "api.request_context.RequestIdLogFilter"}},
        "formatters": {"default": {"format": LOG_FORMAT.replace("%(name)s", "%(name)s[%(process)d]")}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "filters": ["request_id"],
                                "formatter": "default"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
