"""Fixtures for the query side: small meshes indexed by the real pipeline (hash embedder, FAISS) in a
temporary directory, and the bundled sample mesh indexed once per session with the real MiniLM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from indexing.embedder import create_embedder
from indexing.pipeline import IndexPipeline, IndexReport
from indexing.settings import IndexSettings
from indexing.types import Embedder
from knowledge.settings import SAMPLE_MESH
from retrieval.answer.model import Thresholds
from retrieval.searcher import MeshSearcher
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings

TEMPLATE = SAMPLE_MESH / "platform" / "mesh-handbook"

PUBLIC = "platform.handbook"
INTERNAL = "ops.runbooks"
RESTRICTED = "people.pay"

# Each product has words no other product uses, so a leak shows up as a hit.
SMALL_MESH: dict[str, dict[str, Any]] = {
    PUBLIC: {
        "classification": "public", "roles": ["everyone"],
        "docs": {
            "publishing.md": "# Publishing a product\n\nEvery knowledge product needs an owner before it is "
                             "published. The owner answers reader questions within two business days.\n\n"
                             "## Freshness\n\nSources are reviewed at least every ninety days.\n",
            "glossary.md": "# Glossary\n\nA release is an immutable set of embedding versions served together. "
                           "The current alias names the release served by default.\n",
        },
    },
    INTERNAL: {
        "classification": "internal", "roles": ["employee", "analyst"],
        "docs": {
            "carrier-pickup.md": "# Missed carrier pickup\n\nWhen the carrier misses the 17:00 pickup at the "
                                 "Reno warehouse, call the depot and rebook the pallet for the morning linehaul.\n",
            "label-printer.md": "# Label printer outage\n\nIf the conveyor label printer jams, switch the line to "
                                "the backup printer and reprint the wave.\n",
        },
    },
    RESTRICTED: {
        "classification": "restricted", "roles": ["people-partner"],
        "docs": {
            "pay-bands.md": "# Pay bands\n\nThe quokka band midpoint for an L4 engineer is 151,000 dollars. "
                            "Bands stretch fifteen percent either side of the quokka midpoint.\n",
            "bonus.md": "# Bonus plan\n\nThe zebrafish bonus pool is funded at ninety percent of target. "
                        "Payout is salary times target times the zebrafish multiplier.\n",
        },
    },
}


def write_product(root: Path, pid: str, classification: str, roles: list[str], docs: dict[str, str]) -> Path:
    """A valid product folder built from the sample handbook's YAML with the given access terms."""
    domain, name = pid.split(".")
    folder = root / domain / name
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    descriptor = yaml.safe_load((TEMPLATE / "product.yaml").read_text())
    contract = yaml.safe_load((TEMPLATE / "contract.yaml").read_text())
    for d in (descriptor, contract):
        d["id"], d["domain"], d["name"] = pid, domain, name.replace("-", " ").title()
    descriptor["inputPorts"][0]["contractId"] = pid
    descriptor["outputPorts"][0]["contractId"] = pid
    contract["dataProduct"] = name
    contract["roles"] = [{"role": r, "access": "read"} for r in roles]
    contract["customProperties"] = [{"property": "classification", "value": classification},
                                    {"property": "piiPolicy", "value": "allow"}]
    (folder / "product.yaml").write_text(yaml.safe_dump(descriptor, sort_keys=False))
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    for rel, text in docs.items():
        (folder / "docs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "docs" / rel).write_text(text)
    return folder


@dataclass
class SmallMesh:
    """A three-product mesh (public, internal, restricted) and its data directory."""

    root: Path
    data_dir: Path

    def index(self) -> IndexReport:
        settings = IndexSettings(data_dir=self.data_dir, mesh_roots=[self.root], embedder="hash")
        return IndexPipeline(settings).run()

    def settings(self, **overrides: Any) -> RetrievalSettings:
        return RetrievalSettings(data_dir=self.data_dir, mesh_roots=[self.root], embedder="hash", **overrides)

    def searcher(self, **overrides: Any) -> MeshSearcher:
        searcher = MeshSearcher(ServingContext(self.settings(**overrides)))
        searcher.warm_up()
        return searcher

    def doc(self, pid: str, rel: str) -> Path:
        domain, name = pid.split(".")
        return self.root / domain / name / "docs" / rel


@pytest.fixture
def small_mesh(tmp_path: Path) -> SmallMesh:
    """The small mesh, written and indexed (one release, published as current)."""
    root = tmp_path / "mesh"
    for pid, spec in SMALL_MESH.items():
        write_product(root, pid, spec["classification"], spec["roles"], spec["docs"])
    mesh = SmallMesh(root=root, data_dir=tmp_path / "data")
    report = mesh.index()
    assert report.published and not report.blocked, report.as_dict()
    return mesh


@pytest.fixture
def searcher_of(small_mesh: SmallMesh) -> Callable[..., MeshSearcher]:
    return small_mesh.searcher


# `minilm` and `sample_index` (one MiniLM load and one sample-mesh index per session) live in tests/conftest.py.


@pytest.fixture(scope="session")
def sample_settings(sample_index: Path) -> RetrievalSettings:
    return RetrievalSettings(data_dir=sample_index, mesh_roots=[SAMPLE_MESH])


@pytest.fixture(scope="session")
def sample_searcher(sample_settings: RetrievalSettings, minilm: Embedder) -> MeshSearcher:
    searcher = MeshSearcher(ServingContext(sample_settings, embedder=minilm))
    searcher.warm_up()
    return searcher


# ======================================================================================================
# Answer stage (retrieval/answer) fixtures — appended block; keep edits to other fixtures above it.
# Real chunks are cut from the sample mesh's own documents by the real Chunker; hits are built from
# them as the searcher would return them. MiniLM-based scoring reuses the session `minilm` above.
# ======================================================================================================


@pytest.fixture(scope="session")
def answer_scorer(minilm: Embedder) -> Any:
    """SupportScorer over the real MiniLM (session-wide, so its vector cache is shared). `slow` only."""
    from retrieval.answer.support import SupportScorer

    scorer = SupportScorer(minilm)
    scorer.warm_up()
    return scorer


# Thresholds that decide the outcome whatever the answer model scores (p and cosines lie in [0, 1] here).
ALWAYS_ANSWER = Thresholds(answer=0.0, relevant=0.0, sentence=0.0)
NEVER_ANSWER = Thresholds(answer=1.01, relevant=1.01, sentence=1.01)  # abstains: not even "possibly relevant"
# Answers when the model is asked to, but a draft that fails (nothing supported, "NOT FOUND") abstains
# instead of falling back to "possibly relevant".
ANSWER_OR_ABSTAIN = Thresholds(answer=0.0, relevant=1.01, sentence=0.0)


@pytest.fixture(scope="session")
def answer_model() -> Any:
    """The shipped answer model artefact (retrieval/answer/models/answer-model.json), hash-checked on load."""
    from retrieval.answer.model import load_answer_model

    return load_answer_model()


@pytest.fixture
def hash_answer_scorer() -> Any:
    """SupportScorer over the deterministic hash embedder, created through the real factory."""
    from retrieval.answer.support import SupportScorer

    scorer = SupportScorer(create_embedder("hash"))
    scorer.warm_up()
    return scorer


@pytest.fixture(scope="session")
def sample_chunks() -> Callable[[str, str], list[Any]]:
    """`sample_chunks(product_id, document)` → the real chunks of one sample-mesh document."""
    from indexing.chunking import Chunker, ChunkerConfig
    from indexing.sources import load_document

    embedder = create_embedder("hash")
    chunker = Chunker(ChunkerConfig(), embedder.count_tokens, 256)
    embedder.warm_up()
    chunker.warm_up()

    def chunks(product_id: str, document: str) -> list[Any]:
        domain, name = product_id.split(".")
        path = SAMPLE_MESH / domain / name / "docs" / document
        return list(chunker.chunk(load_document(product_id, path, document)).chunks)

    return chunks


@pytest.fixture
def make_hits() -> Callable[..., list[Any]]:
    """`make_hits(chunks)` → RetrievedChunks in the given order (rank 1 first), as the searcher returns them."""
    from retrieval.types import RetrievedChunk

    def hits(chunks: list[Any], release_id: str = "rel-answer-test") -> list[Any]:
        return [RetrievedChunk(chunk=c, release_id=release_id, product_version="1.0.0",
                               chunk_version=f"cv-{c.product_id}", embedding_version=f"ev-{c.product_id}",
                               domain=c.product_id.split(".")[0], classification="internal",
                               score=1.0 / (60 + rank), rank=rank, dense_score=0.5, dense_rank=rank)
                for rank, c in enumerate(chunks, start=1)]

    return hits
# ============================================ end of answer stage block ================================
