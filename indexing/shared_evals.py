"""Eval results per release in shared mode: `evals/<release-id>.json` kept in PostgreSQL's `artefacts`
(replaced by each `meshrag eval` of that release), so every replica's product pages show them.

`release_eval_store(settings)` gives the store the settings call for: the data directory's files in FAISS
mode (indexing/release_evals.py), this one in shared mode.
"""

from __future__ import annotations

from pathlib import Path

from indexing.artefacts import ArtefactStore
from indexing.atomic import write_bytes_atomic
from indexing.release_evals import _RELEASE_ID, ReleaseEval, ReleaseEvalStore
from indexing.settings import IndexSettings
from indexing.shared_db import SharedDb
from indexing.stores.pg_shared import is_shared


def release_eval_store(settings: IndexSettings, db: SharedDb | None = None) -> ReleaseEvalStore:
    """Where a deployment's eval results live: the data directory (FAISS mode) or PostgreSQL (shared mode)."""
    if not is_shared(settings):
        return ReleaseEvalStore(settings.resolved_data_dir())
    return SharedReleaseEvalStore(settings.resolved_data_dir(), ArtefactStore(db or SharedDb(settings)))


class SharedReleaseEvalStore(ReleaseEvalStore):
    """ReleaseEvalStore whose records live in PostgreSQL (a local copy is written too, for the operator)."""

    def __init__(self, data_dir: Path, artefacts: ArtefactStore) -> None:
        super().__init__(data_dir)
        self.artefacts = artefacts

    def save(self, result: ReleaseEval) -> Path:
        path = super().save(result)
        self.artefacts.put(f"evals/{path.name}", path.read_bytes(), replace=True)
        return path

    def get(self, release_id: str) -> ReleaseEval | None:
        """The release's latest evaluation as PostgreSQL has it (copied here, then read as in FAISS mode)."""
        if _RELEASE_ID.match(release_id) and (blob := self.artefacts.get(f"evals/{release_id}.json")) is not None:
            write_bytes_atomic(self.dir / f"{release_id}.json", blob)
        return super().get(release_id)
