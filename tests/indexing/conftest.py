"""Fixtures for the indexing steps: the real MiniLM model (once per session), the PII scanner and the
deterministic hash embedder, all created through the same factories production uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from indexing.chunking import Chunker, ChunkerConfig
from indexing.embedder import create_embedder
from indexing.pii import PiiScanner
from indexing.sources import load_document
from indexing.types import Embedder, SourceDocument


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    """The real offline all-MiniLM-L6-v2, loaded once per test session. Use only from `slow` tests."""
    embedder = create_embedder("minilm")
    embedder.warm_up()
    return embedder


@pytest.fixture
def hash_embedder() -> Embedder:
    embedder = create_embedder("hash")
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def pii_scanner() -> PiiScanner:
    scanner = PiiScanner()
    scanner.warm_up()
    return scanner


@pytest.fixture
def chunker(hash_embedder: Embedder) -> Chunker:
    """The default chunker against the hash embedder's token count and a MiniLM-sized window."""
    made = Chunker(ChunkerConfig(), hash_embedder.count_tokens, 256)
    made.warm_up()
    return made


@pytest.fixture
def make_doc(tmp_path: Path) -> Callable[..., SourceDocument]:
    """Write `content` to a file named `name` under tmp_path and load it."""

    def make(name: str, content: str | bytes, product_id: str = "test.product") -> SourceDocument:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="")
        else:
            path.write_bytes(content)
        return load_document(product_id, path, name)

    return make


def pg_rows(dsn: str, schema: str) -> list[tuple[str, bytes]]:
    """Every row of every table in `schema`, as (table, repr bytes): for checks that no stored artefact
    holds some text."""
    import psycopg

    rows = []
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                              (schema,)).fetchall()
        assert tables
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                rows.append((table, repr(row).encode()))
    return rows
