"""A closed-loop HTTP load generator for benchmarks/serve.py: `concurrency` workers each send the next
request as soon as their previous response has arrived, until every body has been sent once (a JSON
body is POSTed; None means a GET without one).

Standard library and httpx only, so the process generating load stays small and never shares an
interpreter (or its GIL) with a server under test. Latency is measured on the client, from just before
the request is written to the moment the whole response body has been read; JSON is decoded after the
clock stops.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Sample:
    """One request: its client-side latency, status (or exception name) and the server's own timings."""

    seconds: float
    status: int | str
    server_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class RunStats:
    """Latency percentiles (ms, successful requests only), throughput and errors of one run."""

    requests: int
    errors: int
    statuses: dict[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    rps: float
    wall_s: float
    server_ms: dict[str, float]  # median of each key of the responses' `timings_ms`
    load_before: float
    load_after: float
    first_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95, p99 by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return (float("nan"),) * 3
    if len(values) == 1:
        return (values[0],) * 3
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def summarise(samples: Sequence[Sample], wall_s: float, load_before: float, load_after: float,
              first_error: str = "") -> RunStats:
    ok = [s.seconds * 1000 for s in samples if s.ok]
    p50, p95, p99 = percentiles(ok)
    keys = sorted({k for s in samples if s.ok for k in s.server_ms})
    server = {k: round(statistics.median([s.server_ms[k] for s in samples if s.ok and k in s.server_ms]), 3)
              for k in keys}
    statuses = Counter(str(s.status) for s in samples)
    return RunStats(
        requests=len(samples), errors=sum(not s.ok for s in samples), statuses=dict(sorted(statuses.items())),
        p50_ms=round(p50, 3), p95_ms=round(p95, 3), p99_ms=round(p99, 3),
        mean_ms=round(statistics.fmean(ok), 3) if ok else float("nan"), max_ms=round(max(ok, default=0.0), 3),
        rps=round(len(ok) / wall_s, 3) if wall_s else float("nan"), wall_s=round(wall_s, 3),
        server_ms=server, load_before=load_before, load_after=load_after, first_error=first_error,
    )


async def _closed_loop(url: str, bodies: Sequence[dict[str, Any] | None], concurrency: int,
                       headers: dict[str, str], timeout_s: float) -> tuple[list[Sample], float, str]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    samples: list[Sample] = []
    first_error: list[str] = []
    queue = iter(bodies)  # workers share one iterator: each body is sent exactly once

    async def worker(client: httpx.AsyncClient) -> None:
        for body in queue:
            t0 = time.perf_counter()
            try:
                if body is None:
                    response = await client.get(url, headers=headers)
                else:
                    response = await client.post(url, json=body, headers=headers)
                seconds = time.perf_counter() - t0
            except httpx.HTTPError as exc:
                samples.append(Sample(time.perf_counter() - t0, type(exc).__name__))
                first_error.append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code != 200:
                samples.append(Sample(seconds, response.status_code))
                first_error.append(f"HTTP {response.status_code}: {response.text[:300]}")
                continue
            timings = response.json().get("timings_ms") or {}
            samples.append(Sample(seconds, 200, {k: float(v) for k, v in timings.items()}))

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        t_start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t_start
    return samples, wall, first_error[0] if first_error else ""


def run_load(url: str, bodies: Sequence[dict[str, Any] | None], concurrency: int, *,
             headers: dict[str, str] | None = None, timeout_s: float = 600.0) -> RunStats:
    """Send every body once to `url` from `concurrency` workers; the load average (1 min) is read just
    before and just after."""
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency} must be >= 1")
    before = load1()
    samples, wall, first_error = asyncio.run(_closed_loop(url, bodies, concurrency, headers or {}, timeout_s))
    return summarise(samples, wall, before, load1(), first_error)
