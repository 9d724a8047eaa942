from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from indexing.keyword import NAME, VERSION, KeywordIndex
from knowledge.errors import ConfigError

DOCS = {
    "net-revenue": "Net revenue is gross sales minus discounts, refunds and chargebacks.",
    "churn": "Churn rate: subscribers who cancelled during the month divided by active subscribers.",
    "refunds": "Refunds are issued within 30 days. Refunds above $150 need a supervisor; refunds are logged.",
    "model": "The fct_net_revenue model lives in ANALYTICS.MART_FINANCE.",
    "stop": "The and of to is it.",
}


@pytest.fixture
def index() -> KeywordIndex:
    built = KeywordIndex()
    built.build(list(DOCS), list(DOCS.values()))
    return built


def test_tokenisation_lowercases_splits_on_word_characters_drops_stopwords_and_stems():
    tokens = KeywordIndex().tokenize("The fct_net_revenue models, per DR-014, are NOT in Q3!")
    assert tokens == ["fct_net_revenu", "model", "per", "dr", "014", "q3"]
    assert KeywordIndex().tokenize("Refunds refunded REFUNDING, naïve cafés") == ["refund"] * 3 + ["naïv", "café"]


def test_inflected_query_terms_match_the_same_stem(index):
    assert index.search("refund", k=1)[0][0] == "refunds"
    assert index.search("cancelling subscriber", k=1)[0][0] == "churn"
    assert index.search("modelled", k=1)[0][0] == "model"


def test_tokenisation_is_the_same_from_many_threads():
    texts = [f"Subscribers cancelled {i} refunds, chargebacks and discounting {i % 7}" for i in range(200)]
    expected = [KeywordIndex().tokenize(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(KeywordIndex().tokenize, texts)) == expected


def test_search_ranks_the_matching_document_first(index):
    assert index.search("refunds supervisor", k=3)[0][0] == "refunds"
    assert index.search("how is churn computed?", k=3)[0][0] == "churn"
    assert [doc for doc, _ in index.search("fct_net_revenue", k=5)] == ["model"]


def test_zero_scores_stopword_queries_and_k(index):
    assert index.search("espresso", k=5) == []  # unknown term: nothing scores
    assert index.search("the and of", k=5) == []  # only stopwords
    assert index.search("", k=5) == []
    assert len(index.search("revenue refunds subscribers", k=2)) == 2
    assert index.search("refunds", k=0) == []
    scores = [score for _, score in index.search("net revenue refunds", k=10)]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


def test_scores_follow_lucene_bm25(index):
    # Lucene: idf = ln(1 + (N - df + 0.5) / (df + 0.5)); tf part = tf / (tf + k1 * (1 - b + b * dl / avgdl)).
    tokens = {doc: index.tokenize(text) for doc, text in DOCS.items()}
    avgdl = sum(map(len, tokens.values())) / len(tokens)
    df = sum("refund" in t for t in tokens.values())
    idf = math.log(1 + (len(DOCS) - df + 0.5) / (df + 0.5))

    def expected(doc: str) -> float:
        tf = tokens[doc].count("refund")
        return idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * len(tokens[doc]) / avgdl))

    results = index.search("refunds", k=5)
    assert [doc for doc, _ in results] == ["refunds", "net-revenue"]
    for doc, score in results:
        assert score == pytest.approx(expected(doc), rel=1e-5)


def test_ties_keep_index_order():
    tied = KeywordIndex()
    tied.build(["b", "a", "c"], ["same words here", "same words here", "other"])
    assert [doc for doc, _ in tied.search("same words", k=3)] == ["b", "a"]


def test_save_and_load_round_trip(index, tmp_path: Path):
    target = tmp_path / "keyword"
    index.save(target)
    loaded = KeywordIndex.load(target)
    assert loaded.ids == index.ids and (loaded.k1, loaded.b) == (1.2, 0.75)
    for query in ("refunds supervisor", "net revenue", "churn subscribers"):
        assert loaded.search(query, k=5) == index.search(query, k=5)
    meta = json.loads((target / "meshrag-keyword.json").read_text())
    assert (meta["name"], meta["version"]) == (NAME, VERSION)
    assert meta["stemmer"]["algorithm"] == "snowball-english" and meta["stemmer"]["PyStemmer"]


def test_save_replaces_an_existing_index_and_leaves_no_staging(index, tmp_path: Path):
    target = tmp_path / "keyword"
    other = KeywordIndex()
    other.build(["x"], ["espresso machine descaling"])
    other.save(target)
    index.save(target)
    assert KeywordIndex.load(target).search("espresso", k=5) == []
    assert [p.name for p in tmp_path.iterdir()] == ["keyword"]


def test_empty_index(tmp_path: Path):
    empty = KeywordIndex()
    empty.build([], [])
    assert empty.search("anything", k=5) == [] and len(empty) == 0
    empty.save(tmp_path / "k")
    assert KeywordIndex.load(tmp_path / "k").search("anything", k=5) == []


def test_load_refuses_missing_or_foreign_indexes(index, tmp_path: Path):
    with pytest.raises(ConfigError, match="no keyword index"):
        KeywordIndex.load(tmp_path / "missing")
    index.save(tmp_path / "k")
    meta_path = tmp_path / "k" / "meshrag-keyword.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": "0"}))
    with pytest.raises(ConfigError, match="rebuild it"):
        KeywordIndex.load(tmp_path / "k")


def test_load_warns_when_another_pystemmer_built_the_index(index, tmp_path: Path, caplog):
    index.save(tmp_path / "k")
    meta_path = tmp_path / "k" / "meshrag-keyword.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "stemmer": {"algorithm": "snowball-english", "PyStemmer": "0.1"}}))
    with caplog.at_level("WARNING", logger="indexing.keyword"):
        loaded = KeywordIndex.load(tmp_path / "k")
    assert "PyStemmer 0.1" in caplog.text
    assert loaded.search("refund", k=1) == index.search("refund", k=1)


def test_build_validates_input_and_search_needs_an_index():
    with pytest.raises(ValueError, match="unique"):
        KeywordIndex().build(["a", "a"], ["x", "y"])
    with pytest.raises(ValueError, match="2 ids but 1 texts"):
        KeywordIndex().build(["a", "b"], ["x"])
    with pytest.raises(RuntimeError, match="build"):
        KeywordIndex().search("x", k=1)
