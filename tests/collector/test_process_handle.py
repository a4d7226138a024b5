"""`collector.process.CollectorProcess`, the handle the demo and the end-to-end tests start collectors
with: ports from the ready line, a clear error with the log when a start fails, SIGTERM drain."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from collector_harness import base_config

from collector.process import CollectorProcess, CollectorStartError


def test_ports_come_from_the_ready_line_and_stop_drains_with_exit_code_zero(tmp_path: Path) -> None:
    collector = CollectorProcess.from_config(tmp_path, base_config(tmp_path))
    with pytest.raises(RuntimeError, match="not started"):
        collector.http_url  # noqa: B018 - the property is what is tested
    with collector:
        ports = {collector.grpc_port, collector.http_port, collector.metrics_port}
        assert 0 not in ports and len(ports) == 3
        assert collector.otlp_endpoint == f"http://{collector.grpc_endpoint}"
        assert httpx.get(f"{collector.http_url}/healthz", timeout=5).json()["status"] == "ok"
        assert "cognocient_" in httpx.get(collector.metrics_url, timeout=5).text
        with pytest.raises(RuntimeError, match="already running"):
            collector.start()
    assert collector.process is not None and collector.process.returncode == 0
    assert '"event":"collector.stopped"' in collector.log_text()


def test_a_restart_reads_the_new_ready_line_and_signal_returns_the_exit_code(tmp_path: Path) -> None:
    collector = CollectorProcess.from_config(tmp_path, base_config(tmp_path)).start()
    first = collector.http_port
    assert collector.signal(signal.SIGKILL) == -signal.SIGKILL
    collector.start()
    try:
        assert collector.log_text().count('"event":"collector.ready"') == 2
        assert httpx.get(f"{collector.http_url}/healthz", timeout=5).status_code == 200
        assert collector.http_port == collector.ready["http_port"] and first > 0
    finally:
        assert collector.stop() == 0


def test_a_collector_that_exits_at_start_is_an_error_with_its_log(tmp_path: Path) -> None:
    config = base_config(tmp_path, runs={"idle_timeout_seconds": -5})
    collector = CollectorProcess.from_config(tmp_path, config)
    with pytest.raises(CollectorStartError, match=r"collector exited 2: .*runs\.idle_timeout_seconds"):
        collector.start()


def test_a_collector_never_ready_is_stopped_and_an_error_after_the_timeout(tmp_path: Path) -> None:
    # Text logs at warning level never show the JSON ready line the handle waits for.
    config = base_config(tmp_path, log={"level": "warning", "format": "text"})
    collector = CollectorProcess.from_config(tmp_path, config)
    with pytest.raises(CollectorStartError, match=r"collector not ready within 2 s"):
        collector.start(timeout_seconds=2)
    assert collector.process is not None and collector.process.poll() is not None  # not left running
