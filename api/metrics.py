"""Prometheus metrics of one app, in its own CollectorRegistry (two apps in one process, as in tests or
a mounted sub-app, never share or clash).

Several worker processes (`meshrag serve --workers N`): the serve command sets PROMETHEUS_MULTIPROC_DIR
before any worker imports prometheus_client, so every worker writes its values to files there, and
/metrics, whichever worker answers it, sums the files of all workers (counters and histograms add up).
A gauge must then say how its workers' values combine (`multiprocess_mode`); there is none yet.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from retrieval.service import AskResult
from retrieval.types import SearchResult

# Seconds; an ask on the sample mesh takes ~0.05-0.5 s on a laptop, an LLM answer seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """Request counts and latencies by route template and status, and what the ask flow did."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Read once, as prometheus_client reads it once when imported to decide where values go.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        labels = ("method", "route", "status")
        self.requests = Counter(
            "meshrag_http_requests_total",
            "HTTP requests by route template and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "meshrag_http_request_duration_seconds",
            "HTTP request latency (until the last body byte) by route template and status.",
            labels,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.retrieval = Histogram(
            "meshrag_retrieval_duration_seconds",
            "Hybrid retrieval time per search or ask.",
            ("endpoint",),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.answer = Histogram(
            "meshrag_answer_duration_seconds",
            "Answer stage time per ask (incl. citation checks).",
            ("endpoint",),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "meshrag_answers_total", "Answers returned, by endpoint.", ("endpoint",), registry=self.registry
        )
        self.outcomes = Counter(
            "meshrag_answer_outcomes_total",
            "Answers returned, by endpoint and outcome (answered, possibly_relevant, abstained).",
            ("endpoint", "outcome"),
            registry=self.registry,
        )
        self.abstentions = Counter(
            "meshrag_abstentions_total",
            "Answers that abstained (the readable products do not support an answer).",
            ("endpoint",),
            registry=self.registry,
        )
        self.citations = Counter(
            "meshrag_citations_total", "Verified citations returned.", ("endpoint",), registry=self.registry
        )
        self.citations_dropped = Counter(
            "meshrag_citations_dropped_total",
            "Citation markers removed as unresolvable or unsupported.",
            ("endpoint",),
            registry=self.registry,
        )
        self.store_unavailable = Counter(
            "meshrag_store_unavailable_total",
            "Requests answered 503 because a store could not be reached.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "meshrag_rate_limited_total",
            "Requests refused with 429, by limit (burst, daily, concurrency) and caller (keyed, anonymous).",
            ("limit", "caller"),
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def observe_search(self, endpoint: str, result: SearchResult) -> None:
        self.retrieval.labels(endpoint).observe(result.timings_ms.get("total", 0.0) / 1000)

    def observe_ask(self, endpoint: str, result: AskResult) -> None:
        self.retrieval.labels(endpoint).observe(result.timings_ms.get("search", 0.0) / 1000)
        self.answer.labels(endpoint).observe(result.timings_ms.get("answer", 0.0) / 1000)
        answer = result.answer
        self.answers.labels(endpoint).inc()
        self.outcomes.labels(endpoint, answer.outcome).inc()
        if answer.abstained:
            self.abstentions.labels(endpoint).inc()
        self.citations.labels(endpoint).inc(len(answer.citations))
        self.citations_dropped.labels(endpoint).inc(answer.dropped_citations)

    def exposition(self) -> bytes:
        """This process's metrics, or with several workers the sum over all of them."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=self.multiprocess_dir)
        return generate_latest(combined)
