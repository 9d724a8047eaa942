"""The official `openai` client, unchanged, against the real server: plain and streamed completions
with citations in the text and in the `meshrag` extension, follow-ups, models, errors."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests.api.conftest import PUBLIC, Api, sse_events

pytestmark = pytest.mark.slow

MODEL = "meshrag-extractive"


def client(api: Api, principal: str | None = "ana") -> openai.OpenAI:
    key = api.keys[principal] if principal else "no-key"
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key=key, max_retries=0, timeout=120)


def test_models_lists_the_one_model(api: Api):
    models = client(api).models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_plain_completion_cites_in_text_and_extension(api: Api):
    completion = client(api).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Who owns the net revenue product?"},
        ],
    )
    assert completion.object == "chat.completion" and completion.model == MODEL
    text = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.role == "assistant"
    ext = completion.model_extra["meshrag"]
    assert ext["citations"] and not ext["abstained"]
    assert completion.id == f"chatcmpl-{ext['request_id']}"
    body, _, sources = text.partition("\n\nSources:\n")
    for cit in ext["citations"]:
        assert f"[{cit['marker']}]" in body
        assert (
            f"[{cit['marker']}] {cit['product_id']} v{cit['product_version']} — {cit['document']}" in sources
        )
    assert "finance.revenue-reporting" in {c["product_id"] for c in ext["citations"]}
    assert ext["question"] == "Who owns the net revenue product?" and not ext["rewritten"]
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.keys['ana']}"}) as c:
        record = c.get(f"/v1/provenance/{ext['request_id']}").json()
    assert record["question"] == ext["question"]


def test_streamed_completion_matches_plain(api: Api):
    messages = [{"role": "user", "content": "What is a knowledge product?"}]
    oa = client(api)
    plain = oa.chat.completions.create(model=MODEL, messages=messages)
    chunks = list(oa.chat.completions.create(model=MODEL, messages=messages, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices[0].delta.content]) >= 2  # streamed in pieces
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and all(
        c.choices[0].finish_reason is None for c in chunks[:-1]
    )
    ext = last.model_extra["meshrag"]
    assert ext["citations"] == plain.model_extra["meshrag"]["citations"]
    assert re.search(r"\[1\]", text) and "\n\nSources:\n[1] " in text

    # On the wire: OpenAI's SSE format, ending with `data: [DONE]`.
    with httpx.Client(base_url=api.url, timeout=120) as c:
        raw = c.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, "stream": True}).text
    events = sse_events(raw)
    assert events[-1] == ("message", "[DONE]") and all(name == "message" for name, _ in events)


def test_follow_up_is_rewritten_from_the_previous_user_turn(api: Api):
    completion = client(api).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Who owns the mesh handbook?"},
            {"role": "assistant", "content": "Marguerite Okafor of Data Platform [1]."},
            {"role": "user", "content": "How fresh is it?"},
        ],
    )
    ext = completion.model_extra["meshrag"]
    assert ext["rewritten"] and ext["rewrite_rule"] == "pronoun"
    assert ext["question"] == "How fresh is the mesh handbook?"
    assert PUBLIC in {c["product_id"] for c in ext["citations"]}
    assert "90 days" in completion.choices[0].message.content


def test_errors_reach_the_client_as_openai_errors(api: Api):
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai.OpenAI(
            base_url=f"{api.url}/v1", api_key="mr_ffffffffffff_" + "x" * 43, max_retries=0
        ).models.list()
    assert "not valid" in wrong.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        client(api).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert MODEL in unknown.value.message
    with pytest.raises(openai.UnprocessableEntityError) as last_not_user:
        client(api).chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "hi"}])
    assert "last message" in last_not_user.value.message
    with pytest.raises(openai.UnprocessableEntityError) as too_long:
        client(api).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q" * 2001}])
    assert "2000" in too_long.value.message


def test_anonymous_chat_reads_public_only(api: Api):
    with httpx.Client(base_url=api.url, timeout=120) as c:
        r = c.post(
            "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": "What is the midpoint salary for an L4 software engineer in zone A?",
                    }
                ],
            },
        )
    ext = r.json()["meshrag"]
    assert ext["abstained"] and ext["citations"] == []
    assert r.json()["choices"][0]["message"]["content"].startswith("Not found in the products you can read")
