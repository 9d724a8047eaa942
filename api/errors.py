"""The one place where errors become HTTP responses.

Every error response is `{"error": {"type", "message", "status", "request_id", "fields"?}}` with the
X-Request-ID header, and never a stack trace. Domain errors map as follows:

    ProductNotFound, ReleaseNotFound, ProvenanceNotFound  404 — listing what the caller may read
    AccessDenied                                          404 — exactly like a missing product
    NotAllowed (an operation the caller's roles lack)     403 — the roles it needs named
    RequestLimitExceeded (retrieval/requests.py)          422 — the field and the limit named
    RequestIdConflict                                     409 — the caller's own id, used before
    ConfigError (bad input the library caught)            400
    PolicyViolation                                       422
    StoreUnavailable, CollectionNotFound                  503 + Retry-After (details in the log only)
    KeyStoreUnavailable (key file or table unreadable)    503 + Retry-After, type "unavailable"
    ProvenanceCorrupt, any other MeshragError             500 (details in the log only)

Every entry point answers a 503 with `Retry-After: RETRY_AFTER_S`: REST and chat and SSE (before the
stream starts) through the handlers below, the web pages through api/web/render.py, MCP's key check and
the middlewares through `send_error`; MCP tool errors carry the same status in-band, with
`retry_after_s`. In shared mode a lost PostgreSQL connection anywhere (vectors, releases, provenance, keys,
sessions, the embedding cache) is a StoreUnavailable, and the next call reconnects: no restart needed.

A product the caller may not read is answered like one that does not exist (404, listing only readable
products), never 403: a 403 would confirm that a restricted product with that id exists.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.metrics import ApiMetrics
from api.schemas import ErrorResponse
from knowledge.errors import (
    AccessDenied,
    CollectionNotFound,
    ConfigError,
    MeshragError,
    NotAllowed,
    PolicyViolation,
    ProductNotFound,
    ProvenanceCorrupt,
    ProvenanceNotFound,
    ReleaseNotFound,
    StoreUnavailable,
)
from retrieval.requests import RequestIdConflict, RequestLimitExceeded

log = logging.getLogger("meshrag.api")
RETRY_AFTER_S = 5
AUTHENTICATE = 'Bearer realm="meshrag", charset="UTF-8"'


# Errors raised inside api/ only.
class InvalidApiKey(Exception):
    """The request presented an API key that is malformed or unknown (never carries the key)."""


class AuthRequired(Exception):
    """The route needs an API key and the request had none."""


class KeyStoreUnavailable(StoreUnavailable):
    """The API key file or table cannot be read; the server refuses keyed requests until it can."""


class UnknownModel(Exception):
    """An OpenAI-compatible request named a model this server does not serve."""


# (error class, status, type, message shown — None: the exception's own message)
_MAPPING: list[tuple[type[BaseException], int, str, str | None]] = [
    (InvalidApiKey, 401, "unauthorized", None),
    (AuthRequired, 401, "unauthorized", None),
    (KeyStoreUnavailable, 503, "unavailable", "API keys cannot be checked right now; retry later"),
    (RequestLimitExceeded, 422, "limit_exceeded", None),
    (RequestIdConflict, 409, "conflict", None),
    (UnknownModel, 404, "model_not_found", None),
    (AccessDenied, 404, "not_found", "not found among the products you can read"),
    (NotAllowed, 403, "forbidden", None),
    (ProductNotFound, 404, "not_found", None),
    (ReleaseNotFound, 404, "not_found", None),
    (ProvenanceNotFound, 404, "not_found", None),
    (
        StoreUnavailable,
        503,
        "store_unavailable",
        "the index store is unavailable right now; retry in a few seconds",
    ),
    (
        CollectionNotFound,
        503,
        "store_unavailable",
        ("the index store does not hold this release's vectors right now; "
         "retry, or ask the operator to re-index"),
    ),
    (ConfigError, 400, "bad_request", None),
    (PolicyViolation, 422, "policy_violation", None),
    (
        ProvenanceCorrupt,
        500,
        "provenance_corrupt",
        "the provenance log cannot be read as written; the operator should run `meshrag provenance verify`",
    ),
    (MeshragError, 500, "internal_error", None),
]
_HIDDEN_DETAIL = (StoreUnavailable, CollectionNotFound, KeyStoreUnavailable, ProvenanceCorrupt)
_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def error_response(
    request: Request,
    status: int,
    kind: str,
    message: str,
    *,
    fields: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": kind,
        "message": message,
        "status": status,
        "request_id": getattr(request.state, "request_id", "-"),
    }
    if fields is not None:
        body["fields"] = fields
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def classify(exc: BaseException) -> tuple[int, str, str]:
    """(status, type, message) of an error, as the client sees it."""
    for cls, status, kind, shown in _MAPPING:
        if isinstance(exc, cls):
            if shown is None and status == 500:
                return (
                    status,
                    kind,
                    "internal error; the operator can find it in the server log under this request id",
                )
            return status, kind, shown if shown is not None else str(exc)
    return 500, "internal_error", "internal error"


def install_error_handlers(app: FastAPI, metrics: ApiMetrics) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        status, kind, message = classify(exc)
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = AUTHENTICATE
        if status == 503:
            headers["Retry-After"] = str(RETRY_AFTER_S)
            if isinstance(exc, StoreUnavailable):
                metrics.store_unavailable.inc()
        if status >= 500 or isinstance(exc, _HIDDEN_DETAIL):
            log.error("%s: %s", type(exc).__name__, exc)
        return error_response(request, status, kind, message, headers=headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                "msg": str(e.get("msg", "invalid")),
                "type": str(e.get("type", "value_error")),
            }
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(map(str, f['loc']))}: {f['msg']}" for f in fields[:5])
        return error_response(request, 422, "validation_error", f"invalid request: {summary}", fields=fields)

    async def limit_error(request: Request, exc: RequestLimitExceeded) -> JSONResponse:
        return error_response(
            request, 422, exc.kind, str(exc), fields=[{"loc": exc.loc, "msg": str(exc), "type": exc.kind}]
        )

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        return error_response(
            request,
            exc.status_code,
            _HTTP_TYPES.get(exc.status_code, "http_error"),
            message,
            headers=dict(exc.headers or {}),
        )

    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestLimitExceeded, limit_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    for cls in (
        MeshragError,
        InvalidApiKey,
        AuthRequired,
        KeyStoreUnavailable,
        UnknownModel,
    ):
        app.add_exception_handler(cls, domain_error)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can return."""
    described = {
        400: "Inconsistent input the service caught (the message says what to change).",
        401: "The API key is malformed or unknown (see WWW-Authenticate), or the route needs a key.",
        404: "Not found among what you may read (a product you cannot read looks exactly like a "
        "missing one).",
        409: "The X-Request-ID you sent already names an earlier answer.",
        413: "The request body is over MESHRAG_MAX_BODY_BYTES.",
        422: "Invalid input, with field-level messages (limits name the limit).",
        503: "A store is unavailable; retry after the Retry-After seconds.",
    }
    return {s: {"model": ErrorResponse, "description": described[s]} for s in statuses}
