"""/docs and /redoc work without a network: every script, stylesheet and icon they load is served by
the app itself (from the `fastapi-offline` package), none from a CDN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from knowledge.settings import SAMPLE_MESH
from tests.api.conftest import serving

ASSET = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("docs") / "data"
    with serving(create_app(ApiSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH], embedder="hash"))) as base:
        yield base


@pytest.mark.parametrize(
    ("page", "script", "marker"),
    [("/docs", "swagger-ui-bundle.js", "SwaggerUIBundle"), ("/redoc", "redoc.standalone.js", "Redoc")],
)
def test_docs_pages_load_only_same_origin_assets(url: str, page: str, script: str, marker: str):
    with httpx.Client(base_url=url, timeout=60) as c:
        html = c.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assets = ASSET.findall(html.text)
        assert any(Path(a).name == script for a in assets), assets
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), f"{page} loads {asset} from elsewhere"
            served = c.get(asset)
            assert served.status_code == 200, asset
            if asset.endswith(".js"):
                assert "javascript" in served.headers["content-type"] and marker in served.text
            elif asset.endswith(".css"):
                assert served.headers["content-type"].startswith("text/css")
        assert "http://" not in html.text.replace(url, "") and "https://" not in html.text  # no fonts either
        assert c.get("/openapi.json").status_code == 200  # what the page renders


def test_docs_pages_stay_out_of_the_api_document():
    paths = create_app(ApiSettings()).openapi()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
