"""MCP server (official `mcp` SDK) exposing the mesh to assistants: search_catalog, get_product,
search, ask. Over streamable HTTP (mounted in the app at /mcp) the caller is resolved from the HTTP
request's API key exactly like the REST routes; over stdio (`meshrag mcp`) from the key or roles given
on the command line. Every tool sees only what that principal may read."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from api.request_context import current_request_id
from api.routes.catalog import list_products, product_detail
from knowledge.errors import MeshragError
from knowledge.model import Principal
from retrieval.requests import RequestLimitExceeded, new_request_id
from retrieval.service import MeshService

# Resolves the caller from the HTTP request (None over stdio).
PrincipalResolver = Callable[[Any], Principal]


@contextmanager
def _domain_errors() -> Iterator[None]:
    """A domain error is an anticipated tool failure. The model reads the same error object REST would
    send (type, message, status; `fields` for limits), as JSON; the message never names what the caller
    may not read. A 503 (a store that cannot be reached) carries `retry_after_s`, the seconds REST sends as
    Retry-After: an MCP tool result has no headers of its own. Anything else stays a crash with a generic
    message."""
    try:
        yield
    except MeshragError as exc:
        from api.errors import RETRY_AFTER_S, classify

        status, kind, message = classify(exc)
        error: dict[str, Any] = {"type": kind, "message": message, "status": status,
                                 "request_id": current_request_id()}
        if status == 503:
            error["retry_after_s"] = RETRY_AFTER_S
        if isinstance(exc, RequestLimitExceeded):
            error["type"] = exc.kind
            error["fields"] = [{"loc": exc.loc, "msg": message, "type": exc.kind}]
        raise ToolError(json.dumps({"error": error})) from None


def _principal(ctx: Context, resolve: PrincipalResolver) -> Principal:
    request = ctx.request_context.request if ctx.request_context is not None else None
    return resolve(request)


def build_mcp_server(service: Callable[[], MeshService], resolve: PrincipalResolver) -> MCPServer:
    """An MCP server whose tools run on the given (warmed-up) service."""
    mcp = MCPServer(
        name="meshrag",
        instructions="Search and ask the company's knowledge products. Answers cite sources as [n]; "
                     "only products the caller's roles allow are visible.",
    )

    @mcp.tool(description="Find knowledge products by words in their catalog metadata (id, title, purpose, "
                          "usage, owner, team, tags), ranked by how many match, and/or filters — the same rule "
                          "as GET /v1/catalog?q=. Returns catalog cards with owner and freshness; a product "
                          "you may only discover (`access: discover`) shows its catalog facts alone.")
    async def search_catalog(ctx: Context, query: str = "", domain: str | None = None, owner: str | None = None,
                             tag: str | None = None, classification: str | None = None) -> list[dict[str, Any]]:
        principal = _principal(ctx, resolve)
        found = list_products(service(), principal, query.strip() or None, domain, owner, tag, classification)
        return [p.model_dump(mode="json") for p in found.products]

    @mcp.tool(description="One product's contract summary: owner, team, classification, roles, SLAs, "
                          "freshness, documents, releases — the same as GET /v1/catalog/{product_id}. A product "
                          "you may only discover: its catalog facts alone (`access: discover`). Unknown and "
                          "otherwise unreadable products are both 'not found'.")
    async def get_product(ctx: Context, product_id: str) -> dict[str, Any]:
        principal = _principal(ctx, resolve)
        with _domain_errors():
            detail = product_detail(service(), principal, product_id)
        return detail.model_dump(mode="json")

    @mcp.tool(description="Hybrid (dense + keyword) search over the chunks you may read. Returns ranked "
                          "chunks with product, document, span and scores. `products` may pin a version "
                          "(`<id>@<version>`); `as_of` (YYYY-MM-DD) serves the versions current on that date.")
    async def search(ctx: Context, query: str, k: int | None = None, products: list[str] | None = None,
                     release: str = "current", as_of: str | None = None) -> dict[str, Any]:
        principal = _principal(ctx, resolve)
        with _domain_errors():
            req = service().limits.search_request(principal, query, where=("arguments",),
                                                  query_loc=("arguments", "query"), k=k, release=release,
                                                  products=products or None, as_of=as_of)
            result = await anyio.to_thread.run_sync(service().search, req)
        return {"release_id": result.release_id, "hits": [asdict(h.hit()) for h in result.hits]}

    @mcp.tool(description="Answer a question from the products you may read, with verified citations [n]. "
                          "`outcome`: answered; possibly_relevant (no confirmed answer: the best passages, "
                          "quoted and cited); or abstained ('Not found in the products you can read.', no "
                          "citations). `short`: for who / when / how much questions, the answering phrase. "
                          "`products` may pin a version (`<id>@<version>`); `as_of` (YYYY-MM-DD) answers from "
                          "the versions current on that date.")
    async def ask(ctx: Context, question: str, k: int | None = None, products: list[str] | None = None,
                  release: str = "current", as_of: str | None = None) -> dict[str, Any]:
        principal = _principal(ctx, resolve)
        with _domain_errors():
            req = service().limits.search_request(principal, question, where=("arguments",), k=k,
                                                  release=release, products=products or None, as_of=as_of)
            result = await anyio.to_thread.run_sync(service().pipeline.run, req, new_request_id())
        return {"request_id": result.request_id, **result.answer.as_dict(), "products": [asdict(p) for p in result.products]}

    return mcp


def mount_mcp(app: Any) -> None:
    """Serve the MCP tools at /mcp (streamable HTTP, stateless, JSON responses) on a FastAPI app built by
    `api.app.create_app`: same service, same API keys, same access rules as the REST routes. A wrong key
    gets 401 before MCP sees the request. DNS-rebinding protection is off because callers are
    authenticated by key, and the server binds 127.0.0.1 unless told otherwise.

    Only POST is served: every response is the JSON answer to the POSTed message, so nothing stays open
    longer than a tool call, and any worker (`meshrag serve --workers N`) or replica can answer any request
    of a client's session, its `initialize` included. The server sends no messages of its own and keeps no
    sessions, so GET (the
    stream for server-initiated messages) and DELETE (ending a session) are answered 405 at once, as the
    MCP transport allows; a GET stream never hangs open. How many MCP requests one caller may have in
    flight is bounded by api/ratelimit.py (MESHRAG_RATE_LIMIT_MCP_CONCURRENT)."""
    from mcp.server.transport_security import TransportSecuritySettings

    from api.auth import presented_key
    from api.errors import AUTHENTICATE, RETRY_AFTER_S, InvalidApiKey, KeyStoreUnavailable
    from api.request_context import send_error

    def principal_of(request: Any) -> Principal:
        if request is None:
            return Principal.anonymous()
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        return app.state.keys.principal_for(key)

    server = build_mcp_server(lambda: app.state.service, principal_of)
    inner = server.streamable_http_app(
        streamable_http_path="/", stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope.get("method") != "POST":
                await send_error(send, 405, "method_not_allowed",
                                 f"{scope.get('method')} is not served on /mcp: this MCP server is stateless and "
                                 "sends no messages of its own; POST each JSON-RPC message to /mcp/",
                                 headers={"Allow": "POST"})
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
                app.state.keys.principal_for(presented_key(headers.get("authorization"), headers.get("x-api-key")))
            except InvalidApiKey as exc:
                await send_error(send, 401, "unauthorized", str(exc), headers={"WWW-Authenticate": AUTHENTICATE})
                return
            except KeyStoreUnavailable:
                await send_error(send, 503, "unavailable", "API keys cannot be checked right now; retry later",
                                 headers={"Retry-After": str(RETRY_AFTER_S)})
                return
        await inner(scope, receive, send)

    app.mount("/mcp", guarded)
    app.state.lifespan_extensions.append(lambda _app: server.session_manager.run())


def run_stdio(service: MeshService, principal: Principal) -> None:
    """`meshrag mcp`: the same tools over stdio for a local assistant, as one fixed principal."""
    server = build_mcp_server(lambda: service, lambda _request: principal)
    server.run("stdio")
