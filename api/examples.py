"""Response examples for the OpenAPI document, taken from real responses on the bundled sample mesh
(shortened). Only the public sample product appears, so the document reveals nothing restricted."""

from __future__ import annotations

from typing import Any

RELEASE = "rel-27887133c919de77"
REQUEST_ID = "6d57c70444774d1f9840271d9693dcc0"
PRODUCT = "platform.mesh-handbook"

_SCORES = {
    "score": 0.0271,
    "rank": 6,
    "dense": 0.474,
    "dense_rank": 7,
    "keyword": 0.666,
    "keyword_rank": 22,
    "rerank": None,
    "support": None,
}
_FRESHNESS = {
    "status": "fresh",
    "last_update": "2026-11-22T12:49:33.754059+00:00",
    "source": "sources",
    "sla_days": 90.0,
    "age_days": 0.03,
}

HIT: dict[str, Any] = {
    "rank": 1,
    "score": 0.0325,
    "chunk_id": "b84f846fad1c1551fc5ed855",
    "product_id": PRODUCT,
    "product_version": "3.2.0",
    "release_id": RELEASE,
    "chunk_version": "cv-2231921d341e93873177",
    "embedding_version": "ev-a58c0020dcfb58d9c6d0",
    "domain": "platform",
    "classification": "public",
    "document": "onboarding-guide.md",
    "doc_revision": "7b1296c41d93a1b9e9a26213a3ee03781b39400ce062f54dbb5c55240aa24897",
    "start": 4381,
    "end": 4961,
    "heading_path": ["Onboarding Guide for New Product Owners", "Step 6: Publish"],
    "flags": [],
    "text": "Set the version to `1.0.0` in both files, index again, and publish the new release with "
    "`meshrag releases publish <release-id> --gate` …",
    "scores": _SCORES,
}
SNIPPET = {
    k: HIT[k]
    for k in (
        "rank",
        "score",
        "chunk_id",
        "product_id",
        "product_version",
        "document",
        "heading_path",
        "start",
        "end",
    )
} | {"snippet": HIT["text"]}
CITATION: dict[str, Any] = {
    "marker": 1,
    "chunk_id": "1ea28043e32541a7e982d29e",
    "product_id": PRODUCT,
    "product_version": "3.2.0",
    "release_id": RELEASE,
    "chunk_version": "cv-2231921d341e93873177",
    "document": "principles.md",
    "doc_revision": "ffd041cff71331be6612cf95552d9b549fd82e29b35c148bc43cad3f9337c741",
    "start": 2004,
    "end": 2879,
    "heading_path": ["Data Mesh Principles at Cobalt Kettle", "Principle 2: Data as a product"],
    "text": "A knowledge product is not a folder of files; it is something we promise to other people. …",
    "scores": _SCORES | {"support": 1.0},
}
CITED_PRODUCT = {
    "id": PRODUCT,
    "name": "Data Mesh Handbook",
    "owner": "Marguerite Okafor",
    "team": "Data Platform",
    "classification": "public",
    "freshness": _FRESHNESS,
}
ANSWER_TEXT = "A knowledge product is not a folder of files; it is something we promise to other people [1]."
DECISION: dict[str, Any] = {
    "answerer": "extractive@2",
    "answer_model": "answer-lr@5b4cc528e2c7",
    "thresholds": {"answer": 0.194477, "relevant": 0.386152, "sentence": 0.34072},
    "scorer": "embedding-lexical-support@1+sentence-transformers/all-MiniLM-L6-v2@53aa51172d142c89",
    "max_sentences": 3,
    "min_support": 0.5,
    "answerability": 0.8441,
    "retrieval": 0.6108,
}

SEARCH = {
    "request_id": REQUEST_ID,
    "release_id": RELEASE,
    "hits": [HIT],
    "params": {"k": 5, "fusion": "convex", "rrf_k": 60, "products_searched": [PRODUCT]},
    "timings_ms": {"embed": 14.2, "dense": 0.9, "keyword": 3.1, "fuse": 0.2, "total": 19.8},
}

ASK = {
    "request_id": REQUEST_ID,
    "release_id": RELEASE,
    "question": "What is a knowledge product?",
    "answer": {
        "text": ANSWER_TEXT,
        "outcome": "answered",
        "abstained": False,
        "short": None,
        "support": 0.8441,
        "answerer": "extractive@2",
        "model": None,
        "prompt_version": None,
        "sentences": [{"text": ANSWER_TEXT.removesuffix(" [1]."), "markers": [1], "support": 1.0}],
        "citations": [CITATION],
        "dropped_citations": 0,
        "closest_products": [],
        "decision": DECISION,
    },
    "products": [CITED_PRODUCT],
    "retrieval": [SNIPPET],
    "timings_ms": {"search": 41.3, "answer": 310.5, "provenance": 4.2, "total": 356.0},
}

ASK_STREAM = (
    f'event: retrieval\ndata: {{"request_id": "{REQUEST_ID}", "release_id": "{RELEASE}", '
    '"hits": [...]}\n\n'
    'event: sentence\ndata: {"index": 0, "text": "A knowledge product is not a folder of files; it is '
    'something we promise to other people.", "markers": [1], "support": 1.0, '
    '"rendered": "… people [1]."}\n\n'
    'event: citations\ndata: {"citations": [...], "products": [...], "outcome": "answered", '
    '"abstained": false, "short": null, ...}\n\n'
    f'event: done\ndata: {{"request_id": "{REQUEST_ID}", "release_id": "{RELEASE}", '
    '"timings_ms": {...}}\n\n'
)

PRODUCT_SUMMARY: dict[str, Any] = {
    "access": "read",
    "id": PRODUCT,
    "domain": "platform",
    "name": "Data Mesh Handbook",
    "slug": "mesh-handbook",
    "version": "3.2.0",
    "status": "active",
    "owner": "Marguerite Okafor",
    "owner_username": "m.okafor",
    "team": "Data Platform",
    "contact": "Marguerite Okafor (m.okafor) of Data Platform",
    "classification": "public",
    "read_roles": ["everyone"],
    "pii_policy": "allow",
    "tags": ["governance", "mesh", "contracts", "slas", "onboarding"],
    "documents": 9,
    "freshness": _FRESHNESS,
    "retention_days": 1095,
    "purpose": "How Cobalt Kettle runs its data mesh: principles, contract policy, readiness, SLAs.",
    "match": None,
}
CATALOG = {"count": 1, "products": [PRODUCT_SUMMARY]}
PRODUCT_DETAIL = PRODUCT_SUMMARY | {
    "usage": "Read before publishing or changing a knowledge product.",
    "limitations": "Describes policy, not the state of any individual product.",
    "members": [{"username": "m.okafor", "name": "Marguerite Okafor", "role": "owner"}],
    "document_ids": ["contract-policy.md", "onboarding-guide.md", "principles.md"],
    "versions": [
        {
            "release_id": RELEASE,
            "current": True,
            "created_at": "2026-11-22T13:27:16+00:00",
            "product_version": "3.2.0",
            "chunk_version": "cv-2231921d341e93873177",
            "embedding_version": "ev-a58c0020dcfb58d9c6d0",
            "chunks": 91,
            "documents": 10,
        }
    ],
}
RELEASES = {
    "current": RELEASE,
    "releases": [
        {
            "id": RELEASE,
            "created_at": "2026-11-22T13:27:16+00:00",
            "current": True,
            "store": "faiss",
            "model_id": "sentence-transformers/all-MiniLM-L6-v2@53aa51172d142c89",
            "parent": None,
            "products": 1,
            "chunks": 91,
        }
    ],
}
RELEASE_DETAIL = {k: v for k, v in RELEASES["releases"][0].items() if k not in ("products", "chunks")} | {
    "products": [
        {
            "product_id": PRODUCT,
            "product_version": "3.2.0",
            "domain": "platform",
            "classification": "public",
            "chunk_version": "cv-2231921d341e93873177",
            "embedding_version": "ev-a58c0020dcfb58d9c6d0",
            "chunks": 91,
            "documents": 10,
        }
    ]
}
PROVENANCE = {
    "record_version": 2,
    "request_id": REQUEST_ID,
    "created_at": "2026-11-22T13:02:11.120931+00:00",
    "principal": {"id": "ana", "roles": ["analyst"]},
    "question": "What is a knowledge product?",
    "release_id": RELEASE,
    "retrieval_params": {"k": 8, "fusion": "convex", "products_searched": [PRODUCT]},
    "retrieved": [
        {
            k: CITATION[k]
            for k in (
                "chunk_id",
                "product_id",
                "product_version",
                "chunk_version",
                "document",
                "doc_revision",
                "start",
                "end",
                "heading_path",
            )
        }
        | {"embedding_version": "ev-a58c0020dcfb58d9c6d0", "classification": "public", "scores": _SCORES}
    ],
    "answerer": "extractive@2",
    "prompt_version": None,
    "model": None,
    "answer": ANSWER_TEXT,
    "abstained": False,
    "support": 0.8441,
    "citations": [CITATION],
    "dropped_citations": 0,
    "timings": {"search": 41.3, "answer": 310.5},
    "outcome": "answered",
    "short": None,
    "decision": DECISION,
    "hash": "61be…",
}
HEALTH = {"status": "ok"}
READY = {"status": "ready", "warm": True, "store": True, "current_release": RELEASE, "problems": [],
         "query_encoder": {"runtime": "onnx", "requested": "auto", "onnx_min_cosine": 1.0, "fallback_reason": None,
                           "cache_hits": 12, "cache_misses": 40, "cache_size": 40, "cache_maxsize": 4096,
                           "onnx_threads": 2, "onnx_lone_queries": 31},
         "answer_vectors": {"status": "done", "done": 6921, "total": 6921}}
METRICS = (
    "# HELP meshrag_http_requests_total HTTP requests by route template and status.\n"
    "# TYPE meshrag_http_requests_total counter\n"
    'meshrag_http_requests_total{method="POST",route="/v1/ask",status="200"} 3.0\n'
)

MODEL_ID = "meshrag-extractive"
CHAT_TEXT = (
    ANSWER_TEXT
    + "\n\nSources:\n[1] platform.mesh-handbook v3.2.0 — principles.md § Principle 2: Data as a product"
)
MESHRAG_EXTENSION = {
    "request_id": REQUEST_ID,
    "release_id": RELEASE,
    "question": "What is a knowledge product?",
    "rewritten": False,
    "rewrite_rule": "none",
    "outcome": "answered",
    "abstained": False,
    "short": None,
    "citations": [CITATION],
    "products": [CITED_PRODUCT],
}
CHAT = {
    "id": f"chatcmpl-{REQUEST_ID}",
    "object": "chat.completion",
    "created": 1795352531,
    "model": MODEL_ID,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": CHAT_TEXT},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "meshrag": MESHRAG_EXTENSION,
}
CHAT_STREAM = (
    f'data: {{"id": "chatcmpl-{REQUEST_ID}", "object": "chat.completion.chunk", "created": 1795352531, '
    f'"model": "{MODEL_ID}", "choices": [{{"index": 0, "delta": {{"role": "assistant", "content": ""}}, '
    '"finish_reason": null}]}\n\n'
    'data: {"id": "…", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": '
    '"A knowledge product is … [1]."}, "finish_reason": null}], …}\n\n'
    'data: {"id": "…", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, '
    '"finish_reason": "stop"}], "meshrag": {"request_id": "…", "citations": [...]}, …}\n\n'
    "data: [DONE]\n\n"
)
MODELS = {
    "object": "list",
    "data": [{"id": MODEL_ID, "object": "model", "created": 1795352531, "owned_by": "meshrag"}],
}


def json_example(example: Any, description: str = "Success.") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"example": example}}}}
