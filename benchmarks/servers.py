"""Subprocess helpers of benchmarks/serve.py: index a data dir, create an API key, start an HTTP server
on loopback, wait until it is ready, stop it. Every command runs in its own process, never in the
process generating load."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# Offline model loading, as the Makefile exports it for `make serve`.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class BenchmarkError(RuntimeError):
    """A step of the benchmark failed; the message says which and where its log is."""


def meshrag_command() -> list[str]:
    """The `meshrag` console script of the interpreter running this benchmark (the project's venv)."""
    script = Path(sys.executable).with_name("meshrag")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "api.cli.main"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, **(extra or {})}


def run_json(argv: list[str], what: str, env: dict[str, str] | None = None) -> Any:
    """Run a CLI command that prints one JSON document on stdout; its stderr is shown only on failure."""
    done = subprocess.run(argv, check=False, cwd=REPO, env=env or child_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchmarkError(f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{what} printed no JSON ({exc}): {done.stdout[-1000:]}") from None


def index_data_dir(data_dir: Path, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None
                   ) -> dict[str, Any]:
    """`meshrag index --data-dir DIR --json [extra_args]`: builds the sample mesh's release, or finds every
    version already built and leaves the current release as it is (seconds). Shared mode passes
    `--store pgvector --dsn DSN` (and its MESHRAG_* in `env`)."""
    t0 = time.perf_counter()
    report = run_json([*meshrag_command(), "index", "--data-dir", str(data_dir), *extra_args, "--json"],
                      "meshrag index", env)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return report


def create_key(keys_file: Path | None, principal: str, role: str, env: dict[str, str] | None = None) -> str:
    """A new API key for `principal` with `role`, written (hashed) to `keys_file`, or, with `keys_file`
    None, where the settings in `env` keep keys (PostgreSQL in shared mode); returns the key."""
    argv = [*meshrag_command(), "keys", "create", "--principal", principal, "--role", role, "--json"]
    if keys_file is not None:
        argv += ["--keys-file", str(keys_file)]
    return str(run_json(argv, "meshrag keys create", env)["key"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One HTTP server in its own process, its output in `log_path`."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.env = env or child_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, ready_path: str = "/readyz", timeout_s: float = 900.0) -> dict[str, Any]:
        """Start the process and wait until `ready_path` answers 200; return that answer."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.perf_counter()
        with httpx.Client(timeout=5.0) as client:
            while time.perf_counter() - t0 < timeout_s:
                if self.proc.poll() is not None:
                    raise BenchmarkError(f"{self.name} exited with {self.proc.returncode} while starting; "
                                         f"see {self.log_path}:\n{self.log_tail()}")
                try:
                    response = client.get(self.base_url + ready_path)
                    if response.status_code == 200:
                        self.startup_s = round(time.perf_counter() - t0, 1)
                        return response.json()
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        self.stop()
        raise BenchmarkError(f"{self.name} was not ready after {timeout_s:.0f} s; see {self.log_path}")

    def wait_background(self, timeout_s: float, path: str = "/readyz") -> dict[str, Any]:
        """Wait until no background pass that `path` reports (a top-level object with `"status":
        "running"`, such as meshrag's `answer_vectors`) is still running, so it does not compete with
        the measured requests; return how long that took and the last answer."""
        t0 = time.perf_counter()
        with httpx.Client(timeout=30.0) as client:
            while True:
                body = client.get(self.base_url + path).json()
                running = [k for k, v in body.items() if isinstance(v, dict) and v.get("status") == "running"]
                if not running:
                    return {"waited_s": round(time.perf_counter() - t0, 1), "readyz": body}
                if time.perf_counter() - t0 > timeout_s:
                    raise BenchmarkError(f"{self.name}: {', '.join(running)} still running after "
                                         f"{timeout_s:.0f} s: {body}")
                time.sleep(1.0)

    def get_json(self, path: str) -> Any:
        response = httpx.get(self.base_url + path, timeout=30.0)
        return {"status": response.status_code, "body": response.json()}

    def stop(self) -> None:
        """SIGTERM to the server (uvicorn shuts down gracefully, and stops its workers with `--workers N`);
        after 30 s, SIGKILL to its whole process group (its own session: the server and its workers only)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def log_lines(self, pattern: re.Pattern[str], limit: int = 5) -> list[str]:
        """The first `limit` lines of the log matching `pattern` (e.g. what runtime the server chose)."""
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line.strip() for line in text.splitlines() if pattern.search(line)][:limit]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
