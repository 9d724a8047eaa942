"""POST /v1/ask with "stream": true: Server-Sent Events in order, consistent with the JSON answer."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, sse_events

pytestmark = pytest.mark.slow

QUESTION = "How does a product owner publish a new release?"


def test_ask_stream_event_order_and_content(api: Api):
    with api.client("ana") as c:
        with c.stream("POST", "/v1/ask", json={"question": QUESTION, "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            request_id = r.headers["x-request-id"]
            body = "".join(r.iter_text())
        plain = c.post("/v1/ask", json={"question": QUESTION}).json()
        record = c.get(f"/v1/provenance/{request_id}")

    events = sse_events(body)
    names = [name for name, _ in events]
    n_sentences = names.count("sentence")
    assert n_sentences >= 1
    assert names == ["retrieval"] + ["sentence"] * n_sentences + ["citations", "done"]

    retrieval = events[0][1]
    assert retrieval["request_id"] == request_id and retrieval["hits"]
    assert [h["rank"] for h in retrieval["hits"]] == list(range(1, len(retrieval["hits"]) + 1))
    assert all("text" not in h and len(h["snippet"]) <= 241 for h in retrieval["hits"])

    sentences = [data for name, data in events if name == "sentence"]
    assert [s["index"] for s in sentences] == list(range(n_sentences))
    citations = events[-2][1]
    markers = {m for s in sentences for m in s["markers"]}
    assert markers == {c["marker"] for c in citations["citations"]} and markers
    assert citations["answer"].split() == " ".join(s["rendered"] for s in sentences).split()
    assert not citations["abstained"] and citations["products"]

    done = events[-1][1]
    assert done["request_id"] == request_id and done["release_id"] == retrieval["release_id"]
    assert set(done["timings_ms"]) >= {"search", "answer", "provenance", "total"}

    # Same question, same release: the streamed answer is the JSON answer, and it was recorded.
    assert citations["answer"] == plain["answer"]["text"]
    assert [c["chunk_id"] for c in citations["citations"]] == [
        c["chunk_id"] for c in plain["answer"]["citations"]
    ]
    assert record.status_code == 200 and record.json()["answer"] == citations["answer"]


def test_ask_stream_abstention_and_errors_before_streaming(api: Api):
    with api.client() as c:
        abstained = sse_events(
            c.post("/v1/ask", json={"question": "What is the FY2025 bonus pool?", "stream": True}).text
        )
        bad = c.post("/v1/ask", json={"question": "x", "stream": True, "release": "rel-nope"})
    names = [n for n, _ in abstained]
    assert names == ["retrieval", "sentence", "citations", "done"]
    sentence = abstained[1][1]
    assert sentence["markers"] == [] and sentence["text"].startswith("Not found in the products you can read")
    assert abstained[2][1]["abstained"] and abstained[2][1]["citations"] == []
    assert bad.status_code == 404 and bad.headers["content-type"].startswith("application/json")
