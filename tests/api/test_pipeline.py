"""One ask pipeline behind every entry point: the same limits and errors through REST and MCP, request
ids scoped per key, and injection flags on every response that carries chunk text."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from tests.api.conftest import sse_events
from tests.api.test_mcp import _call

pytestmark = pytest.mark.slow

# The carrier notice in operations.fulfilment-ops carries a planted "ignore all previous instructions".
FLAGGED_QUESTION = "Are our rates or claims affected by the Basin Express pickup change?"


def _tool_error(result) -> dict:
    """The error object of a failed tool call (the SDK prefixes the tool's message with its own words)."""
    assert result.is_error
    text = result.content[0].text
    return json.loads(text[text.index("{"):])["error"]


def _bearer(api, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.keys[name]}"}


@pytest.mark.parametrize("tool,field,rest_route,rest_field", [
    ("ask", "question", "/v1/ask", "question"),
    ("search", "query", "/v1/search", "query"),
])
def test_mcp_refuses_an_over_long_question_like_rest(api, tool, field, rest_route, rest_field):
    limit = api.app.state.settings.max_question_chars
    text = "why " * (limit // 4 + 10)
    rest = api.client("ana").post(rest_route, json={rest_field: text})
    assert rest.status_code == 422
    rest_error = rest.json()["error"]

    result = anyio.run(_call, f"{api.url}/mcp/", _bearer(api, "ana"), tool, {field: text})
    error = _tool_error(result)
    assert (error["status"], error["type"], error["message"]) == (422, rest_error["type"], rest_error["message"])
    assert error["fields"][0]["loc"] == ["arguments", field]


def test_mcp_refuses_k_over_the_limit_like_rest(api):
    limit = api.app.state.settings.max_k
    rest = api.client("ana").post("/v1/search", json={"query": "refund policy", "k": limit + 1})
    result = anyio.run(_call, f"{api.url}/mcp/", _bearer(api, "ana"), "search",
                       {"query": "refund policy", "k": limit + 1})
    error = _tool_error(result)
    assert rest.status_code == 422 and error["status"] == 422
    assert error["message"] == rest.json()["error"]["message"]


def test_mcp_body_over_the_size_limit_is_413_like_rest(api):
    big = "x" * (api.app.state.settings.max_body_bytes + 10)
    rest = httpx.post(f"{api.url}/v1/ask", json={"question": big}, headers=_bearer(api, "ana"), timeout=60)
    mcp = httpx.post(f"{api.url}/mcp/", headers=_bearer(api, "ana") | {"Accept": "application/json, text/event-stream"},
                     json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "ask", "arguments": {"question": big}}}, timeout=60)
    assert rest.status_code == mcp.status_code == 413
    assert mcp.json()["error"]["type"] == rest.json()["error"]["type"] == "request_too_large"


def test_another_keys_request_id_reveals_nothing(api):
    rid = "shared-client-id-7"
    question = {"question": "Who owns the mesh handbook?"}
    first = api.client("ana").post("/v1/ask", json=question, headers={"X-Request-ID": rid})
    assert first.status_code == 200 and first.json()["request_id"] == rid

    # Another key choosing the same id is answered as if the id were new: no 409, no trace of the first.
    other = api.client("ana2").post("/v1/ask", json={"question": "How fresh is the mesh handbook?"},
                                    headers={"X-Request-ID": rid})
    assert other.status_code == 200 and other.json()["request_id"] == rid
    mine = api.client("ana2").get(f"/v1/provenance/{rid}").json()
    assert mine["question"] == "How fresh is the mesh handbook?" and mine["principal"]["id"] == "ana2"
    assert not {"seq", "prev_request_id", "prev_hash"} & mine.keys()  # chain links: operators only
    theirs = api.client("ana").get(f"/v1/provenance/{rid}").json()
    assert theirs["question"] == question["question"]

    # Reusing one's own id is a conflict (409) on every entry point that takes one.
    again = api.client("ana").post("/v1/ask", json=question, headers={"X-Request-ID": rid})
    assert again.status_code == 409 and again.json()["error"]["type"] == "conflict"
    chat = api.client("ana").post("/v1/chat/completions", headers={"X-Request-ID": rid}, json={
        "model": "meshrag-extractive", "messages": [{"role": "user", "content": question["question"]}]})
    assert chat.status_code == 409


def _flagged_chunks(api) -> set[str]:
    hits = api.client("ana").post("/v1/search", json={"query": FLAGGED_QUESTION, "k": 8}).json()["hits"]
    flagged = {h["chunk_id"] for h in hits if "prompt_injection" in h["flags"]}
    assert flagged, "the planted carrier notice should be retrieved for this question"
    return flagged


def _check_flags(items: list[dict], flagged: set[str]) -> None:
    assert any(c["chunk_id"] in flagged for c in items), "expected the flagged chunk among them"
    for c in items:
        assert ("prompt_injection" in c["flags"]) == (c["chunk_id"] in flagged)


def test_injection_flags_on_ask_sse_chat_and_mcp(api):
    flagged = _flagged_chunks(api)
    body = {"question": FLAGGED_QUESTION}

    ask = api.client("ana").post("/v1/ask", json=body).json()
    _check_flags(ask["answer"]["citations"], flagged)
    _check_flags(ask["retrieval"], flagged)  # the snippets carry chunk text too

    stream = api.client("ana").post("/v1/ask", json=body | {"stream": True})
    events = dict(sse_events(stream.text))
    _check_flags(events["citations"]["citations"], flagged)
    _check_flags(events["retrieval"]["hits"], flagged)

    chat = api.client("ana").post("/v1/chat/completions", json={
        "model": "meshrag-extractive", "messages": [{"role": "user", "content": FLAGGED_QUESTION}]}).json()
    _check_flags(chat["meshrag"]["citations"], flagged)

    mcp = anyio.run(_call, f"{api.url}/mcp/", _bearer(api, "ana"), "ask", body)
    _check_flags(mcp.structured_content["citations"], flagged)


@pytest.mark.parametrize("query", ["revenue", "who owns churn", "fulfilment carrier pickups", "zzz nothing"])
def test_catalog_search_is_one_rule_for_rest_and_mcp(api, query):
    rest = api.client("ana").get("/v1/catalog", params={"q": query}).json()["products"]
    mcp = anyio.run(_call, f"{api.url}/mcp/", _bearer(api, "ana"), "search_catalog", {"query": query})
    assert [(p["id"], p["match"]) for p in mcp.structured_content["result"]] == \
        [(p["id"], p["match"]) for p in rest]


def test_personal_data_typed_in_a_question_is_not_stored(api):
    question = "Has Dana Kowalski at 41 Alder Street, Portland OR 97214 (dana.k@example.com) been refunded?"
    asked = api.client("ana").post("/v1/ask", json={"question": question}, headers={"X-Request-ID": "pii-q-1"})
    assert asked.status_code == 200
    stored = api.client("ana").get("/v1/provenance/pii-q-1").json()["question"]
    for personal in ("Dana Kowalski", "97214", "dana.k@example.com"):
        assert personal not in stored
    assert "<PERSON>" in stored and "<EMAIL_ADDRESS>" in stored
    # A name the catalog publishes (a product owner) is kept as written.
    owner = api.client("ana").post("/v1/ask", json={"question": "What does Hannah Lindqvist own?"},
                                   headers={"X-Request-ID": "pii-q-2"})
    assert owner.status_code == 200
    assert api.client("ana").get("/v1/provenance/pii-q-2").json()["question"] == "What does Hannah Lindqvist own?"
