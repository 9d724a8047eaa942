"""Fixtures for shared-mode tests: a fresh embedded PostgreSQL of their own, a fresh schema per test, and
a tiny mesh to index.

`shared_pg` is a server separate from tests/conftest.py's `pg_server`, so a test here may stop and restart
it (or fill it) without touching other packages' tests. Its PGDATA is not under pytest's basetemp: other
pytest sessions reset that root to 0700, and the server's OS user must traverse the parents.
"""

from __future__ import annotations

import os
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
from tests.conftest import PgSchema
from tests.retrieval.conftest import SMALL_MESH, write_product


class SharedPg(NamedTuple):
    """The session's shared-mode server: its DSN and PGDATA (for tests that restart it)."""

    dsn: str
    pgdata: Path


def fresh_schema(prefix: str = "t") -> str:
    """A schema name no other test uses (≤ 63 characters)."""
    return f"{prefix[:40]}_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def shared_pg() -> Iterator[SharedPg]:
    """A fresh embedded PostgreSQL 18 + pgvector in a temporary directory, for the whole session."""
    work = Path(tempfile.mkdtemp(prefix="meshrag-shared-pg-"))
    os.chmod(work, 0o755)
    pgdata = work / "pgdata"
    dsn = start_postgres(pgdata)
    try:
        yield SharedPg(dsn, pgdata)
    finally:
        stop_postgres(pgdata)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def shared_schema(shared_pg: SharedPg) -> Iterator[PgSchema]:
    """A fresh schema on `shared_pg` for one test, dropped afterwards."""
    schema = fresh_schema()
    yield PgSchema(shared_pg.dsn, schema)
    try:
        with psycopg.connect(shared_pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    except psycopg.OperationalError:
        pass  # a test left the server stopped; its data dir goes with the session


def write_tiny_mesh(root: Path, products: tuple[str, ...] = tuple(SMALL_MESH)) -> Path:
    """tests/retrieval's three-product mesh (or some of its products) under `root`."""
    for pid in products:
        spec = SMALL_MESH[pid]
        write_product(root, pid, spec["classification"], spec["roles"], spec["docs"])
    return root


def append_to_doc(root: Path, product_id: str, document: str, sentence: str) -> None:
    """Change one source document of a product written by `write_tiny_mesh`."""
    domain, name = product_id.split(".")
    path = root / domain / name / "docs" / document
    path.write_text(path.read_text("utf-8") + f"\n{sentence}\n", encoding="utf-8")
