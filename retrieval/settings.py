"""Settings of the query side (environment prefix MESHRAG_): the index settings plus retrieval knobs.

Defaults were measured on the sample mesh's 204 answerable golden questions with
`python -m eval_sets.retrieval_check --data-dir DIR` (document-level recall@5 / nDCG@10, MiniLM, FAISS):

    dense only 0.904 / 0.831     keyword only 0.890 / 0.766     plain RRF of both 0.924 / 0.836
    + question words stripped from the keyword query           0.929 / 0.857
    + same-document decay 0.7 (the defaults below)              0.946 / 0.868
    + convex fusion (below)                                     0.953 / 0.878
    + English Snowball stems in the keyword index (v2)          0.951 / 0.877
      (and on 72 paraphrased questions, style=paraphrase: 0.917 / 0.741 → 0.917 / 0.749)

- `fusion` = "convex": z-scores of each list's candidates, shifted to start at 0, summed with the
  weights (retrieval/fusion.py). Measured against RRF k=60 with everything else at the defaults:
  golden set recall@1 0.686 → 0.735, recall@5 0.956 → 0.953, nDCG@10 0.864 → 0.878 (`meshrag eval`:
  abstention accuracy 0.875 both, false abstention 0.078 → 0.059); SciFact test nDCG@10 0.6915 →
  0.7126 over the same top-50 lists (`python benchmarks/scifact.py`, row hybrid-served), 0.7146 →
  0.7228 since the keyword index stems (v2). "rrf" keeps the rank fusion.
- `candidates` = 50 per list; 20–200 changed nDCG@10 by less than ±0.005.
- `rrf_k` = 60 (Cormack, Clarke & Büttcher, SIGIR 2009); 10–100 moved nDCG@10 within ±0.005.
- `dense_weight` = `keyword_weight` = 1.0; weight ratios from 0.5 to 2 moved nDCG@10 within ±0.01, so
  the unweighted RRF stays. With convex fusion and the stemmed keyword index, SciFact's train queries
  prefer a dense share of 0.4 (0.7336 vs 0.7288; 0.7261 vs 0.7228 on test), but keyword_weight 1.5
  lowers the golden nDCG@10 0.877 → 0.855, so equal weights stay.
- `same_document_decay` = 0.7: a document's n-th chunk (n = 0, 1, …) in fused order has its score
  multiplied by decay**n, so other documents' first chunks can move up (1.0 turns it off; 0.5 measured
  0.946 / 0.872, recall@10 0.980, but leaves fewer neighbouring chunks of one document for an answerer).
- `strip_question_words` = True: interrogatives, auxiliaries and pronouns are dropped from the BM25
  query (not from the dense one); see `QUESTION_WORDS` in knowledge/catalog_search.py.
- `top_k` = 8: chunks returned when a caller does not say (the CLI's `-k` default).
- `torch_threads` = 1: torch intra-op threads (and FAISS's OpenMP threads) while serving. A query is one short text; extra threads
  only synchronise, and under concurrent load they spin against each other (MiniLM query embedding on
  a busy 2-core machine: 16 ms with 1 thread, 390–700 ms with 2). None keeps torch's default.
- `query_threads` = 2: onnxruntime threads for a question encoded while no other is; questions that
  arrive while others are being encoded get one thread each (indexing/onnx_encoder.py). A lone
  question on an idle 2-core machine: 4.6 ms with 2 threads, 6.3 ms with 1; the vectors are identical.
- `query_runtime` = "auto" (MiniLM only): questions are encoded by the model exported to ONNX (once,
  into `<data dir>/cache/onnx/`, verified against torch on 20 probe texts: cosine >= 0.9999 or it is not
  used, with a logged warning); "torch" never exports, "onnx" refuses to start without it. Measured with
  `python benchmarks/query_encoder.py`: p50 0.43-0.44x torch's time per query, SciFact nDCG@10 0.6451
  with either (indexing/onnx_encoder.py).
- `precompute_answer_vectors` = True: a served process embeds, in the background after start-up, every
  passage the answerer may compare a question with (sentences and chunks of the current release) into
  the persistent embedding cache, so answering embeds only the question (sample mesh: 6,921 passages,
  once per release; later starts find them all cached). Until it finishes, answers embed what they need.
- `reranker_model` = None: no cross-encoder ships offline; set it to a local sentence-transformers
  CrossEncoder folder to rerank the best `rerank_candidates` fused chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from indexing.settings import IndexSettings


class RetrievalSettings(IndexSettings):
    """Where the indexes are (inherited) and how a search ranks. Every field can be set as MESHRAG_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="MESHRAG_", extra="ignore")

    top_k: int = Field(8, ge=1, le=200)
    candidates: int = Field(50, ge=1, le=2000)
    fusion: Literal["rrf", "convex"] = "convex"
    rrf_k: int = Field(60, ge=0, le=10_000)
    same_document_decay: float = Field(0.7, gt=0.0, le=1.0)
    strip_question_words: bool = True
    dense_weight: float = Field(1.0, ge=0.0, le=100.0)
    keyword_weight: float = Field(1.0, ge=0.0, le=100.0)
    reranker_model: str | None = None
    rerank_candidates: int = Field(30, ge=1, le=1000)
    torch_threads: int | None = Field(1, ge=1, le=256)
    query_threads: int = Field(2, ge=1, le=256)
    query_runtime: Literal["auto", "onnx", "torch"] = "auto"
    precompute_answer_vectors: bool = True

    # The answer stage. "extractive" is offline; "llm" calls an OpenAI-compatible endpoint through LangChain.
    answerer: Literal["extractive", "llm"] = "extractive"
    # The fitted answer model (JSON artefact, hash-checked on load); None: the one shipped in
    # retrieval/answer/models/ (`python -m eval_sets.fit_answer_model` rebuilds it).
    answer_model: Path | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    # Where provenance records go: None = PostgreSQL when store=pgvector, else SQLite under the data dir.
    provenance_backend: Literal["sqlite", "postgres"] | None = None

    # Request limits, the same for every entry point (REST, SSE, chat, MCP, CLI): retrieval/requests.py.
    max_question_chars: int = Field(2000, ge=1, le=100_000)
    max_products: int = Field(20, ge=1, le=1000)
    max_k: int = Field(50, ge=1, le=200)
    # How answers to callers without a key are recorded in provenance: "full" like every answer; "refs"
    # keeps release, chunks, scores and outcome but only sha256 digests of question and answer and no
    # cited text; "off" records nothing (the answer still has a request id, which names no record).
    record_anonymous: Literal["full", "refs", "off"] = "full"
