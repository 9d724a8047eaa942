"""The plain LangChain baseline that benchmarks/serve.py loads beside meshrag, served by uvicorn.

    python benchmarks/langchain_app.py --data-dir DIR --port P [--role analyst] [--torch-threads N]

What it serves:
- Documents: the chunks of the data dir's *current release* (read with `VersionStore.read_chunks`), of
  the products a principal with `--role` may read (`retrieval.access.readable_entries`), as one
  LangChain `Document` per chunk whose `page_content` is the chunk's `embedding_text` (breadcrumb +
  text): the very texts meshrag embeds, so both servers search the same passages with the same model.
- Retrieval: `langchain_huggingface.HuggingFaceEmbeddings` over the bundled MiniLM
  (`indexing.embedder.bundled_minilm_path()`, `normalize_embeddings=True`, library defaults otherwise)
  and `langchain_community` `FAISS.from_documents` (its default flat L2 index; on unit vectors the same
  order as cosine), used through `vectorstore.as_retriever(search_kwargs={"k": 8})`. Dense only: no
  keyword list, fusion, access filter or provenance.
- POST /search {"query"}: the retriever's top 8 with their texts.
- POST /ask {"question"}: a LangChain retrieval chain with no LLM: retriever → "stuff" the documents
  into the usual RAG prompt (PromptTemplate) → return that prompt with its sources. No answer is
  generated, no citation checked, nothing recorded: it is a floor for retrieval + prompt assembly, not
  an equivalent of meshrag's extractive answerer (no offline LLM exists here to make one).
- GET /readyz: ready, with the runtime (torch threads, library versions, index size); GET /healthz:
  `{"status": "ok"}` from an `async def` route, like meshrag's, to measure the HTTP floor.

The FAISS index is built once and saved under `<data dir>/benchmarks/langchain-faiss/<content id>/`
(the id hashes the texts, the model folder and the library versions), so later runs load it.
Both endpoints are plain `def` routes: FastAPI runs them in its thread pool, as meshrag's routes run
retrieval with `run_in_threadpool`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and benchmarks/indexing.py would shadow
# the `indexing` package: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

K = 8
PROMPT = """Answer the question using only the context below. Cite the sources you use.

Context:
{context}

Question: {question}
Answer:"""
LIBRARIES = ("langchain-core", "langchain-community", "langchain-huggingface", "sentence-transformers",
             "torch", "faiss-cpu")


class SearchBody(BaseModel):
    query: str = Field(min_length=1)


class AskBody(BaseModel):
    question: str = Field(min_length=1)


def release_documents(data_dir: Path, roles: frozenset[str]) -> tuple[str, list[Any]]:
    """(release id, one Document per chunk of the current release a principal with `roles` may read)."""
    from langchain_core.documents import Document

    from indexing.releases import release_registry
    from indexing.versions import version_store
    from knowledge.catalog import Catalog
    from knowledge.model import Principal
    from retrieval.access import readable_entries
    from retrieval.settings import RetrievalSettings

    settings = RetrievalSettings(data_dir=data_dir)
    release = release_registry(settings).get("current")
    catalog = Catalog.load(settings.mesh_roots)
    entries = readable_entries(release, catalog, Principal(id="langchain-baseline", roles=roles))
    versions = version_store(settings)
    docs = []
    for pid, entry in entries.items():
        for chunk in versions.read_chunks(entry.chunk_version):
            docs.append(Document(page_content=chunk.embedding_text, id=chunk.chunk_id,
                                 metadata={"chunk_id": chunk.chunk_id, "product_id": pid,
                                           "document": chunk.document}))
    return release.id, docs


def load_or_build(docs: list[Any], embeddings: Any, model_dir: Path, cache_root: Path) -> tuple[Any, str]:
    """The FAISS store of `docs`, loaded from `cache_root` when an identical one was saved, else built
    (embedding every document) and saved by writing a temporary folder and renaming it."""
    from langchain_community.vectorstores import FAISS

    key = {"texts": [d.page_content for d in docs], "ids": [d.id for d in docs], "model": str(model_dir),
           "libraries": {name: version(name) for name in LIBRARIES}, "normalize": True}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    folder = cache_root / f"lcfaiss-{digest}"
    if (folder / "index.faiss").is_file():
        # Our own pickle, written by this script under the benchmark's data dir.
        return FAISS.load_local(str(folder), embeddings, allow_dangerous_deserialization=True), "loaded"
    store = FAISS.from_documents(docs, embeddings)
    cache_root.mkdir(parents=True, exist_ok=True)
    stage = cache_root / f".tmp-{uuid.uuid4().hex}"
    store.save_local(str(stage))
    try:
        os.replace(stage, folder)
    except OSError:  # another run saved the same index first
        shutil.rmtree(stage, ignore_errors=True)
    return store, "built"


def create_app(retriever: Any, runtime: dict[str, Any]) -> Any:
    from fastapi import FastAPI
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
    def stuff(docs: list[Any]) -> str:
        return "\n\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(docs, start=1))

    prompt = PromptTemplate.from_template(PROMPT)
    # The usual LCEL RAG chain up to the point where an LLM would be called.
    chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()) | RunnablePassthrough.assign(
        prompt=RunnableLambda(lambda x: {"context": stuff(x["docs"]), "question": x["question"]}) | prompt
    )

    def hits(docs: list[Any]) -> list[dict[str, Any]]:
        return [{"rank": i, "text": d.page_content, **d.metadata} for i, d in enumerate(docs, start=1)]

    app = FastAPI(title="langchain-baseline")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        return {"status": "ready", **runtime}

    @app.post("/search")
    def search(body: SearchBody) -> dict[str, Any]:
        t0 = time.perf_counter()
        docs = retriever.invoke(body.query)
        return {"hits": hits(docs), "timings_ms": {"total": round((time.perf_counter() - t0) * 1000, 3)}}

    @app.post("/ask")
    def ask(body: AskBody) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = chain.invoke(body.question)
        return {"question": body.question, "prompt": out["prompt"].to_string(), "sources": hits(out["docs"]),
                "timings_ms": {"total": round((time.perf_counter() - t0) * 1000, 3)}}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--role", action="append", default=None,
                        help="roles of the principal whose readable products are indexed (default analyst)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own default)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import uvicorn
    from langchain_huggingface import HuggingFaceEmbeddings

    from indexing.embedder import bundled_minilm_path

    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    t0 = time.perf_counter()
    release_id, docs = release_documents(args.data_dir, frozenset(args.role or ["analyst"]))
    model_dir = bundled_minilm_path()
    embeddings = HuggingFaceEmbeddings(model=str(model_dir), model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    store, how = load_or_build(docs, embeddings, model_dir, args.data_dir / "benchmarks" / "langchain-faiss")
    retriever = store.as_retriever(search_kwargs={"k": K})
    runtime = {
        "release_id": release_id, "documents": len(docs), "index": type(store.index).__name__,
        "index_size": int(store.index.ntotal), "faiss_index": how, "k": K,
        "startup_s": round(time.perf_counter() - t0, 1), "torch_threads": torch.get_num_threads(),
        "libraries": {name: version(name) for name in LIBRARIES},
    }
    uvicorn.run(create_app(retriever, runtime), host="127.0.0.1", port=args.port, log_config=None,
                access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
