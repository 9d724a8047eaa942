"""The BEIR runner on a tiny BEIR-format dataset, with the deterministic hash embedder (no MiniLM)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from eval_sets.beir import (
    BeirEvaluation,
    FusionParams,
    _ideal_dcg,
    _ndcg10,
    _ranks,
    _relevance_matrix,
    _rrf_matrix,
    load_beir,
    main,
    ranx_scores,
    run_beir,
    tune_fusion,
)
from indexing.embedder import HashEmbedder, create_embedder, register_embedder
from knowledge.errors import ConfigError
from retrieval.fusion import reciprocal_rank_fusion

DOCS = [
    ("d1", "Coffee roasting", "Roasting green coffee beans develops aroma and colour."),
    ("d2", "Espresso extraction", "Espresso is brewed by forcing hot water through finely ground coffee."),
    ("d3", "Tea oxidation", "Black tea leaves are fully oxidised before drying."),
    ("d4", "Green tea", "Green tea is steamed or pan fired to stop oxidation."),
    ("d5", "Milk frothing", "Steam wands froth milk for cappuccino and latte."),
    ("d6", "Water hardness", "Hard water leaves scale in kettles and espresso machines."),
    ("d7", "Grinder burrs", "Burr grinders crush beans to an even particle size."),
    ("d8", "Cold brew", "Cold brew steeps coarse coffee grounds in cold water for many hours."),
    ("d9", "Decaffeination", "Decaf beans are soaked to remove caffeine before roasting."),
    ("d10", "", "Storage: keep roasted beans airtight, away from light and heat."),
    ("d11", "Latte art", "Pouring microfoam milk into espresso draws hearts and rosettas."),
    ("d12", "Kettle descaling", "Citric acid removes limescale from a kettle."),
]
QUERIES = {
    "q1": "how are coffee beans roasted",
    "q2": "remove scale from kettle",
    "q3": "oxidation of tea leaves",
    "q4": "frothing milk for latte",
    "q5": "grind size of coffee beans",
    "q6": "brewing coffee with cold water",
}
TRAIN = [("q1", "d1", 1), ("q1", "d9", 1), ("q2", "d12", 1), ("q2", "d6", 1), ("q3", "d3", 1)]
TEST = [("q4", "d5", 1), ("q4", "d11", 1), ("q5", "d7", 1), ("q6", "d8", 1), ("q6", "d3", 0)]


def write_beir(root: Path, test=TEST) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id, title, text in DOCS:
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text in QUERIES.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, rows in (("train", TRAIN), ("test", test)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


class CountingHashEmbedder(HashEmbedder):
    """The hash embedder, counting the texts it is asked to embed."""

    embedded = 0

    def embed_documents(self, texts):
        CountingHashEmbedder.embedded += len(texts)
        return super().embed_documents(texts)


register_embedder("counting-hash", CountingHashEmbedder, replace=True)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


@pytest.fixture
def hash_embedder():
    embedder = create_embedder("hash")
    embedder.warm_up()
    return embedder


def test_loader_reads_corpus_queries_and_qrels(dataset: Path):
    ds = load_beir(dataset)
    assert ds.name == "tiny"
    assert ds.doc_ids[:2] == ("d1", "d2")
    assert ds.doc_texts[0] == "Coffee roasting Roasting green coffee beans develops aroma and colour."
    assert ds.doc_texts[9] == "Storage: keep roasted beans airtight, away from light and heat."  # empty title
    assert ds.queries["q2"] == "remove scale from kettle"
    assert dict(ds.split("train")["q1"]) == {"d1": 1, "d9": 1}
    assert dict(ds.split("test")["q6"]) == {"d8": 1}  # score 0 is not a judgement of relevance
    assert sorted(ds.split("test")) == ["q4", "q5", "q6"]
    with pytest.raises(ConfigError, match="no qrels/dev.tsv"):
        ds.split("dev")


def test_loader_rejects_unknown_queries_and_missing_folders(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a folder"):
        load_beir(tmp_path / "absent")
    root = write_beir(tmp_path / "bad", test=[("q99", "d1", 1)])
    with pytest.raises(ConfigError, match="unknown queries"):
        load_beir(root)


def test_digest_follows_the_encoded_text(tmp_path: Path):
    a = load_beir(write_beir(tmp_path / "a"))
    b_root = write_beir(tmp_path / "b")
    assert load_beir(b_root).digest == a.digest  # where it lives does not matter
    corpus = b_root / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("aroma", "flavour"), encoding="utf-8")
    assert load_beir(b_root).digest != a.digest


def test_ranx_metrics_match_a_hand_computed_case():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d5": 1}}
    run = {"q1": {"d2": 0.9, "d1": 0.8, "d4": 0.7, "d3": 0.6}, "q2": {"d1": 0.5}}
    # q1: relevant at ranks 2 and 4; ideal at ranks 1 and 2. q2: nothing relevant retrieved.
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    scores = ranx_scores(qrels, run)
    assert scores["ndcg@10"] == pytest.approx((ndcg_q1 + 0.0) / 2, abs=1e-6)
    assert scores["recall@100"] == pytest.approx((1.0 + 0.0) / 2)
    # A query without any result scores zero instead of failing.
    assert ranx_scores(qrels, {"q1": run["q1"]})["ndcg@10"] == pytest.approx(ndcg_q1 / 2, abs=1e-6)

    # The vectorised nDCG used for tuning agrees with ranx.
    docs = ["d1", "d2", "d3", "d4", "d5"]
    matrix = np.array([[0.8, 0.9, 0.6, 0.7, 0.0], [0.5, 0.0, 0.0, 0.0, 0.0]])
    ideal = _ideal_dcg(qrels, ["q1", "q2"], 10)
    value = _ndcg10(matrix, _relevance_matrix(qrels, ["q1", "q2"], docs), ideal, positive_only=True)
    assert value == pytest.approx(scores["ndcg@10"], abs=1e-6)


def test_vectorised_rrf_ranks_like_reciprocal_rank_fusion():
    rng = np.random.default_rng(7)
    dense = rng.normal(size=(1, 12))
    bm25 = np.where(rng.random((1, 12)) < 0.5, rng.random((1, 12)) * 10, 0.0)
    ids = [f"d{i:02d}" for i in range(12)]
    for params in (FusionParams(rrf_k=60, dense_weight=0.5, depth=12), FusionParams(rrf_k=1, dense_weight=0.7, depth=4)):
        fused = _rrf_matrix(_ranks(dense), _ranks(bm25), bm25 > 0, params)[0]
        dense_list = [ids[i] for i in np.argsort(-dense[0], kind="stable")[: params.depth]]
        bm25_list = [ids[i] for i in np.argsort(-bm25[0], kind="stable")[: params.depth] if bm25[0, i] > 0]
        expected = reciprocal_rank_fusion({"dense": dense_list, "keyword": bm25_list}, k=params.rrf_k,
                                          weights={"dense": params.dense_weight, "keyword": 1 - params.dense_weight})
        assert {d: pytest.approx(s) for d, s in expected} == {ids[i]: fused[i] for i in range(12) if fused[i] > 0}


def test_hybrid_is_tuned_on_train_only(dataset: Path, hash_embedder, tmp_path: Path):
    params = tune_fusion(dataset, hash_embedder, cache_dir=tmp_path / "cache")
    assert params.tuned_on == "train (3 queries)"
    assert params.method in ("rrf", "convex") and 0.0 <= params.dense_weight <= 1.0
    assert params.train_ndcg_at_10 is not None and 0.0 < params.train_ndcg_at_10 <= 1.0
    # Different test judgements cannot change what is tuned.
    other = write_beir(tmp_path / "other", test=[("q4", "d1", 1), ("q5", "d2", 1)])
    assert tune_fusion(other, hash_embedder, cache_dir=tmp_path / "cache") == params

    report = run_beir(dataset, "test", ("dense", "keyword", "keyword-tuned", "hybrid-rrf60", "hybrid"),
                      hash_embedder, cache_dir=tmp_path / "cache")
    assert report.fusion == params
    assert report.n_queries == 3 and report.n_docs == 12
    for method, result in report.results.items():
        assert 0.0 <= result.ndcg_at_10 <= 1.0 and 0.0 <= result.recall_at_100 <= 1.0, method
    assert report.results["keyword"].recall_at_100 == 1.0  # every test query shares a word with its documents
    # Explicit params are used as given, and tuning on the evaluated split is refused.
    fixed = FusionParams(method="convex", dense_weight=1.0)
    ev = BeirEvaluation(load_beir(dataset), hash_embedder, tmp_path / "cache")
    assert ev.evaluate("hybrid", "test", fixed).ndcg_at_10 == ev.evaluate("dense", "test").ndcg_at_10
    with pytest.raises(ConfigError, match="train split"):
        run_beir(dataset, "train", ("hybrid",), hash_embedder, cache_dir=tmp_path / "cache")


def test_corpus_vectors_are_cached_between_runs(dataset: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    CountingHashEmbedder.embedded = 0
    first = run_beir(dataset, "test", ("dense",), create_embedder("counting-hash"), cache_dir=cache)
    assert CountingHashEmbedder.embedded == len(DOCS) + len(QUERIES)
    assert not first.corpus_cached
    digest = load_beir(dataset).digest
    assert (cache / f"{digest}-hash-384-v1.npy").is_file()

    second = run_beir(dataset, "test", ("dense",), create_embedder("counting-hash"), cache_dir=cache)
    assert CountingHashEmbedder.embedded == len(DOCS) + len(QUERIES)  # nothing encoded again
    assert second.corpus_cached
    assert second.results == first.results


def test_main_prints_a_table_and_json(dataset: Path, tmp_path: Path, capsys):
    args = [str(dataset), "--embedder", "hash", "--cache-dir", str(tmp_path / "c"), "--methods", "dense,keyword"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "nDCG@10" in out and "dense" in out and "keyword" in out
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["results"]) == {"dense", "keyword"} and data["split"] == "test"
    assert main([str(tmp_path / "missing"), "--embedder", "hash"]) == 2
