"""Rate limits, quotas and the MCP bounds on the real app over real HTTP (uvicorn on loopback), on a
sample-mesh index built with the hash embedder (seconds, not the MiniLM session index).

Each anonymous caller here is its own loopback source address (127.0.0.N) and each keyed caller its
own key, so the tests do not share buckets. No test waits for a bucket to refill: the configured rate
(1 per minute) is slow next to any test, and no time is asserted."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.auth import create_key
from api.settings import ApiSettings
from indexing.pipeline import IndexPipeline
from indexing.settings import IndexSettings
from knowledge.settings import SAMPLE_MESH
from tests.api.conftest import serving

BURST = 3
KEYS = ("rest", "chat", "mcp", "spent", "fresh", "guessed", "inflight", "off", "web")
QUESTION = "Who owns the revenue reporting product?"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def mcp_call(tool: str, arguments: dict, rpc_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


# (method, path, body) of one request per entry point
REST = ("POST", "/v1/search", {"query": "net revenue", "k": 3})
CHAT = ("POST", "/v1/chat/completions", {"model": "meshrag-extractive", "messages": [{"role": "user", "content": QUESTION}]})
MCP = ("POST", "/mcp/", mcp_call("search_catalog", {"query": "revenue"}))


@pytest.fixture(scope="module")
def hash_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The sample mesh indexed with the hash embedder, and a keys file with one analyst key per name."""
    root = tmp_path_factory.mktemp("ratelimit")
    data_dir = root / "data"
    report = IndexPipeline(IndexSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH], embedder="hash")).run()
    assert report.published
    keys = {name: create_key(root / "api-keys.json", name, ["analyst"]).key for name in KEYS}
    return data_dir, keys


def _settings(data_dir: Path, **overrides) -> ApiSettings:
    return ApiSettings(data_dir=data_dir, mesh_roots=[SAMPLE_MESH], embedder="hash",
                       api_keys_file=data_dir.parent / "api-keys.json", **overrides)


@pytest.fixture(scope="module")
def limited(hash_index) -> Iterator[str]:
    """A server whose callers may send BURST requests, then 1 a minute."""
    data_dir, _ = hash_index
    settings = _settings(data_dir, rate_limit_keyed_burst=BURST, rate_limit_keyed_per_minute=1,
                         rate_limit_anon_burst=BURST, rate_limit_anon_per_minute=1)
    with serving(create_app(settings)) as url:
        yield url


@pytest.fixture
def own_server(hash_index, tmp_path: Path):
    """Start another server on a copy of the index (its own provenance log) with the given settings."""
    data_dir, _ = hash_index
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("provenance.sqlite*", "index.lock"))
    shutil.copy(data_dir.parent / "api-keys.json", tmp_path / "api-keys.json")
    return lambda **overrides: serving(create_app(_settings(copy, **overrides)))


def client(url: str, source: str = "127.0.0.1", key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers | MCP_HEADERS, timeout=60,
                        transport=httpx.HTTPTransport(local_address=source))


def send(c: httpx.Client, request: tuple[str, str, dict]) -> httpx.Response:
    method, path, body = request
    return c.request(method, path, json=body)


def assert_rate_limited(response: httpx.Response, setting: str, limit: str = "rate limit") -> None:
    assert response.status_code == 429, response.text
    retry = response.headers["Retry-After"]
    assert retry.isdigit() and int(retry) >= 1
    error = response.json()["error"]
    assert error["type"] == "rate_limited" and error["status"] == 429
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert limit in error["message"] and setting in error["message"] and f"{retry} s" in error["message"]


def exhaust(c: httpx.Client, request: tuple[str, str, dict]) -> httpx.Response:
    """Send BURST requests (each served) and one more; return the one more."""
    for _ in range(BURST):
        served = send(c, request)
        assert served.status_code == 200, served.text
    return send(c, request)


@pytest.mark.parametrize(
    ("request_", "source", "key"),
    [(REST, "127.0.0.2", "rest"), (CHAT, "127.0.0.3", "chat"), (MCP, "127.0.0.4", "mcp")],
    ids=["rest", "chat", "mcp"],
)
def test_429_after_the_burst_for_anonymous_and_keyed_callers(limited, hash_index, request_, source, key):
    _, keys = hash_index
    with client(limited, source) as anonymous:
        refused = exhaust(anonymous, request_)
        assert_rate_limited(refused, "MESHRAG_RATE_LIMIT_ANON_BURST")
        assert "anonymous" in refused.json()["error"]["message"]
        assert anonymous.get("/healthz").status_code == 200  # probes are never limited
        assert anonymous.get("/readyz").status_code == 200
    with client(limited, source, keys[key]) as keyed:  # same address, with a key: the key's own bucket
        refused = exhaust(keyed, request_)
        assert_rate_limited(refused, "MESHRAG_RATE_LIMIT_KEYED_BURST")
        assert f"API key {keys[key].split('_')[1]} " in refused.json()["error"]["message"]  # its public id
    metrics = httpx.get(f"{limited}/metrics").text
    assert 'meshrag_rate_limited_total{caller="anonymous",limit="burst"}' in metrics
    assert 'meshrag_rate_limited_total{caller="keyed",limit="burst"}' in metrics


def test_one_keys_exhaustion_limits_no_other_key_or_address(limited, hash_index):
    _, keys = hash_index
    with client(limited, "127.0.0.5", keys["spent"]) as spent:
        assert_rate_limited(exhaust(spent, REST), "MESHRAG_RATE_LIMIT_KEYED")
    with client(limited, "127.0.0.5", keys["fresh"]) as fresh:
        assert send(fresh, REST).status_code == 200
    with client(limited, "127.0.0.5") as anonymous:
        assert send(anonymous, REST).status_code == 200


def test_a_web_session_spends_its_keys_budget_and_stylesheets_cost_nothing(limited, hash_index):
    _, keys = hash_index
    with client(limited, "127.0.0.9") as browser:
        signed_in = browser.post("/signin", data={"api_key": keys["web"]})  # counts against the address
        assert signed_in.status_code == 303, signed_in.text
        for _ in range(3 * BURST):  # static files of the page: no data, not counted
            assert browser.get("/assets/app.css").status_code == 200
        for _ in range(BURST):
            assert browser.get("/signin").status_code == 200
        refused = browser.get("/signin")
        assert_rate_limited(refused, "MESHRAG_RATE_LIMIT_KEYED")
    # The page and the API share the key's budget: the same key from elsewhere is refused too.
    with client(limited, "127.0.0.10", keys["web"]) as api:
        assert_rate_limited(send(api, REST), "MESHRAG_RATE_LIMIT_KEYED")


def test_a_wrong_key_is_401_and_counts_against_its_address_only(limited, hash_index):
    _, keys = hash_index
    wrong = "mr_" + keys["guessed"].split("_")[1] + "_" + "x" * 40  # a real key id with a guessed secret
    with client(limited, "127.0.0.6", wrong) as guessing:
        for _ in range(BURST):
            r = send(guessing, REST)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert_rate_limited(send(guessing, REST), "MESHRAG_RATE_LIMIT_ANON")
        assert_rate_limited(send(guessing, MCP), "MESHRAG_RATE_LIMIT_ANON")
    with client(limited, "127.0.0.6") as anonymous:  # the guesses spent the address's budget
        assert_rate_limited(send(anonymous, REST), "MESHRAG_RATE_LIMIT_ANON")
    with client(limited, "127.0.0.6", keys["guessed"]) as owner:  # but not the key they guessed at
        assert send(owner, REST).status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_mcp_answers_get_and_delete_at_once_with_405(limited, method):
    with client(limited, "127.0.0.7") as c:
        # A GET asking for the event stream of server-initiated messages: refused, not held open.
        r = c.request(method, "/mcp/", headers={"Accept": "text/event-stream"})
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    error = r.json()["error"]
    assert error["type"] == "method_not_allowed" and error["request_id"] == r.headers["X-Request-ID"]
    assert "stateless" in error["message"] and "POST" in error["message"]


def test_mcp_requests_in_flight_per_caller_are_bounded(own_server, hash_index):
    """One caller's MCP request is held open mid-body; its next one is refused until the first ends."""
    _, keys = hash_index
    body = httpx.Request("POST", "http://x/mcp/", json=mcp_call("search_catalog", {"query": "revenue"})).content
    with own_server(rate_limit_mcp_concurrent=1, rate_limit_keyed_burst=1000) as url:
        port = int(url.rsplit(":", 1)[1])
        head = (f"POST /mcp/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {keys['inflight']}\r\n"
                f"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        held = socket.create_connection(("127.0.0.1", port))
        held.sendall(head + body[:10])  # the server is now waiting for the rest of this body
        refused = None
        with client(url, key=keys["inflight"]) as second:
            for _ in range(200):  # until the server has read the held request's head
                r = send(second, MCP)
                if r.status_code == 429:
                    refused = r
                    break
                assert r.status_code == 200
                threading.Event().wait(0.05)
            assert refused is not None, "the held request never counted as in flight"
            assert_rate_limited(refused, "MESHRAG_RATE_LIMIT_MCP_CONCURRENT", limit="in flight")
            held.sendall(body[10:])
            reply = b""
            while chunk := held.recv(65536):
                reply += chunk
            held.close()
            assert reply.startswith(b"HTTP/1.1 200") and b"revenue-reporting" in reply
            assert send(second, MCP).status_code == 200  # the first one has finished


def test_daily_quota(own_server):
    with own_server(rate_limit_anon_per_day=2) as url, client(url, "127.0.0.8") as c:
        assert [send(c, REST).status_code for _ in range(2)] == [200, 200]
        refused = send(c, REST)
        assert_rate_limited(refused, "MESHRAG_RATE_LIMIT_ANON_PER_DAY", limit="daily quota")
        assert int(refused.headers["Retry-After"]) <= 86_400  # at most until the next UTC midnight


def test_limits_switched_off_never_answer_429(own_server, hash_index, monkeypatch: pytest.MonkeyPatch):
    """MESHRAG_RATE_LIMIT=off, the documented switch for load tests, with limits that would refuse."""
    _, keys = hash_index
    for off in ("off", "0", "false"):
        monkeypatch.setenv("MESHRAG_RATE_LIMIT", off)
        assert ApiSettings().rate_limit is False
    monkeypatch.delenv("MESHRAG_RATE_LIMIT")
    with own_server(rate_limit=False, rate_limit_anon_burst=1, rate_limit_keyed_burst=1,
                    rate_limit_anon_per_day=1, rate_limit_mcp_concurrent=1) as url:
        for key in (None, keys["off"]):
            with client(url, "127.0.0.9", key) as c:
                statuses = {send(c, request).status_code for request in (REST, CHAT, MCP) for _ in range(BURST + 1)}
                assert statuses == {200}
