"""The collector as a child process: `python -m collector.main --config FILE`, for the demo and tests.

    with CollectorProcess.from_config(folder, config) as collector:   # started, ports bound
        exporter = OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True)
        httpx.get(f"{collector.http_url}/v1/runs")
    # stopped: SIGTERM (the collector drains what it accepted), SIGKILL after a grace period

The ports come from the collector's own `"event":"collector.ready"` log line (collector/logs.py),
so configs can ask for port 0 and nothing races for a port picked in advance. That line is JSON
at level info: a config whose `log` section asks for `format: text` or `level: warning` never
shows it, and `start()` fails after its timeout.

`wait_until_ready` and `stop_process` are the start/stop loop of any server child process (the
tests' Prometheus and Redis use them too).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

__all__ = [
    "CollectorProcess", "CollectorStartError", "ProcessStartError",
    "free_port", "process_tree", "stat_fields", "stop_process",
    "tree_cpu_seconds", "tree_pss_bytes", "tree_rss_bytes", "wait_until_ready", "write_config",
]

LOG_TAIL_CHARS = 4000


class ProcessStartError(RuntimeError):
    """A child process exited before it was ready, or was not ready in time (the log tail says why)."""


CollectorStartError = ProcessStartError  # the name the demo catches for the collector


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now, for servers that cannot bind port 0 and report it (Prometheus)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_until_ready(
    process: subprocess.Popen[Any],
    is_ready: Callable[[], bool],
    *,
    timeout_seconds: float,
    name: str,
    log_tail: Callable[[], str],
    poll_seconds: float = 0.05,
) -> None:
    """Poll `is_ready()` until it is true; raise `ProcessStartError` with the log tail if the
    process exits first or the timeout passes (then the process is stopped, not left behind)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        if is_ready():
            return
        if process.poll() is not None:
            raise ProcessStartError(f"{name} exited {process.returncode}: {log_tail()}")
        if time.monotonic() >= deadline:
            stop_process(process)
            raise ProcessStartError(f"{name} not ready within {timeout_seconds:g} s: {log_tail()}")
        time.sleep(poll_seconds)


def stop_process(process: subprocess.Popen[Any], *, grace_seconds: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited after `grace_seconds`; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=10)


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    """`config` as `folder/collector.yaml`; returns its path."""
    config_path = Path(folder) / "collector.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path


class CollectorProcess:
    """One collector child process on a config file; `start()` may be called again after a stop
    (a restart on the same store). Its log (stderr and stdout) is appended to `log_path`.

    Not thread-safe: one owner starts, signals and stops it.
    """

    def __init__(
        self, config_path: Path, *, log_path: Path | None = None, start_timeout_seconds: float = 30.0
    ) -> None:
        self.config_path = Path(config_path)
        self.log_path = Path(log_path) if log_path else self.config_path.with_suffix(".log")
        self.start_timeout_seconds = start_timeout_seconds
        self.process: subprocess.Popen[bytes] | None = None
        # The last start's `collector.ready` entry: ports, endpoints, store, version.
        self.ready: dict[str, Any] = {}

    @classmethod
    def from_config(cls, folder: Path, config: dict[str, Any], **options: Any) -> CollectorProcess:
        """Write `config` to `folder/collector.yaml` (the log goes to `folder/collector.log`)."""
        return cls(write_config(folder, config), **options)

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self, timeout_seconds: float | None = None) -> CollectorProcess:
        """Start and wait for the ready line; `CollectorStartError` (with the log tail) otherwise."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the collector process is already running; stop() it first")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector.main", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.config_path.parent,
            )
        self.ready = {}

        def is_ready() -> bool:
            self.ready = _ready_entry(self.log_path, offset) or {}
            return bool(self.ready)

        wait_until_ready(
            self.process, is_ready, name="collector", log_tail=self.log_tail,
            timeout_seconds=self.start_timeout_seconds if timeout_seconds is None else timeout_seconds,
        )
        return self

    def signal(self, signum: int, *, timeout_seconds: float = 30.0) -> int:
        """Send `signum` (SIGKILL to test a crash, SIGTERM to test the drain); wait for the exit code."""
        if self.process is None:
            raise RuntimeError("the collector process was never started")
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout_seconds)

    def stop(self, *, grace_seconds: float = 15.0) -> int | None:
        """SIGTERM (the collector drains and commits what it accepted), SIGKILL after `grace_seconds`.
        Returns the exit code, None if it was never started."""
        if self.process is None:
            return None
        return stop_process(self.process, grace_seconds=grace_seconds)

    def pids(self) -> list[int]:
        """The collector's pid and those of its descendants (decode workers and their forkserver)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return process_tree(self.process.pid)

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- where it listens ----------------------------------------------------------------------------
    # Clients connect over loopback whatever the bind address (0.0.0.0 in a container config).

    def _port(self, name: str) -> int:
        if not self.ready:
            raise RuntimeError("the collector is not started: its ports are known once it is ready")
        return int(self.ready[name])

    @property
    def grpc_port(self) -> int:
        return self._port("grpc_port")

    @property
    def http_port(self) -> int:
        return self._port("http_port")

    @property
    def metrics_port(self) -> int:
        return self._port("metrics_port")

    @property
    def grpc_endpoint(self) -> str:
        """`127.0.0.1:PORT`, as grpc channels and `OTLPSpanExporter(insecure=True)` take it."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def otlp_endpoint(self) -> str:
        """`http://127.0.0.1:PORT` (OTLP/gRPC), as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it."""
        return f"http://{self.grpc_endpoint}"

    @property
    def http_url(self) -> str:
        """Base URL of OTLP/HTTP (`/v1/traces`), the runs API and `/healthz`."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    # -- its log -------------------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything every start of this process logged."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self) -> str:
        return self.log_text()[-LOG_TAIL_CHARS:]


def _ready_entry(log_path: Path, offset: int) -> dict[str, Any] | None:
    for line in log_path.read_bytes()[offset:].decode(errors="replace").splitlines():
        if '"collector.ready"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a partly written line: read again on the next poll
        if isinstance(entry, dict) and entry.get("event") == "collector.ready":
            return entry
    return None


# -- a process and its descendants (Linux /proc): what the collector costs, decode workers included --


def _proc_text(pid: int | str, name: str) -> str:
    """`/proc/<pid>/<name>`, or "" when the process has ended (or never was)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return ""


def stat_fields(pid: int | str) -> list[str]:
    """The fields of `/proc/<pid>/stat` after the command name: [state, ppid, ...]; [] once it ended."""
    _, _, after_name = _proc_text(pid, "stat").rpartition(")")
    return after_name.split()


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(entry.name)
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes `pids` have used so far (ended ones count 0)."""
    ticks = 0
    for pid in pids:
        fields = stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_bytes(pids: list[int]) -> int:
    """Resident memory of the processes `pids` (pages shared between them are counted in each)."""
    pages = sum(int(statm.split()[1]) for statm in (_proc_text(pid, "statm") for pid in pids) if statm)
    return pages * os.sysconf("SC_PAGE_SIZE")


def tree_pss_bytes(pids: list[int]) -> int:
    """Proportional set size of the processes `pids`: each shared page divided among its sharers,
    so the sum is the memory the tree really takes (RSS counts a page in every process mapping it)."""
    return sum(
        int(line.split()[1]) * 1024
        for pid in pids
        for line in _proc_text(pid, "smaps_rollup").splitlines()
        if line.startswith("Pss:")
    )
