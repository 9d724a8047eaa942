"""The eval results kept per release: saved atomically, read back typed, absent as None, ids checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexing.release_evals import ReleaseEval, ReleaseEvalStore
from knowledge.errors import ConfigError

RELEASE = "rel-27887133c919de77"


def result(release_id: str = RELEASE, recall: float = 0.75) -> ReleaseEval:
    return ReleaseEval(release_id=release_id, recorded_at="2026-12-06T09:00:00+00:00", sets=("finance_people",),
                       sets_digest="abc123", overall={"n": 4, "recall@5": recall},
                       per_product={"finance.revenue-reporting": {"n": 2, "recall@5": recall, "access_leaks": 0,
                                                                  "answer_correctness": None}},
                       settings={"k_retrieval": 10})


def test_saved_results_read_back_and_a_new_run_replaces_them(tmp_path: Path):
    store = ReleaseEvalStore(tmp_path)
    assert store.get(RELEASE) is None
    path = store.save(result())
    assert path == tmp_path / "evals" / f"{RELEASE}.json"
    assert store.get(RELEASE) == result()
    assert store.get(RELEASE).product("finance.revenue-reporting")["answer_correctness"] is None  # type: ignore[union-attr]
    assert store.get(RELEASE).product("people.compensation-handbook") is None  # type: ignore[union-attr]

    store.save(result(recall=0.5))
    assert store.get(RELEASE).overall["recall@5"] == 0.5  # type: ignore[union-attr]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it


def test_ids_that_are_not_release_ids_never_name_a_file(tmp_path: Path):
    store = ReleaseEvalStore(tmp_path)
    for bad in ("../rel-1", "current", "rel-1/../../x", ""):
        assert store.get(bad) is None
        with pytest.raises(ConfigError, match="is not a release id"):
            store.save(result(release_id=bad))
    assert not (tmp_path / "evals").exists()


def test_a_newer_format_asks_for_an_upgrade(tmp_path: Path):
    store = ReleaseEvalStore(tmp_path)
    path = store.save(result())
    path.write_text(json.dumps(result().as_dict() | {"format": 99}), encoding="utf-8")
    with pytest.raises(ConfigError, match="newer meshrag"):
        store.get(RELEASE)
