"""Per-request context: the request id (X-Request-ID) in a contextvar, a logging filter that stamps it
on every log line, and the outermost ASGI middleware that sets it, limits the body size, records
metrics, and turns an unexpected exception into a JSON 500 without a stack trace."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ApiMetrics

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept only when it is a plain token; anything else (control characters, spaces,
# over-long) is replaced by a generated one, so it is safe in headers, logs and provenance.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")

request_id_var: ContextVar[str] = ContextVar("meshrag_request_id", default="-")
log = logging.getLogger("meshrag.api")


def current_request_id() -> str:
    return request_id_var.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def error_body(status: int, kind: str, message: str, request_id: str) -> bytes:
    return json.dumps(
        {"error": {"type": kind, "message": message, "status": status, "request_id": request_id}}
    ).encode("utf-8")


class RequestContextMiddleware:
    """Outermost middleware. Every response carries X-Request-ID (the client's, when it is a plain
    token, else a new one); every log line inside the request carries it too."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _CLIENT_ID.match(given) else new_request_id()
        token = request_id_var.set(request_id)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["request_id_given"] = request_id == given
        status: list[int] = []
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await _send_json(
                    send_with_id, 413, error_body(413, "request_too_large", self._too_large, request_id)
                )
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception:
            # Logged with its traceback for the operator; the client gets the request id only.
            log.exception("unhandled error in %s %s", scope.get("method"), _route_of(scope))
            if not status:
                await _send_json(
                    send_with_id,
                    500,
                    error_body(
                        500,
                        "internal_error",
                        "internal error; the operator can find it in the server log "
                        f"under request id {request_id}",
                        request_id,
                    ),
                )
        finally:
            elapsed = time.perf_counter() - t0
            code = status[0] if status else 500
            route = _route_of(scope)
            self.metrics.observe_request(scope.get("method", "-"), route, code, elapsed)
            principal = scope.get("state", {}).get("principal_id", "-")
            log.info(
                "%s %s -> %d in %.1f ms (principal %s)",
                scope.get("method"),
                route,
                code,
                elapsed * 1000,
                principal,
            )
            request_id_var.reset(token)

    @property
    def _too_large(self) -> str:
        return f"the request body is over {self.max_body_bytes} bytes (MESHRAG_MAX_BODY_BYTES)"

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that refuses a body growing past the limit (chunked uploads have no Content-Length).
        An HTTPException passes FastAPI's body parsing unchanged and becomes the JSON 413."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise HTTPException(413, self._too_large)
            return message

        return wrapped


def _route_of(scope: Scope) -> str:
    """The matched route's template (`/v1/catalog/{product_id}`), never the raw path (unbounded labels);
    inside a mounted app (MCP at /mcp) the mount's path comes first, else every MCP call would be "/"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    root = scope.get("root_path", "")
    mount = root[len(scope.get("app_root_path", root)):]
    if not isinstance(path, str):  # answered before the mounted app routed it (MCP's 401), or by no route
        return f"{mount}/" if mount else "unmatched"
    return mount + path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return value.decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                return None
    return None


async def _send_json(send: Any, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, status: int, kind: str, message: str, *, headers: dict[str, str] | None = None
) -> None:
    """Answer from ASGI middleware, before any route, with the project's error body and this request's
    id (for the errors that api/errors.py cannot map because no route runs: 429, MCP's 401 and 405)."""
    await _send_json(send, status, error_body(status, kind, message, request_id_var.get()), headers)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(level: str = "info") -> None:
    """One stderr handler for the server process; every line carries the request id (`-` outside a
    request). uvicorn's own loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
