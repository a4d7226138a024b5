"""A real Prometheus (Debian's /usr/bin/prometheus) for tests: temp config, temp storage, free port.

Scrapes and evaluates every second, loads a copy of the rules whose `for:` durations are cut
to seconds, and answers the HTTP API through `query()`, `query_range()`, `label_values()`,
`alerts()`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

import yaml

from collector.process import free_port, stop_process, wait_until_ready

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def short_for_rules(rules_path: Path, target: Path, *, for_duration: str = "2s") -> Path:
    """A copy of `rules_path` whose alerts wait `for_duration` instead of minutes."""
    document = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = for_duration
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


class Prometheus:
    def __init__(self, workdir: Path, *, scrape_target: str, rule_files: list[Path]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "cognocient-collector",
                                "static_configs": [{"targets": [scrape_target]}]}],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_seconds: float = 30.0) -> Prometheus:
        with (self.workdir / "prometheus.log").open("wb") as log:
            self._process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until_ready(self._process, self._is_ready, timeout_seconds=timeout_seconds,
                         name="prometheus", log_tail=self.log, poll_seconds=0.1)
        return self

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
        self._process = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def api(self, path: str, params: dict[str, str] | None = None) -> dict:
        """GET /api/v1/<path>; returns the JSON body, error answers (HTTP 400/422) included."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def query(self, expr: str) -> dict:
        return self.api("query", {"query": expr})

    def query_range(self, expr: str, *, seconds: int = 60, step: str = "2s") -> dict:
        now = time.time()
        return self.api("query_range", {"query": expr, "start": f"{now - seconds:.3f}",
                                        "end": f"{now:.3f}", "step": step})

    def label_values(self, label: str, selector: str) -> dict:
        return self.api(f"label/{label}/values", {"match[]": selector})

    def alerts(self) -> list[dict]:
        return self.api("alerts")["data"]["alerts"]


def _post_traces(http_url: str, body: bytes) -> int:
    request = urllib.request.Request(f"{http_url}/v1/traces", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def send_duplicate_and_malformed_spans(http_url: str) -> list[int]:
    """What exporters and broken clients do: deliver a span twice, send a bad span and a bad body.

    Fills the collector-health panels that stay empty on a clean stack. Returns the HTTP statuses.
    """
    now = time.time_ns()
    span = {"traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "chat gpt-4o-mini",
            "kind": 3, "startTimeUnixNano": str(now - 1_000_000), "endTimeUnixNano": str(now),
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}

    def payload(*spans: dict) -> bytes:
        scope_spans = [{"scope": {}, "spans": list(spans)}]
        return json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": scope_spans}]}).encode()

    return [
        _post_traces(http_url, payload(span)),
        _post_traces(http_url, payload(span)),  # the same span again: a duplicate
        _post_traces(http_url, payload(dict(span, traceId="not-hex", spanId="01"))),
        _post_traces(http_url, b"{not json"),
    ]
