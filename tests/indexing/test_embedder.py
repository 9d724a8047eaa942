from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from indexing.embedder import (
    HashEmbedder,
    MiniLMEmbedder,
    QueryVectorCache,
    create_embedder,
    register_embedder,
    registered_embedders,
)
from indexing.embedding_cache import EmbeddingCache, embed_with_cache, text_hash
from indexing.types import Chunk, Embedder
from knowledge.errors import ConfigError

RELATED = ("How do I pause my coffee subscription?", "Pausing a subscription for up to 60 days")
UNRELATED = "Forklift battery charging schedule at the Reno warehouse"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------------------------- registry


def test_registry_creates_embedders_by_name():
    assert {"minilm", "hash"} <= set(registered_embedders())
    hashed = create_embedder("hash", dim=64)
    assert isinstance(hashed, HashEmbedder) and isinstance(hashed, Embedder)
    assert hashed.dim == 64 and hashed.model_id == "hash-64-v1"
    assert isinstance(create_embedder(), MiniLMEmbedder)  # the default; constructing it loads nothing


def test_registry_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown embedder 'nope'.*hash"):
        create_embedder("nope")
    with pytest.raises(ConfigError, match="bad options for embedder 'hash'"):
        create_embedder("hash", colour="blue")
    with pytest.raises(ConfigError, match="query_runtime='gpu'"):
        create_embedder("minilm", query_runtime="gpu")
    with pytest.raises(ConfigError, match="query_cache_size=-1"):
        create_embedder("minilm", query_cache_size=-1)
    with pytest.raises(ConfigError, match="already registered"):
        register_embedder("hash", lambda **_: HashEmbedder())


def test_a_test_embedder_plugs_in_through_the_same_factory():
    register_embedder("hash-small", lambda **options: HashEmbedder(dim=8, **options), replace=True)
    made = create_embedder("hash-small")
    made.warm_up()
    assert made.embed_documents(["a b"]).shape == (1, 8)


def test_importing_and_constructing_loads_no_model(tmp_path: Path):
    code = (
        "import sys\n"
        "from indexing.embedder import create_embedder\n"
        "import indexing.chunking, indexing.pii, indexing.keyword, indexing.embedding_cache, indexing.sources\n"
        "e = create_embedder('minilm')\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'presidio_analyzer', 'bm25s', 'tiktoken',\n"
        "                     'onnx', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2], timeout=120)


# ---------------------------------------------------------------------------------------- hash


def test_hash_embedder_is_deterministic_normalised_and_similarity_aware(hash_embedder):
    vectors = hash_embedder.embed_documents([*RELATED, UNRELATED, ""])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    again = HashEmbedder()
    again.warm_up()
    assert again.embed_documents([RELATED[0]]).tobytes() == vectors[0].tobytes()
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert np.array_equal(hash_embedder.embed_query(RELATED[0]), vectors[0])
    assert hash_embedder.count_tokens("Net revenue, by month!") == 4 + 2


def test_hash_embedder_requires_warm_up():
    with pytest.raises(RuntimeError, match="warm_up"):
        HashEmbedder().embed_documents(["x"])


# ---------------------------------------------------------------------------------------- cache


def test_cache_embeds_only_misses_and_reuses_exact_bytes(hash_embedder, tmp_path: Path):
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    cache.warm_up()
    texts = ["alpha beta", "gamma delta", "alpha beta", "epsilon"]
    first, embedded, reused = embed_with_cache(hash_embedder, cache, texts)
    assert (embedded, reused) == (3, 1)  # the duplicate is embedded once
    assert np.array_equal(first, hash_embedder.embed_documents(texts))
    second, embedded, reused = embed_with_cache(hash_embedder, cache, texts)
    assert (embedded, reused) == (0, 4)
    assert second.tobytes() == first.tobytes()
    _, embedded, reused = embed_with_cache(hash_embedder, cache, ["epsilon", "zeta"])
    assert (embedded, reused) == (1, 1)
    assert cache.count(hash_embedder.model_id) == 4
    cache.close()

    reopened = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    reopened.warm_up()
    third, embedded, _ = embed_with_cache(hash_embedder, reopened, texts)
    assert embedded == 0 and third.tobytes() == first.tobytes()
    mode = sqlite3.connect(tmp_path / "cache" / "embeddings.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_cache_keys_include_the_model(tmp_path: Path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    cache.warm_up()
    small, big = HashEmbedder(dim=16), HashEmbedder(dim=32)
    small.warm_up()
    big.warm_up()
    embed_with_cache(small, cache, ["same text"])
    vectors, embedded, _ = embed_with_cache(big, cache, ["same text"])
    assert embedded == 1 and vectors.shape == (1, 32)
    assert cache.get_many(small.model_id, [text_hash("same text")])[text_hash("same text")].shape == (16,)


def test_cache_first_write_wins_and_empty_calls(tmp_path: Path, hash_embedder):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    with cache:
        assert cache.put_many("m", {"k": np.ones(3, dtype=np.float32)}) == 1
        assert cache.put_many("m", {"k": np.zeros(3, dtype=np.float32)}) == 0
        assert cache.get_many("m", ["k", "missing"])["k"].tolist() == [1.0, 1.0, 1.0]
        vectors, embedded, reused = embed_with_cache(hash_embedder, cache, [])
        assert vectors.shape == (0, 384) and (embedded, reused) == (0, 0)
    with pytest.raises(RuntimeError, match="warm_up"):
        cache.get_many("m", ["k"])


def test_cache_key_is_the_chunk_text_hash():
    chunk = Chunk("id", "p", "d.md", "rev", "text", 0, 4, ("H",), 1, 3, context="T > H")
    assert chunk.text_hash == text_hash("T > H\ntext")


# ---------------------------------------------------------------------------------------- MiniLM


@pytest.mark.slow
def test_minilm_embeds_unit_vectors_of_384_dims(minilm):
    assert minilm.dim == 384 and minilm.max_seq_length == 256 and minilm.normalize
    assert minilm.model_id.startswith("sentence-transformers/all-MiniLM-L6-v2@")
    assert len(minilm.model_id.rsplit("@", 1)[1]) == 16
    vectors = minilm.embed_documents([*RELATED, UNRELATED])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert np.allclose(minilm.embed_query(RELATED[0]), vectors[0], atol=1e-5)


@pytest.mark.slow
def test_minilm_length_bucketing_keeps_input_order(minilm):
    texts = ["short", "a somewhat longer sentence about coffee subscriptions", "mid length text", "x " * 100]
    together = minilm.embed_documents(texts)
    alone = np.stack([minilm.embed_documents([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert minilm.embed_documents([]).shape == (0, 384)


@pytest.mark.slow
def test_minilm_counts_word_pieces_with_special_tokens(minilm):
    assert minilm.count_tokens("hello") == 3  # [CLS] hello [SEP]
    assert minilm.count_tokens("word " * 400) == 402  # counted in full, not truncated


@pytest.mark.slow
def test_minilm_with_cache_embeds_nothing_the_second_time(minilm, tmp_path: Path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    cache.warm_up()
    texts = [*RELATED, UNRELATED]
    first, embedded, _ = embed_with_cache(minilm, cache, texts)
    assert embedded == 3
    second, embedded, reused = embed_with_cache(minilm, cache, texts)
    assert (embedded, reused) == (0, 3)
    assert second.tobytes() == first.tobytes()


@pytest.fixture(scope="module")
def torch_minilm() -> MiniLMEmbedder:
    """MiniLM that encodes queries with torch, in batches of 2 (so a few texts make several batches)."""
    embedder = create_embedder("minilm", batch_size=2, query_runtime="torch")
    embedder.warm_up()
    return embedder


@pytest.mark.slow
def test_minilm_torch_query_runtime(torch_minilm):
    info = torch_minilm.query_info()
    assert info.runtime == "torch" and info.requested == "torch" and info.onnx_path is None
    assert info.fallback_reason == ""  # torch was asked for: nothing fell back
    vector = torch_minilm.embed_query(RELATED[0])
    assert vector.dtype == np.float32 and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert np.allclose(vector, torch_minilm.embed_documents([RELATED[0]])[0], atol=1e-6)


@pytest.mark.slow
def test_minilm_batches_by_word_pieces_and_keeps_input_order(torch_minilm):
    # Character length and word-piece count disagree here: the long word is many pieces, "a b c" few.
    texts = ["pneumonoultramicroscopicsilicovolcanoconiosis", "a b c d e f g h", "hello", "x " * 300,
             "the cat sat", "Zürich café"]
    pieces = [torch_minilm.count_tokens(t) for t in texts]
    assert pieces[0] > pieces[2] and len(texts[0]) > len(texts[1])
    together = torch_minilm.embed_documents(texts)  # three batches of two
    alone = np.stack([torch_minilm.embed_documents([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


@pytest.mark.slow
def test_minilm_query_cache_returns_identical_vectors(minilm):
    text = "How long is the warranty on a refurbished espresso machine?"
    before = minilm.query_info()
    first = minilm.embed_query(text)
    first_copy = first.copy()
    first[:] = 0.0  # a caller scribbling on its vector does not reach the cache
    second = minilm.embed_query(text)
    after = minilm.query_info()
    assert second.tobytes() == first_copy.tobytes()
    assert (after.cache_misses - before.cache_misses, after.cache_hits - before.cache_hits) == (1, 1)
    assert after.cache_maxsize == 4096 and after.cache_size >= 1


def test_query_cache_is_a_bounded_lru():
    cache = QueryVectorCache(2)
    cache.put("a", np.array([1.0], dtype=np.float32))
    cache.put("b", np.array([2.0], dtype=np.float32))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", np.array([3.0], dtype=np.float32))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2 and (cache.hits, cache.misses) == (3, 1)
    off = QueryVectorCache(0)
    off.put("a", np.array([1.0], dtype=np.float32))
    assert off.get("a") is None and len(off) == 0


@pytest.mark.slow
def test_minilm_queries_tokens_and_documents_from_many_threads(minilm, torch_minilm):
    texts = [f"question {i}: does drug {i} interact with grapefruit juice?" for i in range(24)]
    start = threading.Barrier(6)

    def work(worker: int) -> dict[int, np.ndarray]:
        start.wait()
        done = {}
        for i in range(worker, len(texts), 6):
            done[i] = minilm.embed_query(texts[i])
            assert minilm.count_tokens(texts[i]) > 10
            if i % 5 == 0:
                minilm.embed_documents(texts[i : i + 3])
        return done

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = {i: v for part in pool.map(work, range(6)) for i, v in part.items()}  # re-raises errors
    assert sorted(results) == list(range(len(texts)))
    reference = torch_minilm.embed_documents(texts)
    for i, text in enumerate(texts):
        assert cosine(results[i], reference[i]) >= 0.9999, text
