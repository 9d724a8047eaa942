"""The app before anything is indexed, the lifespan extension hook (for the MCP mount), and CORS."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from api.app import create_app
from api.settings import ApiSettings
from knowledge.settings import SAMPLE_MESH


def _settings(tmp_path: Path, **overrides) -> ApiSettings:
    return ApiSettings(data_dir=tmp_path / "data", mesh_roots=[SAMPLE_MESH], embedder="hash", **overrides)


def test_no_release_yet_is_not_ready_and_404_with_a_hint(tmp_path: Path):
    app = create_app(_settings(tmp_path))
    entered: list[str] = []

    @asynccontextmanager
    async def extension(a: FastAPI):
        entered.append("in" if a.state.service is not None else "no service")
        yield
        entered.append("out")

    app.state.lifespan_extensions.append(extension)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            assert entered == ["in"]
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://meshrag") as c:
                assert (await c.get("/healthz")).status_code == 200
                ready = await c.get("/readyz")
                assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
                assert ready.json()["current_release"] is None
                assert "meshrag index" in ready.json()["problems"][0]
                ask = await c.post("/v1/ask", json={"question": "What is a release?"})
                assert ask.status_code == 404 and "meshrag index" in ask.json()["error"]["message"]
                assert (await c.get("/v1/releases")).json() == {"current": None, "releases": []}
        assert entered == ["in", "out"]

    asyncio.run(scenario())


def test_cors_is_off_unless_configured(tmp_path: Path):
    preflight = {"Origin": "https://tools.example", "Access-Control-Request-Method": "POST"}

    async def options(app: FastAPI) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://meshrag") as c:
            return await c.options("/v1/ask", headers=preflight)

    off = asyncio.run(options(create_app(_settings(tmp_path))))
    assert "access-control-allow-origin" not in off.headers and off.headers["x-request-id"]
    on = asyncio.run(options(create_app(_settings(tmp_path, cors_origins=["https://tools.example"]))))
    assert on.status_code == 200 and on.headers["access-control-allow-origin"] == "https://tools.example"
    assert on.headers["x-request-id"]
