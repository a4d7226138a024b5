"""A collector subprocess with the demo's configuration: budgets with a per-run limit, free ports.

The demo starts it when it is not given a collector's address; `grafana/collector.yaml` (the
docker-compose stack) carries the same budgets, and a test keeps the two equal.
"""

from __future__ import annotations

import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from collector.process import CollectorProcess, CollectorStartError, free_port, write_config

__all__ = ["DEMO_BUDGETS", "CollectorStartError", "LocalCollector", "demo_config", "free_port", "is_healthy"]

# The runaway research run crosses "research per run" after a few calls; the support budget only
# warns; the global one shows a window far from its limit.
DEMO_BUDGETS: list[dict] = [
    {"name": "research per run", "scope": "feature", "scope_value": "research",
     "per_run_limit_usd": 0.05, "monthly_limit_usd": 20, "enforcement": "block"},
    {"name": "support monthly", "scope": "feature", "scope_value": "support",
     "monthly_limit_usd": 5, "daily_limit_usd": 1, "enforcement": "warn"},
    {"name": "company", "scope": "global", "monthly_limit_usd": 100, "enforcement": "block"},
]


def demo_config(*, store_path: Path, grpc_port: int = 0, http_port: int = 0, metrics_port: int = 0) -> dict:
    return {
        "receivers": {"otlp": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                               "http": {"endpoint": f"127.0.0.1:{http_port}"}}},
        "prometheus": {"endpoint": f"127.0.0.1:{metrics_port}"},
        "store": {"path": str(store_path)},
        # Demo runs last seconds: a short idle timeout lets "active" settle within a minute.
        "runs": {"idle_timeout_seconds": 30},
        # JSON at info: CollectorProcess reads the bound ports from the "collector.ready" line.
        "log": {"level": "info", "format": "json"},
        "budgets": DEMO_BUDGETS,
    }


def is_healthy(http_url: str, *, timeout_seconds: float = 1.0) -> bool:
    """Whether a collector answers `GET /healthz` at `http_url` with status ok."""
    try:
        with urllib.request.urlopen(f"{http_url.rstrip('/')}/healthz", timeout=timeout_seconds) as answer:
            return json.load(answer).get("status") == "ok"
    except (OSError, urllib.error.URLError, ValueError):
        return False


class LocalCollector(CollectorProcess):
    """`with LocalCollector() as collector:` a collector with the demo's budgets on free 127.0.0.1
    ports, its store and log in a temporary folder removed by `stop()`.

    `metrics_port` may be fixed (e.g. 9464, where grafana/prometheus/prometheus.yml scrapes).
    """

    def __init__(self, *, metrics_port: int | None = None, start_timeout_seconds: float = 30.0) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="cognocient-demo-")
        folder = Path(self._workdir.name)
        config = demo_config(store_path=folder / "cognocient.db", metrics_port=metrics_port or 0)
        super().__init__(write_config(folder, config), start_timeout_seconds=start_timeout_seconds)

    def start(self, timeout_seconds: float | None = None) -> LocalCollector:
        super().start(timeout_seconds)
        return self

    def stop(self, *, grace_seconds: float = 15.0) -> int | None:
        try:
            return super().stop(grace_seconds=grace_seconds)
        finally:
            self._workdir.cleanup()
