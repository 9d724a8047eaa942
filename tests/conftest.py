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


# ---- shared sample-mesh index (appended for tests/api; identical to the fixtures of the same names in
# ---- tests/retrieval/conftest.py, which override these there and can be deleted so that one index is
# ---- built per session) ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def minilm():
    """The real offline all-MiniLM-L6-v2, loaded once per session. `slow` tests only."""
    from indexing.embedder import create_embedder

    embedder = create_embedder("minilm")
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory, minilm) -> Path:
    """The bundled sample mesh indexed with the real MiniLM into a session directory. `slow` tests only."""
    from indexing.pipeline import IndexPipeline
    from indexing.settings import IndexSettings
    from knowledge.settings import SAMPLE_MESH

    data_dir = tmp_path_factory.mktemp("sample-index")
    report = IndexPipeline(IndexSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH]), embedder=minilm).run()
    assert report.published and not report.blocked, report.as_dict()
    # As `meshrag index` does: the answer stage's passages are embedded with the release, so every
    # service on (a copy of) this directory is ready at once and answers without embedding passages.
    from retrieval.service import MeshService
    from retrieval.serving import ServingContext
    from retrieval.settings import RetrievalSettings

    settings = RetrievalSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH])
    service = MeshService(settings, context=ServingContext(settings, embedder=minilm))
    service.warm_up()
    service.prepare_answer_vectors()
    service.provenance.close()
    return data_dir

# ---- end of the shared sample-mesh index -----------------------------------------------------------
