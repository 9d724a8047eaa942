"""Product versions over HTTP: pins and as-of dates in /v1/search and /v1/ask, their errors, and the record."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.slow

PRODUCT = "customer.subscription-metrics"


def test_a_pinned_ask_answers_from_the_old_version_and_records_the_pin(api: Api):
    with api.client("ana") as c:
        r = c.post("/v1/ask", json={"question": "On which day does a failed card payment count as churn?",
                                    "products": [f"{PRODUCT}@1.0.0"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"]["citations"]
        assert {cit["product_version"] for cit in body["answer"]["citations"]} == {"1.0.0"}
        record = c.get(f"/v1/provenance/{body['request_id']}").json()
    assert record["retrieval_params"]["filters"]["products"] == [f"{PRODUCT}@1.0.0"]
    assert {r["product_version"] for r in record["retrieved"]} == {"1.0.0"}


def test_search_as_of_serves_the_version_current_then(api: Api):
    with api.client("ana") as c:
        before = c.post("/v1/search", json={"query": "failed payment churn", "products": [PRODUCT],
                                            "as_of": "2026-06-30"})
        now = c.post("/v1/search", json={"query": "failed payment churn", "products": [PRODUCT]})
    assert before.status_code == now.status_code == 200
    assert {h["product_version"] for h in before.json()["hits"]} == {"1.0.0"}
    assert {h["product_version"] for h in now.json()["hits"]} == {"2.0.0"}
    assert before.json()["params"]["as_of"] == "2026-06-30"


def test_an_unknown_version_is_404_naming_the_versions(api: Api):
    with api.client("ana") as c:
        r = c.post("/v1/search", json={"query": "churn", "products": [f"{PRODUCT}@3.0.0"]})
    assert r.status_code == 404
    assert "has versions 1.0.0, 2.0.0" in r.json()["error"]["message"]


def test_a_version_of_an_unreadable_product_is_the_missing_product_404(api: Api):
    with api.client("sam") as c:  # public products only
        pinned = c.post("/v1/ask", json={"question": "churn?", "products": [f"{PRODUCT}@1.0.0"]})
        missing = c.post("/v1/ask", json={"question": "churn?", "products": ["customer.nope"]})
    assert pinned.status_code == missing.status_code == 404
    a, b = pinned.json()["error"], missing.json()["error"]
    assert a["type"] == b["type"]
    assert a["message"].replace(PRODUCT, "X") == b["message"].replace("customer.nope", "X")
    assert "1.0.0" not in a["message"]


def test_malformed_pins_and_dates_are_422_naming_the_field(api: Api):
    with api.client("ana") as c:
        bad_date = c.post("/v1/ask", json={"question": "churn?", "as_of": "last June"})
        bad_pin = c.post("/v1/search", json={"query": "churn", "products": [f"{PRODUCT}@"]})
    assert bad_date.status_code == bad_pin.status_code == 422
    assert bad_date.json()["error"]["fields"][0]["loc"] == ["body", "as_of"]
    assert bad_pin.json()["error"]["fields"][0]["loc"] == ["body", "products", 0]


def test_the_release_and_the_product_page_still_list_current_versions(api: Api):
    with api.client("ana") as c:
        release = c.get("/v1/releases/current")
        product = c.get(f"/v1/catalog/{PRODUCT}")
    assert release.status_code == product.status_code == 200
    entries = [p for p in release.json()["products"] if p["product_id"] == PRODUCT]
    assert [e["product_version"] for e in entries] == ["2.0.0"]
