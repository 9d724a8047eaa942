"""Shared fixtures: real parts only (an embedded PostgreSQL with pgvector, temporary directories)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
from psycopg import sql

from indexing.stores.embedded_pg import start_postgres, stop_postgres


class PgSchema(NamedTuple):
    """Where one test may write: a DSN and a schema of its own."""

    dsn: str
    schema: str


@pytest.fixture(scope="session")
def pg_data_dir() -> Iterator[Path]:
    """The PGDATA of the session's embedded server (for tests that stop and restart it).

    Not under pytest's basetemp: every pytest session (including others running at the same time)
    resets that root to mode 0700, and the server's OS user must be able to traverse the parents."""
    parent = Path(tempfile.mkdtemp(prefix="meshrag-test-pg-"))
    yield parent / "pgdata"
    shutil.rmtree(parent)


@pytest.fixture(scope="session")
def pg_server(pg_data_dir: Path) -> Iterator[str]:
    """DSN of ONE embedded PostgreSQL 18 + pgvector shared by the whole test session."""
    dsn = start_postgres(pg_data_dir)
    yield dsn
    stop_postgres(pg_data_dir)


@pytest.fixture
def pg_dsn_schema(pg_server: str) -> Iterator[PgSchema]:
    """A fresh schema name for one test on the session server; the schema is dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield PgSchema(pg_server, schema)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
