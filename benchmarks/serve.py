"""Serving latency and throughput of `/v1/search` and `/v1/ask`, beside a plain LangChain baseline.

    python benchmarks/serve.py [--data-dir DIR] [--concurrency 1,8,32] [--endpoints search,ask]
                               [--questions N] [--repeat N] [--warmup N] [--floor N] [--json OUT]
                               [--store faiss,pgvector] [--workers 1,2] [--dsn DSN] [--pg-schema NAME]

Everything runs on loopback, each server in its own process, the load generator (benchmarks/loadgen.py,
httpx, closed loop) in this one:
1. `meshrag index --data-dir DIR` indexes the bundled sample mesh (default DIR: a temporary folder,
   removed afterwards); in a DIR already indexed it finds every version built and changes nothing.
2. `meshrag keys create --role analyst` writes a key to a temporary key file that the server reads
   (MESHRAG_API_KEYS_FILE); every request carries it, so both servers search the analyst's 5 products.
3. `meshrag serve --data-dir DIR --port P`, with all its defaults (embedder and query runtime, store,
   extractive answerer, threads, log level, as MESHRAG_* in this environment leave them). It counts as
   started when /readyz answers 200; then the script waits until /readyz reports no background pass
   running (`answer_vectors`: the passages the answerer compares questions with, embedded once per
   release into the data dir's embedding cache), so that pass never competes with measured requests.
4. benchmarks/langchain_app.py: the baseline: HuggingFaceEmbeddings + LangChain FAISS over the same
   chunk texts of the same release (read from the release's chunk versions), dense top 8; its /ask is
   retrieve + "stuff" into a prompt, with no LLM. It runs with as many torch threads as meshrag
   (`--baseline-torch-threads 0` leaves torch's default: see "threads" below).
5. Questions: the golden set's answerable `factual` and `discovery` questions for the analyst role, in a
   fixed shuffled order (the `catalog` rows: its `discovery` questions alone, answered from catalog facts);
   `--warmup` of its `unanswerable` questions warm up every server start (not counted). k = 8 on both sides.

Variants (`--store` x `--workers`; default: faiss, 1 worker, the run described above): each row is measured
for every variant, with the baseline beside it in the same row, and a summary at the end compares the
variants' first-pass throughput and p50/p99 per endpoint and concurrency.
- `faiss` = embedded mode: the indexed data dir above.
- `pgvector` = shared mode: every piece of state in PostgreSQL. The server is `--dsn DSN` (default: an
  embedded PostgreSQL this script starts under `<data dir>/postgres` and stops at the end; it persists
  with `--data-dir`), schema `--pg-schema` (default: the settings' default). `meshrag index --store
  pgvector --dsn DSN` runs from a data dir of its own, the key is made with `meshrag keys create` in
  shared mode (no key file), and every server starts on a fresh, EMPTY scratch data dir, as a replica
  behind a load balancer does: its startup time includes whatever that costs (ONNX export, caches).
- `--workers N` passes `meshrag serve --workers N` (omitted for 1, the default).
The final comparison for issue #16 (throughput and p50/p99 at concurrency 8, search and ask, both modes,
1 and 2 workers, beside the baseline):

    python benchmarks/serve.py --store faiss,pgvector --workers 1,2 --concurrency 8 \
        --endpoints search,ask --floor 0 --json serve-shared.json

Rows, for each variant, then each endpoint, then each concurrency (N workers, each sending its next request when its
previous response has arrived):
- first: every question exactly once, on a meshrag server started fresh for the row (unless
  --no-fresh), so its in-memory caches (query vectors, the answerer's passage LRU) have not seen
  these questions. Passage vectors come from the persistent cache the background pass filled: the
  steady state of a server on a release, not the first minutes after a new release.
- repeat: right after, `--repeat` requests cycling over the same questions on the same servers: what
  a repeated question costs once the caches hold it.
- floor (at the end): `--floor` GET /healthz on both servers: HTTP, routing and client alone.
Ours and the baseline run back to back in each row, so they see about the same load from other jobs;
the 1-minute load average is recorded before and after each. Latency is client-side (request written
→ whole body read); "where the time goes" lists the medians of the responses' own `timings_ms`.

Goals (on the first pass; the repeat pass is shown beside): /v1/search p50 <= 15 ms at concurrency 1,
p99 <= 50 ms at concurrency 8, p50 <= 0.5 x the baseline's p50 at concurrency 1; /v1/ask (extractive)
p50 <= 40 ms at concurrency 1. The /ask ratio compares unlike work (meshrag answers, verifies every
citation and durably writes a provenance record; the baseline only retrieves and builds a prompt).

Threads: with torch's default (2 threads here), the baseline's /search took 684 ms p50 at concurrency
1 on the loaded machine against 36 ms with 1 thread (its /ask, which runs the retriever in a fresh
thread of LangChain's executor, 50 ms): the intra-op pool of a long-lived worker thread stalls when
the cores are busy. That would make any ratio meaningless, hence the matched thread count.

Measured (full default run, fresh temp data dir, ONNX query encoder chosen by the server, 2 cores
otherwise idle: load 1.0-2.7; p50 / p99 ms, req/s; ratio = ours/baseline p50):

    /v1/search first  c=1   13.0 / 17.1  75 rps  baseline  23.6 / 30.1  42 rps   0.55
    /v1/search repeat c=1    5.5 / 8.2  170 rps  baseline  21.3 / 26.7  46 rps   0.26
    /v1/search first  c=8   71.2 / 111  110 rps  baseline   149 / 223   53 rps   0.48
    /v1/search first  c=32   274 / 380  112 rps  baseline   620 / 924   51 rps   0.44
    /v1/ask    first  c=1   25.8 / 33.0  39 rps  baseline  27.7 / 34.3  36 rps   (0.93, unlike work)
    /v1/ask    repeat c=1   17.4 / 24.4  58 rps
    /v1/ask    first  c=32   683 / 1138  45 rps  baseline   799 / 1393  38 rps
    GET /healthz      c=8    7.3 / 24.7 953 rps  baseline   7.4 / 46.9 694 rps

The run before (no heap freeze; a ~15 % faster CPU at the time) measured /search first c=1 10.9 ms
(0.54), /ask first c=1 22.2 ms and /healthz c=8 p99 224 ms. Goals: /search 15 ms and /ask 40 ms at c=1
met; 0.5x at c=1 missed narrowly (met at c=8 and 32); p99 50 ms at c=8 missed (see the README's
Performance section for why). A run at load 6-7.5, before the ONNX threads, group commit and the
in-memory answer passages, measured /search 52.8 ms and /ask 49.5 ms first pass at c=1.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and benchmarks/indexing.py would shadow
# the `indexing` package: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

from benchmarks.loadgen import RunStats, load1, run_load
from benchmarks.servers import (
    BenchmarkError,
    ServerProcess,
    child_env,
    create_key,
    free_port,
    index_data_dir,
    meshrag_command,
)
from knowledge.errors import MeshragError

ROLE = "analyst"
MEASURED_KINDS = ("factual", "discovery")
WARMUP_KIND = "unanswerable"
SHUFFLE_SEED = 20240501
K = 8
# Server log lines that say which runtime encodes queries (shown when /healthz and /readyz do not).
RUNTIME_LOG_LINE = re.compile(r"(?i)queries are encoded|\bonnx\b")
FLOOR = "healthz"  # GET /healthz on both servers: the cost of HTTP, routing and the client alone


@dataclass(frozen=True)
class Endpoint:
    name: str
    ours_path: str
    baseline_path: str
    field: str  # the body field holding the question
    kinds: tuple[str, ...] = MEASURED_KINDS  # the golden questions it is asked (default: factual + discovery)

    def body(self, question: str) -> dict[str, Any]:
        return {self.field: question, "k": K}

    def baseline_body(self, question: str) -> dict[str, Any]:
        return {self.field: question}


ENDPOINTS = {
    "search": Endpoint("search", "/v1/search", "/search", "query"),
    "ask": Endpoint("ask", "/v1/ask", "/ask", "question"),
    # /v1/ask on discovery questions alone ("who owns …", "which products are stale"): answered from the
    # catalog's facts (retrieval/discovery/); the baseline's /ask does its usual retrieve-and-stuff.
    "catalog": Endpoint("catalog", "/v1/ask", "/ask", "question", kinds=("discovery",)),
}


STORES = {"faiss": "embedded", "pgvector": "shared"}  # --store value → the mode it serves


@dataclass(frozen=True)
class Variant:
    """How meshrag serves a row: its store (faiss = embedded mode, pgvector = shared mode) and
    `meshrag serve --workers N`."""

    store: str = "faiss"
    workers: int = 1

    @property
    def label(self) -> str:
        return f"{STORES[self.store]} w{self.workers}"


DEFAULT_VARIANT = Variant()


@dataclass(frozen=True)
class Deployment:
    """What the servers of one store start from: the indexed data dir (faiss) or the DSN with a folder
    for each server's empty scratch data dir (pgvector), their MESHRAG_* settings, and the analyst key."""

    store: str
    data_dir: Path
    env: dict[str, str]
    key: str
    index: dict[str, Any]
    dsn: str | None = None


@dataclass(frozen=True)
class Row:
    endpoint: str
    pass_: str  # "first" | "repeat"
    concurrency: int
    ours: RunStats
    baseline: RunStats | None
    variant: Variant = DEFAULT_VARIANT

    @property
    def path(self) -> str:
        """What the row measured: the route, and for the catalog rows the questions ("/v1/ask catalog": ask on
        discovery questions; there is no /v1/catalog route among them)."""
        if self.endpoint == FLOOR:
            return "/healthz"
        endpoint = ENDPOINTS.get(self.endpoint)
        if endpoint is None or endpoint.ours_path == f"/v1/{self.endpoint}":
            return f"/v1/{self.endpoint}"
        return f"{endpoint.ours_path} {self.endpoint}"

    @property
    def ratio_p50(self) -> float | None:
        if self.baseline is None or not self.baseline.p50_ms:
            return None
        return round(self.ours.p50_ms / self.baseline.p50_ms, 3)

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.path, "pass": self.pass_, "concurrency": self.concurrency,
                "store": self.variant.store, "workers": self.variant.workers, "ours": self.ours.as_dict(), "baseline": self.baseline.as_dict() if self.baseline else None,
                "ratio_p50": self.ratio_p50}


# ---------------------------------------------------------------------------------------------- setup
def pick_questions(limit: int | None, warmup: int, kinds: tuple[str, ...] = MEASURED_KINDS
                   ) -> tuple[list[str], list[str]]:
    """(measured questions, warm-up questions): distinct, analyst-readable, in a fixed shuffled order."""
    from eval_sets.golden import load_golden

    golden = [q for q in load_golden() if ROLE in q.roles]
    measured = list(dict.fromkeys(q.question for q in golden if q.kind in kinds))
    random.Random(SHUFFLE_SEED).shuffle(measured)
    warm = [q.question for q in golden if q.kind == WARMUP_KIND and q.question not in measured]
    return measured[:limit] if limit else measured, warm[:warmup]


def ours_server(deployment: Deployment, variant: Variant, logs: Path) -> ServerProcess:
    port = free_port()
    # Its defaults, log level included (one INFO line per request, to the log file here), with the rate
    # limits off (MESHRAG_RATE_LIMIT=off, the documented load-test switch): one key sends every request.
    argv = [*meshrag_command(), "serve", "--port", str(port)]
    if deployment.store == "pgvector":
        # A replica's data dir is a disposable cache: each server starts on an empty one.
        scratch = Path(tempfile.mkdtemp(prefix="replica-", dir=deployment.data_dir))
        argv += ["--store", "pgvector", "--dsn", str(deployment.dsn), "--data-dir", str(scratch)]
    else:
        argv += ["--data-dir", str(deployment.data_dir)]
    if variant.workers > 1:
        argv += ["--workers", str(variant.workers)]
    log = logs / f"meshrag-serve-{deployment.store}-w{variant.workers}.log"
    return ServerProcess(f"meshrag ({variant.label})", argv, port, log,
                         child_env({**deployment.env, "MESHRAG_RATE_LIMIT": "off"}))


def embedded_deployment(data_dir: Path, work: Path, index: dict[str, Any]) -> Deployment:
    """Embedded mode: the indexed data dir, and a key in a key file of this run."""
    keys_file = work / "api-keys.json"
    key = create_key(keys_file, "serve-benchmark", ROLE)
    return Deployment("faiss", data_dir, {"MESHRAG_API_KEYS_FILE": str(keys_file)}, key, index)


def shared_deployment(args: argparse.Namespace, dsn: str, work: Path) -> Deployment:
    """Shared mode: the sample mesh indexed into PostgreSQL by `meshrag index` from a data dir of its own,
    and a key made by `meshrag keys create` in shared mode (kept in PostgreSQL, not in a file)."""
    env = {"MESHRAG_STORE": "pgvector", "MESHRAG_DSN": dsn}
    if args.pg_schema:
        env["MESHRAG_PG_SCHEMA"] = args.pg_schema
    print(f"indexing the sample mesh into PostgreSQL (schema {args.pg_schema or 'default'}) …", file=sys.stderr)
    index = index_data_dir(work / "shared-indexer", ("--store", "pgvector", "--dsn", dsn), child_env(env))
    state = "published" if index.get("published") else "unchanged (already current)"
    print(f"shared release {index['release_id']}: {state}, {index['wall_s']} s", file=sys.stderr)
    key = create_key(None, "serve-benchmark", ROLE, child_env(env))
    replicas = work / "replicas"
    replicas.mkdir(parents=True, exist_ok=True)
    return Deployment("pgvector", replicas, env, key, index, dsn)


def baseline_server(data_dir: Path, logs: Path, torch_threads: int | None) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, str(REPO / "benchmarks" / "langchain_app.py"), "--data-dir", str(data_dir),
            "--port", str(port), "--role", ROLE]
    if torch_threads is not None:
        argv += ["--torch-threads", str(torch_threads)]
    return ServerProcess("langchain-baseline", argv, port, logs / "langchain-baseline.log")


def baseline_threads(requested: int | None) -> int | None:
    """The baseline's torch threads: as requested (0 = torch's default), else the same number meshrag
    serves with (MESHRAG_TORCH_THREADS, default 1), so the ratio compares pipelines, not thread pools."""
    if requested is not None:
        return requested or None
    from retrieval.settings import RetrievalSettings

    return RetrievalSettings(data_dir=Path(".")).torch_threads


def ours_runtime(server: ServerProcess, key: str, question: str) -> dict[str, Any]:
    """What the server says about itself: /healthz, /readyz, and the embedder and store a search
    names in its replay parameters; plus the MESHRAG_* settings names set in this environment."""
    import httpx

    from retrieval.settings import RetrievalSettings

    settings = RetrievalSettings(data_dir=Path("."))
    search = httpx.post(server.base_url + "/v1/search", json={"query": question, "k": K},
                        headers={"Authorization": f"Bearer {key}"}, timeout=120.0).json()
    params = search.get("params", {})
    return {
        "healthz": server.get_json("/healthz"), "readyz": server.get_json("/readyz"),
        "startup_s": server.startup_s, "embedder": params.get("embedder"), "store": params.get("store"),
        "searcher": params.get("searcher"), "keyword": params.get("keyword"),
        "answerer": settings.answerer, "torch_threads": settings.torch_threads,
        "meshrag_env": sorted(k for k in server.env if k.startswith("MESHRAG_")),
        "log": server.log_lines(RUNTIME_LOG_LINE),
    }


def warm_up(url: str, bodies: list[dict[str, Any]], headers: dict[str, str]) -> None:
    if not bodies:
        return
    stats = run_load(url, bodies, 1, headers=headers)
    if stats.errors:
        raise BenchmarkError(f"warm-up of {url} failed: {stats.first_error}")


# ---------------------------------------------------------------------------------------------- runs
def measure(args: argparse.Namespace, data_dir: Path, work: Path, dsn: str | None) -> dict[str, Any]:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    deployments: dict[str, Deployment] = {}
    index: dict[str, Any] = {}
    if "faiss" in args.store or not args.no_baseline:  # the baseline reads the FAISS data dir's release
        print(f"indexing the sample mesh into {data_dir} …", file=sys.stderr)
        index = index_data_dir(data_dir)
        state = "published" if index.get("published") else "unchanged (already current)"
        print(f"release {index['release_id']}: {state}, {index['wall_s']} s", file=sys.stderr)
        if "faiss" in args.store:
            deployments["faiss"] = embedded_deployment(data_dir, work, index)
    if "pgvector" in args.store:
        assert dsn is not None
        deployments["pgvector"] = shared_deployment(args, dsn, work)
        index = index or deployments["pgvector"].index
    questions, warm_questions = pick_questions(args.questions, args.warmup)
    repeat = len(questions) if args.repeat is None else args.repeat
    repeated = [questions[i % len(questions)] for i in range(repeat)]
    variants = [Variant(store, workers) for store in args.store for workers in args.workers]
    print(f"{len(questions)} questions, {len(warm_questions)} warm-up, {repeat} repeated requests; variants "
          f"{', '.join(v.label for v in variants)}; logs in {logs}", file=sys.stderr)

    baseline: ServerProcess | None = None
    runtime: dict[str, Any] = {"ours_by_variant": {}, "ours_startups_s": {}, "ours_background": {}}
    if not args.no_baseline:
        baseline = baseline_server(data_dir, logs, baseline_threads(args.baseline_torch_threads))
        print("starting the LangChain baseline (embeds the chunks on its first run) …", file=sys.stderr)
        runtime["baseline"] = baseline.start(timeout_s=args.start_timeout)
        runtime["baseline"]["startup_s"] = baseline.startup_s
    ours: ServerProcess | None = None
    rows: list[Row] = []
    try:
        for variant in variants:
            deployment = deployments[variant.store]
            headers = {"Authorization": f"Bearer {deployment.key}"}
            for name in args.endpoints:
                endpoint = ENDPOINTS[name]
                for concurrency in args.concurrency:
                    if ours is None or not args.no_fresh:
                        if ours is not None:
                            ours.stop()
                        ours = start_ours(args, deployment, variant, logs, runtime, warm_questions)
                        warm_up(ours.base_url + endpoint.ours_path,
                                [endpoint.body(q) for q in warm_questions], headers)
                        if baseline is not None:
                            warm_up(baseline.base_url + endpoint.baseline_path,
                                    [endpoint.baseline_body(q) for q in warm_questions], {})
                    first = questions if endpoint.kinds == MEASURED_KINDS else pick_questions(
                        args.questions, 0, endpoint.kinds)[0]
                    again = repeated if first is questions else [first[i % len(first)] for i in range(repeat)]
                    for pass_, asked in (("first", first), ("repeat", again)):
                        if not asked:
                            continue
                        ours_stats = run_load(ours.base_url + endpoint.ours_path,
                                              [endpoint.body(q) for q in asked], concurrency,
                                              headers=headers, timeout_s=args.timeout)
                        base_stats = None
                        if baseline is not None:
                            base_stats = run_load(baseline.base_url + endpoint.baseline_path,
                                                  [endpoint.baseline_body(q) for q in asked], concurrency,
                                                  timeout_s=args.timeout)
                        row = Row(name, pass_, concurrency, ours_stats, base_stats, variant)
                        rows.append(row)
                        print(format_row(row), file=sys.stderr, flush=True)
            for concurrency in args.concurrency if args.floor and ours is not None else ():
                ours_stats = run_load(ours.base_url + "/healthz", [None] * args.floor, concurrency)
                base_stats = (run_load(baseline.base_url + "/healthz", [None] * args.floor, concurrency)
                              if baseline is not None else None)
                rows.append(Row(FLOOR, "floor", concurrency, ours_stats, base_stats, variant))
                print(format_row(rows[-1]), file=sys.stderr, flush=True)
            if ours is not None:  # the next variant starts its own server
                ours.stop()
                ours = None
    finally:
        if ours is not None:
            ours.stop()
        if baseline is not None:
            baseline.stop()
    runtime["ours"] = next(iter(runtime["ours_by_variant"].values()), {})
    return {"index": {k: index.get(k) for k in ("release_id", "published", "previous_release", "wall_s")},
            "shared_index": ({k: deployments["pgvector"].index.get(k) for k in ("release_id", "published", "wall_s")}
                             if "pgvector" in deployments else None),
            "variants": [v.label for v in variants],
            "runtime": runtime, "questions": len(questions), "warmup": len(warm_questions),
            "repeat": repeat, "rows": rows}


def start_ours(args: argparse.Namespace, deployment: Deployment, variant: Variant, logs: Path,
               runtime: dict[str, Any], warm_questions: list[str]) -> ServerProcess:
    """A fresh meshrag server of `variant`, ready and done with its background work; its start-up is
    recorded in `runtime` (and, the first time for a variant, what it says about itself)."""
    ours = ours_server(deployment, variant, logs)
    ours.start(timeout_s=args.start_timeout)
    background = ours.wait_background(args.background_timeout)
    runtime["ours_background"].setdefault(variant.label, []).append(background)
    if background["waited_s"] >= 1:
        print(f"meshrag ({variant.label}) finished its background work in {background['waited_s']} s: "
              f"{json.dumps(background['readyz'])}", file=sys.stderr)
    if variant.label not in runtime["ours_by_variant"]:
        runtime["ours_by_variant"][variant.label] = ours_runtime(
            ours, deployment.key, warm_questions[0] if warm_questions else "warm-up")
    runtime["ours_startups_s"].setdefault(variant.label, []).append(ours.startup_s)
    return ours


# ---------------------------------------------------------------------------------------------- report
def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


HEADER = (f"{'mode':<11} {'endpoint':<10} {'pass':<6} {'conc':>4} | {'ours p50':>8} {'p95':>7} {'p99':>7} "
          f"{'req/s':>6} | {'base p50':>8} {'p95':>7} {'p99':>7} {'req/s':>6} | {'p50 o/b':>7} | {'err o/b':>7} | "
          f"load1 ours; base")


def format_row(row: Row) -> str:
    o, b = row.ours, row.baseline
    base = (f"{_ms(b.p50_ms):>8} {_ms(b.p95_ms):>7} {_ms(b.p99_ms):>7} {b.rps:>6.1f}" if b
            else f"{'-':>8} {'-':>7} {'-':>7} {'-':>6}")
    ratio = f"{row.ratio_p50:.2f}" if row.ratio_p50 is not None else "-"
    errors = f"{o.errors}/{b.errors if b else '-'}"
    load = f"{o.load_before:.1f}→{o.load_after:.1f}" + (f"; {b.load_before:.1f}→{b.load_after:.1f}" if b else "")
    return (f"{row.variant.label:<11} {row.path:<10} {row.pass_:<6} {row.concurrency:>4} | {_ms(o.p50_ms):>8} "
            f"{_ms(o.p95_ms):>7} {_ms(o.p99_ms):>7} {o.rps:>6.1f} | {base} | {ratio:>7} | {errors:>7} | {load}")


def server_breakdown(row: Row) -> str:
    parts = ", ".join(f"{k} {v:.1f}" for k, v in row.ours.server_ms.items())
    base = f"; baseline server total {row.baseline.server_ms.get('total', float('nan')):.1f}" if row.baseline else ""
    return f"{row.variant.label}: {row.path} {row.pass_} c={row.concurrency}: ours server median ms: {parts}{base}"


def _value(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def find(rows: list[Row], endpoint: str, pass_: str, concurrency: int, variant: Variant = DEFAULT_VARIANT
         ) -> Row | None:
    return next((r for r in rows if (r.endpoint, r.pass_, r.concurrency, r.variant)
                 == (endpoint, pass_, concurrency, variant)), None)


def goals(rows: list[Row]) -> list[dict[str, Any]]:
    """Each goal on the first pass (and, for information, on the repeat pass): met, missed, or not run.
    Judged on the default variant (embedded, 1 worker) when it ran, else on the first variant that did."""
    variant = DEFAULT_VARIANT if any(r.variant == DEFAULT_VARIANT for r in rows) else (
        rows[0].variant if rows else DEFAULT_VARIANT)
    specs = [
        ("/v1/search p50 <= 15 ms at concurrency 1", "search", 1, lambda r: r.ours.p50_ms, 15.0, "ms"),
        ("/v1/search p99 <= 50 ms at concurrency 8", "search", 8, lambda r: r.ours.p99_ms, 50.0, "ms"),
        ("/v1/search p50 <= 0.5 x LangChain baseline p50 at concurrency 1", "search", 1,
         lambda r: r.ratio_p50, 0.5, "x"),
        ("/v1/ask (extractive) p50 <= 40 ms at concurrency 1", "ask", 1, lambda r: r.ours.p50_ms, 40.0, "ms"),
    ]
    out = []
    for title, endpoint, concurrency, value_of, limit, unit in specs:
        result: dict[str, Any] = {"goal": f"{title} ({variant.label})", "limit": limit, "unit": unit}
        for pass_ in ("first", "repeat"):
            row = find(rows, endpoint, pass_, concurrency, variant)
            value = value_of(row) if row is not None else None
            result[pass_] = value
            if pass_ == "first":
                result["met"] = None if value is None else value <= limit
                result["why"] = server_breakdown(row) if row is not None else "not run"
        out.append(result)
    return out


def variant_summary(rows: list[Row]) -> list[str]:
    """First-pass throughput and p50/p99 of every variant side by side, per endpoint and concurrency, with
    the baseline measured beside each (rps o/b = ours req/s / baseline req/s)."""
    variants = list(dict.fromkeys(r.variant for r in rows))
    if len(variants) < 2:
        return []
    head = (f"{'endpoint':<10} {'conc':>4} {'mode':<11} | {'req/s':>6} {'p50':>7} {'p99':>7} | "
            f"{'base req/s':>10} {'p50':>7} {'p99':>7} | {'rps o/b':>7}")
    lines = ["", "variants side by side (first pass; baseline measured beside each):", head, "-" * len(head)]
    keys = list(dict.fromkeys((r.endpoint, r.concurrency) for r in rows if r.pass_ in ("first", "floor")))
    for endpoint, concurrency in keys:
        for variant in variants:
            row = next((r for r in rows if (r.endpoint, r.concurrency, r.variant) == (endpoint, concurrency, variant)
                        and r.pass_ in ("first", "floor")), None)
            if row is None:
                continue
            o, b = row.ours, row.baseline
            base = f"{b.rps:>10.1f} {_ms(b.p50_ms):>7} {_ms(b.p99_ms):>7}" if b else f"{'-':>10} {'-':>7} {'-':>7}"
            ratio = f"{o.rps / b.rps:.2f}" if b and b.rps else "-"
            lines.append(f"{row.path:<10} {concurrency:>4} {variant.label:<11} | {o.rps:>6.1f} {_ms(o.p50_ms):>7} "
                         f"{_ms(o.p99_ms):>7} | {base} | {ratio:>7}")
    return lines


def report(result: dict[str, Any]) -> str:
    rows: list[Row] = result["rows"]
    runtime = result["runtime"]
    lines = [(f"release {result['index']['release_id']}; {result['questions']} questions once per first pass, "
              f"{result['repeat']} requests per repeat pass, {result['warmup']} warm-up requests per server start")]
    if result.get("shared_index"):
        lines.append(f"shared mode: release {result['shared_index']['release_id']} in PostgreSQL, indexed in "
                     f"{result['shared_index']['wall_s']} s")
    for label, ours in runtime.get("ours_by_variant", {}).items():
        lines.append(f"meshrag ({label}): embedder {ours.get('embedder')}, store {ours.get('store')}, answerer "
                     f"{ours.get('answerer')}, torch_threads {ours.get('torch_threads')}, startup "
                     f"{runtime['ours_startups_s'].get(label)} s, MESHRAG_* set: {ours.get('meshrag_env') or 'none'}")
        waits = [b["waited_s"] for b in runtime["ours_background"].get(label, [])]
        lines.append(f"meshrag ({label}) background work waited for after each start (s): {waits}")
        for line in ours.get("log", []):
            lines.append(f"meshrag ({label}) log: {line}")
        lines.append(f"meshrag ({label}) /healthz {json.dumps(ours.get('healthz', {}).get('body'))}")
        lines.append(f"meshrag ({label}) /readyz {json.dumps(ours.get('readyz', {}).get('body'))}")
    if "baseline" in runtime:
        lines.append(f"baseline /readyz {json.dumps(runtime['baseline'])}")
    lines += ["", ("latency in ms (client-side); p50 o/b = ours p50 / baseline p50; load1 = load average "
                   "before→after"), HEADER, "-" * len(HEADER)]
    lines += [format_row(r) for r in rows]
    lines += variant_summary(rows)
    lines += ["", "where the time goes (medians of the servers' own timings_ms):"]
    lines += [server_breakdown(r) for r in rows if r.endpoint != FLOOR]
    failed = [r for r in rows if r.ours.errors or (r.baseline and r.baseline.errors)]
    for r in failed:
        lines.append(f"ERRORS {r.variant.label} {r.path} {r.pass_} c={r.concurrency}: ours {r.ours.statuses} "
                     f"{r.ours.first_error}; baseline {r.baseline.statuses if r.baseline else '-'} "
                     f"{r.baseline.first_error if r.baseline else ''}")
    lines += ["", "goals (first pass; repeat pass in brackets):"]
    for g in result["goals"]:
        state = {True: "MET", False: "MISSED", None: "NOT RUN"}[g["met"]]
        lines.append(f"  [{state:>7}] {g['goal']}: {_value(g['first'], g['unit'])} "
                     f"[{_value(g['repeat'], g['unit'])}]")
        lines.append(f"            {g['why']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        values = [int(v) for v in text.split(",") if v.strip()]
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: give positive integers separated by commas")
        return values

    def endpoints(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        unknown = [n for n in names if n not in ENDPOINTS]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(ENDPOINTS)}")
        return names

    def stores(text: str) -> list[str]:
        names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
        unknown = [n for n in names if n not in STORES]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(STORES)}")
        return names

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="index data dir (default: a temporary one, removed afterwards)")
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32], help="default 1,8,32")
    parser.add_argument("--endpoints", type=endpoints, default=list(ENDPOINTS), help="default search,ask,catalog")
    parser.add_argument("--questions", type=int, default=None, help="use the first N questions (default all)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="requests in each repeat pass (default: as many as questions; 0 skips it)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up requests per server start (default 5)")
    parser.add_argument("--floor", type=int, default=200, metavar="N",
                        help="GET /healthz requests per concurrency on both servers at the end (default 200; "
                             "0 skips): the HTTP floor")
    parser.add_argument("--no-fresh", action="store_true",
                        help="start meshrag once instead of once per row (its caches then carry over)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the LangChain baseline")
    parser.add_argument("--baseline-torch-threads", type=int, default=None, metavar="N",
                        help="torch threads of the baseline (default: as many as meshrag uses, "
                             "MESHRAG_TORCH_THREADS or 1; 0 = torch's own default)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, s (default 600)")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="server start timeout, s")
    parser.add_argument("--background-timeout", type=float, default=3600.0,
                        help="how long to wait for meshrag's background work after a start, s")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write everything as JSON")
    parser.add_argument("--store", type=stores, default=["faiss"],
                        help="faiss (embedded mode, default), pgvector (shared mode: all state in PostgreSQL, "
                             "each server on an empty scratch data dir), or both: faiss,pgvector")
    parser.add_argument("--workers", type=ints, default=[1],
                        help="`meshrag serve --workers N` for each N given, e.g. 1,2 (default 1)")
    parser.add_argument("--dsn", default=None,
                        help="shared mode's PostgreSQL (default: an embedded server this script starts under "
                             "<data dir>/postgres and stops at the end)")
    parser.add_argument("--pg-schema", default=None, help="shared mode's schema (default: MESHRAG_PG_SCHEMA, else meshrag)")
    args = parser.parse_args(argv)
    if (args.dsn or args.pg_schema) and "pgvector" not in args.store:
        parser.error("--dsn and --pg-schema apply to shared mode only: add --store pgvector (or faiss,pgvector)")
    return args


def shared_dsn(args: argparse.Namespace, data_dir: Path) -> tuple[str | None, Path | None]:
    """(DSN of shared mode, PGDATA of the embedded server this run started, to stop at the end)."""
    if "pgvector" not in args.store:
        return None, None
    if args.dsn:
        return args.dsn, None
    from indexing.stores.embedded_pg import start_postgres

    pgdata = data_dir / "postgres"
    print(f"starting an embedded PostgreSQL in {pgdata} for shared mode …", file=sys.stderr)
    return start_postgres(pgdata), pgdata


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="meshrag-serve-bench-"))
    data_dir = (args.data_dir or work / "data").expanduser().resolve()
    load_start = load1()
    pgdata: Path | None = None
    try:
        dsn, pgdata = shared_dsn(args, data_dir)
        result = measure(args, data_dir, work, dsn)
    except (BenchmarkError, MeshragError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if pgdata is not None:
            from indexing.stores.embedded_pg import stop_postgres

            stop_postgres(pgdata)
        # Keep the logs of a failed run; a caller's data dir is never removed.
        if args.data_dir is None:
            shutil.rmtree(work / "data", ignore_errors=True)
    result["goals"] = goals(result["rows"])
    result["load1"] = {"start": load_start, "end": load1()}
    print(report(result))
    if args.json is not None:
        payload = {**result, "rows": [r.as_dict() for r in result["rows"]],
                   "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", "utf-8")
    errors = sum(r.ours.errors + (r.baseline.errors if r.baseline else 0) for r in result["rows"])
    if errors == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"{errors} request(s) failed; server logs kept in {work / 'logs'}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
