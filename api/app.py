"""The HTTP service: `create_app(settings)` builds a FastAPI app; its lifespan loads the models,
stores and key store once. Nothing happens at import time.

Extending it (e.g. the MCP server): mount the sub-app with `app.mount("/mcp", asgi_app)` and append a
factory `app -> async context manager` to `app.state.lifespan_extensions` (entered after the service is
warmed up, in order, and exited before it is closed). The warmed `MeshService` is `app.state.service`.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from api.auth import open_key_store
from api.chat import ChatCompletionChunk
from api.errors import install_error_handlers
from api.mcp_server import mount_mcp
from api.metrics import ApiMetrics
from api.ratelimit import EXEMPT_PATHS, RateLimitMiddleware
from api.request_context import REQUEST_ID_HEADER, RequestContextMiddleware
from api.routes import ask, catalog, chat, health, metrics, provenance, releases, search
from api.schemas import CitationsEvent, DoneEvent, ErrorResponse, RetrievalEvent, SentenceEvent
from api.settings import ApiSettings
from api.state import open_api_state
from api.web import install_web
from retrieval.service import MeshService

log = logging.getLogger("meshrag.api")
# Payloads of streamed events: not response models of any route, so added to the document here.
STREAM_EVENT_MODELS = (
    RetrievalEvent,
    SentenceEvent,
    CitationsEvent,
    DoneEvent,
    ErrorResponse,
    ChatCompletionChunk,
)
LifespanExtension = Callable[[FastAPI], AbstractAsyncContextManager[Any]]

DESCRIPTION = """
Ask questions over a data mesh's knowledge products and get answers whose every citation was checked
against the text it cites; search, browse the catalog and releases, and read your provenance records.

**Authentication.** Send an API key (`meshrag keys create --principal NAME --role ROLE`) as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Without a key you act as the anonymous principal,
which reads `public` products only. A malformed or unknown key is rejected with 401 (and a
`WWW-Authenticate` header), never downgraded to anonymous.

**Products you may not read look missing.** A product whose contract does not grant one of your roles
is answered exactly like a product that does not exist: 404 with the list of products you *can* read,
never 403 (which would confirm that a restricted product with that id exists). It is left out of
catalog lists, counts, release listings, search and answers.

**Errors** always have the shape `{"error": {"type", "message", "status", "request_id"}}` (422 adds
field-level `fields`); no stack traces. Every response carries `X-Request-ID` (yours, when you send a
plain token of up to 128 characters, else a generated one); answers are recorded under it.

**Limits** (settings): question length `MESHRAG_MAX_QUESTION_CHARS` (2000), products per request
`MESHRAG_MAX_PRODUCTS` (20), `k` ≤ `MESHRAG_MAX_K` (50), body size `MESHRAG_MAX_BODY_BYTES` (1 MiB).
Over a limit → 422 naming the field and the limit (413 for the body size).

**Rate limits** (per API key, or per address without a key; MCP included): a burst, then a sustained
rate per minute, and optionally a daily quota (`MESHRAG_RATE_LIMIT_KEYED_*`, `MESHRAG_RATE_LIMIT_ANON_*`);
at most `MESHRAG_RATE_LIMIT_MCP_CONCURRENT` MCP requests in flight per caller. Over one → 429 naming the
limit, with `Retry-After` in seconds. `/healthz`, `/readyz` and `/metrics` are not limited.
"""

TAGS = [
    {"name": "ask", "description": "Grounded answers with verified citations (JSON or Server-Sent Events)."},
    {"name": "search", "description": "Hybrid retrieval over the products you may read."},
    {"name": "catalog", "description": "Products: contracts, owners, freshness, versions."},
    {"name": "releases", "description": "Immutable sets of product versions served together."},
    {"name": "provenance", "description": "The record of each of your answers."},
    {"name": "openai-compatible", "description": "For chat assistants using an OpenAI client."},
    {"name": "health", "description": "Liveness, readiness, Prometheus metrics."},
]


def _version() -> str:
    try:
        return version("meshrag")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    keys = open_key_store(settings)
    await run_in_threadpool(keys.warm_up)  # a broken key file or table stops the start-up with its message
    await run_in_threadpool(app.state.api_state.warm_up)  # sessions and rate limits (api/state)
    service = MeshService(settings)
    await run_in_threadpool(service.warm_up)
    app.state.keys = keys
    app.state.service = service
    freeze_heap()
    app.state.warm = True
    vectors = AnswerVectorWarmer(service)
    app.state.answer_vectors = vectors
    if settings.precompute_answer_vectors:
        vectors.start()
    log.info(
        "serving data dir %s (store %s, %d API key(s))",
        settings.resolved_data_dir(),
        settings.store,
        len(keys.entries()),
    )
    try:
        async with AsyncExitStack() as stack:
            for extension in app.state.lifespan_extensions:
                await stack.enter_async_context(extension(app))
            yield
    finally:
        app.state.warm = False
        vectors.stop()
        service.provenance.close()
        app.state.api_state.close()
        keys.close()


def freeze_heap() -> None:
    """Move every object alive now (models, indexes, chunk texts, passage vectors: what lives as long as
    the process or the release) out of the garbage collector's reach. A full collection otherwise walks
    all of them, and requests that arrive meanwhile wait: /healthz at concurrency 8 had a p99 of 224 ms
    against the baseline app's 29 ms. Frozen objects are still freed by reference counting."""
    gc.collect()
    gc.freeze()


class _Stopped(Exception):
    pass


class AnswerVectorWarmer:
    """Runs `MeshService.prepare_answer_vectors` once in a daemon thread after start-up (serving goes on
    meanwhile; answers embed what is not ready yet) and reports its progress for /readyz."""

    def __init__(self, service: MeshService) -> None:
        self.service = service
        self.state: dict[str, Any] = {"status": "off", "done": 0, "total": None}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.state["status"] = "running"
        self._thread = threading.Thread(target=self._run, name="meshrag-answer-vectors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _progress(self, done: int, total: int) -> None:
        self.state.update(done=done, total=total)
        if self._stop.is_set():
            raise _Stopped

    def _run(self) -> None:
        try:
            if self.service.context.releases.current_id() is None:
                self.state["status"] = "no_release"
                return
            result = self.service.prepare_answer_vectors(progress=self._progress)
            self.state.update(status="done", done=result["embedded"], total=result["embedded"],
                              passages=result["passages"], seconds=result["seconds"])
            freeze_heap()  # the passages and their vectors now live as long as the release
            log.info("answer vectors ready: %d passages, %d embedded now, %.1f s",
                     result["passages"], result["embedded"], result["seconds"])
        except _Stopped:
            self.state["status"] = "stopped"
        except Exception as exc:  # noqa: BLE001 — reported in /readyz and the log; answering still works without it
            self.state.update(status="failed", error=type(exc).__name__)
            log.warning("precomputing answer vectors failed (%s: %s); answers embed passages on demand",
                        type(exc).__name__, exc)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The app for `settings` (default: from the environment). Models and stores load in its lifespan."""
    settings = settings or ApiSettings()
    app_metrics = ApiMetrics()
    app = FastAPI(
        title="meshrag",
        version=_version(),
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # served from bundled assets below, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = app_metrics
    app.state.warm = False
    app.state.lifespan_extensions = []
    install_error_handlers(app, app_metrics)
    for module in (ask, search, catalog, releases, provenance, chat, health, metrics):
        app.include_router(module.router)
    install_offline_docs(app)
    install_web(app)
    state = app.state.api_state = open_api_state(settings)  # memory, the state file or PostgreSQL
    app.state.web_sessions = state.sessions
    if settings.rate_limit:
        app.add_middleware(
            RateLimitMiddleware, settings=settings, keys=lambda: app.state.keys, metrics=app_metrics,
            sessions=lambda: app.state.web_sessions, backend=state.rate_limits,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )
    # Outermost: ids, body limit and metrics apply to every response, errors included; then CORS (so a
    # browser can read a 429), then the rate limits.
    app.add_middleware(RequestContextMiddleware, metrics=app_metrics, max_body_bytes=settings.max_body_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    mount_mcp(app)
    return app


DOCS_ASSETS = "/docs-assets"


def install_offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from the scripts the `fastapi-offline` package ships, served here:
    the pages work on a machine without a network (FastAPI's own pages load them from a CDN)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


RATE_LIMITED_RESPONSE = {
    "description": "Over a rate limit or quota of your API key or address (the message names it); retry "
    "after the Retry-After seconds.",
    "headers": {"Retry-After": {"description": "Seconds to wait (≥ 1).", "schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the API key marked optional (no key = anonymous) on every operation and
    the 429 of the rate limits on every limited one."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        _, defs = models_json_schema(
            [(m, "serialization") for m in STREAM_EVENT_MODELS], ref_template="#/components/schemas/{model}"
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in defs.get("$defs", {}).items():
            components.setdefault(name, definition)
        for route, path in schema.get("paths", {}).items():
            for operation in path.values():
                if not isinstance(operation, dict):
                    continue
                if route not in EXEMPT_PATHS:
                    operation.setdefault("responses", {}).setdefault("429", RATE_LIMITED_RESPONSE)
                if "provenance" in operation.get("tags", ()):
                    continue  # provenance needs a key
                if operation.get("security") and {} not in operation["security"]:
                    operation["security"].append({})
        app.openapi_schema = schema
    return app.openapi_schema
