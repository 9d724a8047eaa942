"""The three answer outcomes (answered, possibly relevant, abstained) through every door: REST JSON and
its stream, chat's `meshrag` extension, MCP `ask`, metrics and provenance. Each outcome is forced by
serving an answer model whose thresholds decide it (a copy of the shipped artefact, re-hashed); and
the service refuses to start on a missing or tampered MESHRAG_ANSWER_MODEL."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.auth import create_key
from api.settings import ApiSettings
from knowledge.errors import ConfigError
from knowledge.settings import SAMPLE_MESH
from retrieval.answer.model import DEFAULT_MODEL, content_hash
from tests.api.conftest import Api, serving, sse_events

pytestmark = pytest.mark.slow

MODEL = "meshrag-extractive"
# A who-question about content (answered ones carry `short`); "who owns the … product?" is a discovery
# question, answered from catalog facts without the answer model (retrieval/discovery/).
QUESTION = "Who approves requests for the CUSTOMER_ANALYTICS_READ Snowflake role?"
OWNER = "Priya Raman"
FLAG = "No confirmed answer in the products you can read. Possibly relevant passages:"
# Thresholds that decide each outcome whatever the scores: answerability is a probability in [0, 1]
# and retrieval strength a cosine in [-1, 1].
FORCING = {
    "answered": {"answer": 0.0},
    "possibly_relevant": {"answer": 1.01, "relevant": -1.0},
    "abstained": {"answer": 1.01, "relevant": 1.01},
}


def counter(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when it is not exposed yet)."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def write_answer_model(path: Path, **thresholds: float) -> Path:
    """The shipped answer model with other thresholds, its sha256 recomputed (as a refit would)."""
    payload = json.loads(DEFAULT_MODEL.read_text("utf-8"))
    payload["thresholds"] = payload["thresholds"] | thresholds
    payload["sha256"] = content_hash(payload)
    path.write_text(json.dumps(payload, indent=2), "utf-8")
    return path


@pytest.fixture(scope="module")
def outcomes_data_dir(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the sample index for the module's apps (they run one after another)."""
    target = tmp_path_factory.mktemp("outcomes") / "data"
    shutil.copytree(sample_index, target, ignore=shutil.ignore_patterns("provenance.sqlite*", "index.lock"))
    return target


@pytest.fixture(scope="module", params=list(FORCING))
def forced(request: pytest.FixtureRequest, outcomes_data_dir: Path) -> Iterator[tuple[str, Api]]:
    """(outcome, the app whose answer model forces it). Module-scoped per outcome, so pytest runs each
    outcome's tests together and only one of these apps (and its MiniLM) is up at a time."""
    outcome: str = request.param
    root = outcomes_data_dir.parent
    model = write_answer_model(root / f"answer-model-{outcome}.json", **FORCING[outcome])
    keys_file = root / "api-keys.json"
    keys = {"ana": create_key(keys_file, f"ana-{outcome}", ["analyst"]).key}
    settings = ApiSettings(data_dir=outcomes_data_dir, mesh_roots=[SAMPLE_MESH], api_keys_file=keys_file,
                           answer_model=model, precompute_answer_vectors=False)
    app = create_app(settings)
    with serving(app) as url:
        yield outcome, Api(url=url, app=app, data_dir=outcomes_data_dir, keys=keys)


def check_answer(outcome: str, answer: dict[str, Any]) -> None:
    """What each outcome promises, on any door's answer dict (REST `answer`, MCP `ask`)."""
    assert answer["outcome"] == outcome, answer["text"]
    assert answer["abstained"] == (outcome == "abstained")
    assert answer["decision"]["thresholds"]["answer"] == FORCING[outcome]["answer"]
    assert answer["decision"]["answer_model"].startswith("answer-lr@")
    if outcome == "answered":
        check_short(answer["short"], answer["citations"])
        assert answer["citations"] and answer["closest_products"] == []
    elif outcome == "possibly_relevant":
        assert answer["text"].startswith(FLAG) and answer["citations"] and answer["short"] is None
        assert answer["closest_products"]
        for cit in answer["citations"]:
            assert f"[{cit['marker']}]" in answer["text"]
    else:
        assert answer["citations"] == [] and answer["short"] is None
        assert answer["closest_products"] and "customer.subscription-metrics" in answer["closest_products"]


def check_short(short: dict[str, Any] | None, citations: list[dict[str, Any]]) -> None:
    assert short is not None and short["kind"] == "person" and short["text"] == OWNER
    cited = citations[short["marker"] - 1]
    assert cited["marker"] == short["marker"]
    assert cited["text"][short["start"] : short["end"]] == short["text"]


def test_rest_json_stream_provenance_and_metrics(forced: tuple[str, Api]):
    outcome, api = forced
    with api.client("ana") as c:
        before = c.get("/metrics").text
        r = c.post("/v1/ask", json={"question": QUESTION})
        assert r.status_code == 200, r.text
        body = r.json()
        check_answer(outcome, body["answer"])
        if outcome == "answered":
            assert body["products"][0]["id"] == "customer.subscription-metrics"

        record = c.get(f"/v1/provenance/{body['request_id']}").json()
        assert record["record_version"] >= 2 and record["outcome"] == outcome
        assert record["short"] == body["answer"]["short"] and record["decision"] == body["answer"]["decision"]

        streamed = c.post("/v1/ask", json={"question": QUESTION, "stream": True})
        after = c.get("/metrics").text
    events = dict(sse_events(streamed.text))
    citations = events["citations"]
    assert citations["outcome"] == outcome and citations["answer"] == body["answer"]["text"]
    assert citations["short"] == body["answer"]["short"]
    assert citations["abstained"] == (outcome == "abstained") and "done" in events

    def moved(name: str, **labels: str) -> float:
        return counter(after, name, endpoint="ask", **labels) - counter(before, name, endpoint="ask", **labels)

    assert moved("meshrag_answer_outcomes_total", outcome=outcome) == 2  # the JSON ask and the streamed one
    assert moved("meshrag_answers_total") == 2
    assert moved("meshrag_abstentions_total") == (2 if outcome == "abstained" else 0)


def test_chat_extension_and_message(forced: tuple[str, Api]):
    outcome, api = forced
    with api.client("ana") as c:
        r = c.post("/v1/chat/completions",
                   json={"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200, r.text
    ext = r.json()["meshrag"]
    text = r.json()["choices"][0]["message"]["content"]
    assert ext["outcome"] == outcome and ext["abstained"] == (outcome == "abstained")
    body, _, sources = text.partition("\n\nSources:\n")
    if outcome == "answered":
        check_short(ext["short"], ext["citations"])
    else:
        assert ext["short"] is None
    if outcome == "abstained":
        assert ext["citations"] == [] and not sources
    else:
        assert ext["citations"] and all(f"[{cit['marker']}] " in sources for cit in ext["citations"])
    assert body.startswith(FLAG) == (outcome == "possibly_relevant")


async def _mcp_ask(url: str, key: str, question: str) -> Any:
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        return await client.call_tool("ask", {"question": question})


def test_mcp_ask(forced: tuple[str, Api]):
    outcome, api = forced
    result = anyio.run(_mcp_ask, f"{api.url}/mcp/", api.keys["ana"], QUESTION)
    assert not result.is_error
    answer = result.structured_content
    check_answer(outcome, answer)
    assert answer["request_id"]


# ----------------------------------------------------------------------------- start-up refusals
def broken_model(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A MESHRAG_ANSWER_MODEL value the service must refuse, and what its error says."""
    if kind == "missing":
        return tmp_path / "nope" / "answer-model.json", "answer model not found at"
    tampered = write_answer_model(tmp_path / "tampered.json", answer=0.5)
    payload = json.loads(tampered.read_text("utf-8"))
    payload["thresholds"]["answer"] = 0.0  # edited after the hash was taken
    tampered.write_text(json.dumps(payload), "utf-8")
    return tampered, "does not match its recorded sha256"


async def start(app: FastAPI) -> None:
    async with app.router.lifespan_context(app):
        pytest.fail("the app started")


@pytest.mark.parametrize("kind", ["missing", "tampered"])
def test_app_refuses_to_start_on_a_bad_answer_model(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch):
    path, message = broken_model(tmp_path, kind)
    monkeypatch.setenv("MESHRAG_ANSWER_MODEL", str(path))
    settings = ApiSettings(data_dir=tmp_path / "data", mesh_roots=[SAMPLE_MESH], embedder="hash")
    assert settings.answer_model == path
    with pytest.raises(ConfigError) as raised:
        asyncio.run(start(create_app(settings)))
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "fit_answer_model" in str(raised.value)  # and how to rebuild it


@pytest.mark.parametrize("kind", ["missing", "tampered"])
def test_serve_refuses_to_start_on_a_bad_answer_model(tmp_path: Path, kind: str):
    path, message = broken_model(tmp_path, kind)
    env = os.environ | {"MESHRAG_ANSWER_MODEL": str(path), "MESHRAG_EMBEDDER": "hash", "COLUMNS": "400"}
    done = subprocess.run([sys.executable, "-m", "api.cli.main", "serve", "--data-dir", str(tmp_path / "data")],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and str(path) in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "releases").exists()  # refused before indexing anything
