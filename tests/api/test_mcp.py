"""The MCP server through the official `mcp` SDK client: over streamable HTTP against a real uvicorn
server (keys and access rules as in REST), and in-process for the tool contracts."""

from __future__ import annotations

import anyio
import pytest
from mcp.client import Client

pytestmark = pytest.mark.slow

RESTRICTED = "people.compensation-handbook"


async def _call(url: str, headers: dict[str, str], tool: str, args: dict) -> object:
    import httpx
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        names = [t.name for t in (await client.list_tools()).tools]
        assert names == ["search_catalog", "get_product", "search", "ask"]
        return await client.call_tool(tool, args)


def test_mcp_tools_over_http_respect_roles(api):
    url = f"{api.url}/mcp/"
    anon = anyio.run(_call, url, {}, "search_catalog", {"query": ""})
    ids = {p["id"] for p in anon.structured_content["result"]}
    assert ids == {"platform.mesh-handbook"}

    partner = {"Authorization": f"Bearer {api.keys['pat']}"}
    found = anyio.run(_call, url, partner, "get_product", {"product_id": RESTRICTED})
    assert not found.is_error and found.structured_content["owner"] == "Amara Nwosu"

    analyst = {"Authorization": f"Bearer {api.keys['ana']}"}
    hidden = anyio.run(_call, url, analyst, "get_product", {"product_id": RESTRICTED})
    assert hidden.is_error and RESTRICTED in hidden.content[0].text.split(";")[0]
    assert RESTRICTED not in hidden.content[0].text.split(";")[1]  # listed products: readable ones only

    answer = anyio.run(_call, url, analyst, "ask", {"question": "What is the parental leave policy for new parents?"})
    cited = {c["product_id"] for c in answer.structured_content["citations"]}
    assert RESTRICTED not in cited and answer.structured_content["request_id"]

    hits = anyio.run(_call, url, partner, "search", {"query": "parental leave weeks", "k": 5})
    assert hits.structured_content["hits"][0]["product_id"] == RESTRICTED


def test_mcp_rejects_a_wrong_key(api):
    import httpx

    r = httpx.post(f"{api.url}/mcp/", headers={"Authorization": "Bearer mr_nope_nope"},
                   json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == 401 and "not valid" in r.text


def test_mcp_over_stdio_as_a_role(api_data_dir):
    import os
    import sys

    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-m", "api.cli.main", "mcp", "--as", "analyst",
                                                               "--data-dir", str(api_data_dir)],
                                   env=dict(os.environ, HF_HUB_OFFLINE="1"))

    async def run():
        async with Client(params) as client:
            cards = await client.call_tool("search_catalog", {"query": "revenue reporting"})
            answer = await client.call_tool("ask", {"question": "Who owns the revenue reporting product?"})
            return cards, answer

    cards, answer = anyio.run(run)
    assert cards.structured_content["result"][0]["id"] == "finance.revenue-reporting"
    assert "Hannah Lindqvist" in answer.structured_content["text"]


def test_mcp_calls_are_counted_under_the_mcp_route(api):
    import httpx

    from tests.api.test_http_routes import counter

    def posts(text: str, status: str, route: str = "/mcp/") -> float:
        return counter(text, "meshrag_http_requests_total", method="POST", route=route, status=status)

    before = httpx.get(f"{api.url}/metrics").text
    httpx.post(f"{api.url}/mcp/", headers={"Authorization": "Bearer mr_nope_nope"},
               json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    anyio.run(_call, f"{api.url}/mcp/", {}, "search_catalog", {"query": ""})
    after = httpx.get(f"{api.url}/metrics").text
    assert posts(after, "401") == posts(before, "401") + 1
    assert posts(after, "200") >= posts(before, "200") + 3  # initialize, tools/list, tools/call
    assert posts(after, "200", "/") == posts(before, "200", "/")  # "/" is the web page's, never MCP's
