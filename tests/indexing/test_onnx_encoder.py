"""The ONNX query encoder of MiniLM: equal to torch, exported once per cache directory, re-exported when
the cached file is damaged, and torch when no export can be used. All with the real model."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from indexing.embedder import MiniLMEmbedder, bundled_minilm_path, create_embedder
from indexing.onnx_encoder import (
    EXPORT_VERSION,
    MIN_COSINE,
    PROBES,
    OnnxQueryEncoder,
    min_probe_cosine,
)
from knowledge.errors import ConfigError

pytestmark = pytest.mark.slow

UNSEEN = (
    "Vitamin D deficiency is associated with an increased risk of multiple sclerosis.",
    "refund for a cancelled order?",
    "Wie kündige ich mein Abonnement zum Monatsende?",
    "k",
    "Statins reduce LDL cholesterol; do they also lower CRP in patients without heart disease? " * 6,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="session")
def onnx_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def exported(onnx_cache_dir: Path) -> MiniLMEmbedder:
    """A MiniLM that exported its ONNX query encoder into `onnx_cache_dir` (once per session)."""
    embedder = create_embedder("minilm", cache_dir=onnx_cache_dir)
    embedder.warm_up()
    return embedder


def test_onnx_queries_equal_torch_on_texts_outside_the_probes(minilm):
    assert minilm.query_runtime == "onnx", minilm.query_info().fallback_reason
    assert minilm.onnx_min_cosine >= MIN_COSINE
    # Given no cache_dir, the export lives in a per-user directory only its owner can write.
    shared = Path(minilm.query_info().onnx_path).parent.parent
    assert shared.parent == Path(tempfile.gettempdir()) and shared.name.startswith("meshrag-cache-")
    assert shared.stat().st_uid == os.getuid() and not shared.stat().st_mode & 0o022
    torch_vectors = minilm.embed_documents(UNSEEN)  # documents always go through torch
    for text, reference in zip(UNSEEN, torch_vectors):
        assert text not in PROBES
        vector = minilm.embed_query(text)
        assert vector.dtype == np.float32 and vector.shape == (384,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        assert cosine(vector, reference) >= MIN_COSINE, text


def test_export_is_named_by_weights_and_versions_and_reused(exported, onnx_cache_dir: Path):
    import onnx
    import onnxruntime

    info = exported.query_info()
    assert info.runtime == "onnx" and exported.onnx_exported is True
    path = Path(info.onnx_path)
    assert path.parent == onnx_cache_dir / "onnx"
    digest = exported.model_id.rsplit("@", 1)[1]
    for part in (digest, EXPORT_VERSION, f"onnx{onnx.__version__}", f"ort{onnxruntime.__version__}"):
        assert part in path.name
    manifest = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
    assert manifest["sha256"] == sha256(path) and manifest["weights_digest"] == digest
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]  # no temporary left behind
    stamp = path.stat().st_mtime_ns

    again = MiniLMEmbedder(cache_dir=onnx_cache_dir)
    again.warm_up()
    assert again.query_runtime == "onnx" and again.onnx_exported is False  # loaded, not exported
    assert path.stat().st_mtime_ns == stamp
    assert again.onnx_min_cosine >= MIN_COSINE
    assert again.embed_query(UNSEEN[0]).tobytes() == exported.embed_query(UNSEEN[0]).tobytes()


def test_a_truncated_export_is_detected_and_replaced(exported, tmp_path: Path, caplog):
    source = Path(exported.query_info().onnx_path)
    (tmp_path / "onnx").mkdir()
    for name in (source.name, source.name + ".json"):
        shutil.copyfile(source.with_name(name), tmp_path / "onnx" / name)
    damaged = tmp_path / "onnx" / source.name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 3])

    embedder = MiniLMEmbedder(cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="indexing.embedder"):
        embedder.warm_up()
    assert any("not reused" in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)
    assert embedder.query_runtime == "onnx" and embedder.onnx_exported is True
    manifest = json.loads(damaged.with_name(damaged.name + ".json").read_text(encoding="utf-8"))
    assert manifest["sha256"] == sha256(damaged)
    assert cosine(embedder.embed_query(UNSEEN[1]), exported.embed_query(UNSEEN[1])) >= MIN_COSINE


def test_without_a_usable_export_queries_fall_back_to_torch_with_a_warning(tmp_path: Path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    embedder = MiniLMEmbedder(cache_dir=blocker / "cache")
    with caplog.at_level(logging.WARNING, logger="indexing.embedder"):
        embedder.warm_up()
    assert embedder.query_runtime == "torch"
    assert "cannot write" in embedder.query_info().fallback_reason
    assert any("torch, not ONNX" in r.getMessage() for r in caplog.records)
    vector = embedder.embed_query(UNSEEN[0])
    assert np.allclose(vector, embedder.embed_documents([UNSEEN[0]])[0], atol=1e-6)

    required = MiniLMEmbedder(cache_dir=blocker / "cache", query_runtime="onnx")
    with pytest.raises(ConfigError, match="query_runtime='onnx'.*cannot write"):
        required.warm_up()


def _constant_model(path: Path) -> None:
    """A valid ONNX graph with the encoder's inputs and output that ignores the text: one fixed vector."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vector = np.zeros((1, 384), dtype=np.float32)
    vector[0, 0] = 1.0
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "dims"], ["target"], axis=0),
        helper.make_node("Expand", ["vector", "target"], ["embedding"]),
    ]
    constants = [numpy_helper.from_array(np.array(v, dtype=np.int64), name)
                 for name, v in (("zero", [0]), ("one", [1]), ("dims", [384]))]
    graph = helper.make_graph(
        nodes, "constant",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 384])],
        initializer=[numpy_helper.from_array(vector, "vector"), *constants])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_the_probe_check_rejects_a_graph_that_is_not_the_model(exported, tmp_path: Path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundled_minilm_path() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    reference = exported.embed_documents(PROBES)  # torch
    real = OnnxQueryEncoder(Path(exported.query_info().onnx_path), tokenizer)
    assert min_probe_cosine(real, reference) >= MIN_COSINE
    _constant_model(tmp_path / "constant.onnx")
    impostor = OnnxQueryEncoder(tmp_path / "constant.onnx", tokenizer)
    assert impostor.encode("anything").shape == (384,)
    assert min_probe_cosine(impostor, reference) < 0.9


def test_a_lone_query_gets_two_threads_and_concurrent_ones_one_each_with_equal_vectors(exported):
    encoder = OnnxQueryEncoder(Path(exported.query_info().onnx_path), exported._truncating, threads=2)
    assert encoder.sessions == ("single", "lone")
    for text in (*UNSEEN, *PROBES[:6]):
        lone, single = encoder.encode(text, "lone"), encoder.encode(text, "single")
        np.testing.assert_array_equal(lone, single)  # identical, not just close
    before = encoder.lone_queries
    encoder.encode(UNSEEN[0])
    assert encoder.lone_queries == before + 1  # nothing else was running

    # Eight threads at once: most find another query running and take the single-thread session.
    start = threading.Barrier(8)
    results: list[np.ndarray] = []

    def work() -> None:
        start.wait()
        for _ in range(5):
            results.append(encoder.encode(UNSEEN[1]))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 40 and all(np.array_equal(r, results[0]) for r in results)
    assert encoder.lone_queries - before - 1 < 40

    assert OnnxQueryEncoder(encoder.path, exported._truncating, threads=1).sessions == ("single",)
    assert min_probe_cosine(encoder, exported.embed_documents(PROBES)) >= MIN_COSINE
