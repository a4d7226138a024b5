"""A collector subprocess with the demo's configuration: budgets with a per-run limit, free ports.

The demo starts it when it is not given a collector's address; `grafana/collector.yaml` (the
docker-compose stack) carries the same budgets, and a test keeps the two equal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml

# The runaway research run crosses "research per run" after a few calls; the support budget only
# warns; the global one shows a window far from its limit.
DEMO_BUDGETS: list[dict] = [
    {"name": "research per run", "scope": "feature", "scope_value": "research",
     "per_run_limit_usd": 0.05, "monthly_limit_usd": 20, "enforcement": "block"},
    {"name": "support monthly", "scope": "feature", "scope_value": "support",
     "monthly_limit_usd": 5, "daily_limit_usd": 1, "enforcement": "warn"},
    {"name": "company", "scope": "global", "monthly_limit_usd": 100, "enforcement": "block"},
]


class CollectorStartError(RuntimeError):
    """The collector subprocess exited or did not answer /healthz in time."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def demo_config(*, store_path: Path, grpc_port: int, http_port: int, metrics_port: int) -> dict:
    return {
        "receivers": {"otlp": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                               "http": {"endpoint": f"127.0.0.1:{http_port}"}}},
        "prometheus": {"endpoint": f"127.0.0.1:{metrics_port}"},
        "store": {"path": str(store_path)},
        # Demo runs last seconds: a short idle timeout lets "active" settle within a minute.
        "runs": {"idle_timeout_seconds": 30},
        "log": {"level": "warning", "format": "text"},
        "budgets": DEMO_BUDGETS,
    }


def is_healthy(http_url: str, *, timeout_seconds: float = 1.0) -> bool:
    """Whether a collector answers `GET /healthz` at `http_url` with status ok."""
    try:
        with urllib.request.urlopen(f"{http_url.rstrip('/')}/healthz", timeout=timeout_seconds) as answer:
            return json.load(answer).get("status") == "ok"
    except (OSError, urllib.error.URLError, ValueError):
        return False


class LocalCollector:
    """`with LocalCollector() as collector:` a collector on free 127.0.0.1 ports, stopped on exit.

    `metrics_port` may be fixed (e.g. 9464, where grafana/prometheus/prometheus.yml scrapes).
    """

    def __init__(self, *, metrics_port: int | None = None, start_timeout_seconds: float = 30.0) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.metrics_port = metrics_port or free_port()
        self.start_timeout_seconds = start_timeout_seconds
        self._workdir = tempfile.TemporaryDirectory(prefix="cognocient-demo-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> LocalCollector:
        workdir = Path(self._workdir.name)
        config_path = workdir / "collector.yaml"
        config = demo_config(store_path=workdir / "cognocient.db", grpc_port=self.grpc_port,
                             http_port=self.http_port, metrics_port=self.metrics_port)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        log = (workdir / "collector.log").open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "collector.main", "--config", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=os.environ.copy(),
        )
        log.close()
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise CollectorStartError(
                    f"the collector exited with {self._process.returncode}:\n{self.log()}")
            if is_healthy(self.http_url):
                return
            time.sleep(0.1)
        self.stop()
        raise CollectorStartError(f"the collector did not answer /healthz within "
                                  f"{self.start_timeout_seconds:.0f} s:\n{self.log()}")

    def log(self) -> str:
        path = Path(self._workdir.name) / "collector.log"
        return path.read_text(encoding="utf-8", errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None
        self._workdir.cleanup()

    def __enter__(self) -> LocalCollector:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
