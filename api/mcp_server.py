"""MCP server (official `mcp` SDK) exposing the mesh to assistants: search_catalog, get_product,
search, ask. Over streamable HTTP (mounted in the app at /mcp) the caller is resolved from the HTTP
request's API key exactly like the REST routes; over stdio (`meshrag mcp`) from the key or roles given
on the command line. Every tool sees only what that principal may read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from knowledge.catalog import product_details, product_summary
from knowledge.errors import MeshragError
from knowledge.model import Principal
from retrieval.searcher import hit_as_dict
from retrieval.service import MeshService
from retrieval.types import SearchRequest

# Resolves the caller from the HTTP request (None over stdio).
PrincipalResolver = Callable[[Any], Principal]
MAX_K = 50


@contextmanager
def _domain_errors() -> Iterator[None]:
    """A domain error is an anticipated tool failure: the model reads its message (which never names
    what the caller may not read); anything else stays a crash with a generic message."""
    try:
        yield
    except MeshragError as exc:
        raise ToolError(str(exc)) from None


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

    @mcp.tool(description="Find knowledge products by text (matches id, name, purpose, owner, team, tags) "
                          "and/or filters. Returns catalog cards with owner and freshness.")
    async def search_catalog(ctx: Context, query: str = "", domain: str | None = None, owner: str | None = None,
                             tag: str | None = None, classification: str | None = None) -> list[dict[str, Any]]:
        principal = _principal(ctx, resolve)
        catalog = service().searcher.catalog
        words = [w.lower() for w in query.split()]
        out = []
        for p in catalog.filter(domain=domain, owner=owner, tag=tag, classification=classification,
                                principal=principal):
            card = product_summary(p)
            text = " ".join(str(v) for v in (p.id, p.title, p.purpose, p.owner.name, p.team, *p.tags)).lower()
            if all(w in text for w in words):
                out.append(card)
        return out

    @mcp.tool(description="One product's contract summary: owner, team, classification, roles, SLAs, "
                          "freshness, documents. Unknown and unreadable products are both 'not found'.")
    async def get_product(ctx: Context, product_id: str) -> dict[str, Any]:
        principal = _principal(ctx, resolve)
        with _domain_errors():
            product = service().searcher.catalog.get(product_id, principal)
        details = product_details(product)
        for local in ("root", "sources", "descriptor", "contract"):
            details.pop(local, None)  # server file paths are not the caller's business
        return details

    @mcp.tool(description="Hybrid (dense + keyword) search over the chunks you may read. Returns ranked "
                          "chunks with product, document, span and scores.")
    async def search(ctx: Context, query: str, k: int = 8, products: list[str] | None = None,
                     release: str = "current") -> dict[str, Any]:
        principal = _principal(ctx, resolve)
        req = SearchRequest(query=query, principal=principal, k=max(1, min(k, MAX_K)), release=release,
                            products=tuple(products) if products else None)
        with _domain_errors():
            result = await anyio.to_thread.run_sync(service().search, req)
        return {"release_id": result.release_id, "hits": [hit_as_dict(h) for h in result.hits]}

    @mcp.tool(description="Answer a question from the products you may read, with verified citations [n]. "
                          "`outcome`: answered; possibly_relevant (no confirmed answer: the best passages, "
                          "quoted and cited); or abstained ('Not found in the products you can read.', no "
                          "citations). `short`: for who / when / how much questions, the answering phrase.")
    async def ask(ctx: Context, question: str, products: list[str] | None = None,
                  release: str = "current") -> dict[str, Any]:
        principal = _principal(ctx, resolve)
        req = SearchRequest(query=question, principal=principal, release=release,
                            products=tuple(products) if products else None)
        with _domain_errors():
            result = await anyio.to_thread.run_sync(service().ask, req)
        return {"request_id": result.request_id, **result.answer.as_dict(), "products": list(result.products)}

    return mcp


def mount_mcp(app: Any) -> None:
    """Serve the MCP tools at /mcp (streamable HTTP, stateless) on a FastAPI app built by
    `api.app.create_app`: same service, same API keys, same access rules as the REST routes. A wrong key
    gets 401 before MCP sees the request. DNS-rebinding protection is off because callers are
    authenticated by key, and the server binds 127.0.0.1 unless told otherwise."""
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.responses import JSONResponse

    from api.auth import presented_key
    from api.errors import InvalidApiKey, KeyStoreUnavailable

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
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
                app.state.keys.principal_for(presented_key(headers.get("authorization"), headers.get("x-api-key")))
            except InvalidApiKey as exc:
                await JSONResponse({"error": {"type": "unauthorized", "message": str(exc), "status": 401}},
                                   status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
            except KeyStoreUnavailable:
                await JSONResponse({"error": {"type": "unavailable", "message": "API keys cannot be checked right "
                                              "now; retry shortly", "status": 503}},
                                   status_code=503, headers={"Retry-After": "5"})(scope, receive, send)
                return
        await inner(scope, receive, send)

    app.mount("/mcp", guarded)
    app.state.lifespan_extensions.append(lambda _app: server.session_manager.run())


def run_stdio(service: MeshService, principal: Principal) -> None:
    """`meshrag mcp`: the same tools over stdio for a local assistant, as one fixed principal."""
    server = build_mcp_server(lambda: service, lambda _request: principal)
    server.run("stdio")
