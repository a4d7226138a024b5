"""`cognocient-demo`: a real collector subprocess, the local LLM server, the real openai SDK."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from dashboard_files import GRAFANA_DIR

from collector.demo.local_collector import DEMO_BUDGETS, LocalCollector
from collector.process import free_port

DEMO = [shutil.which("cognocient-demo")] if shutil.which("cognocient-demo") else [
    sys.executable, "-m", "collector.demo"]


def _demo(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEMO, *args], capture_output=True, text=True, timeout=timeout)


def _table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("run id"))
    return [line.split() for line in lines[start + 2:] if line.strip()]


def test_quick_demo_runs_normal_blocked_and_looping_agents() -> None:
    result = _demo("--quick", "--metrics-port", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _table_rows(result.stdout)
    # 2 rounds of a support and a research run, plus the runaway and the looping run.
    assert len(rows) == 6, result.stdout
    blocked = [row for row in rows if row[3] == "blocked"]
    assert len(blocked) == 1, result.stdout
    assert blocked[0][1:3] == ["research", "researcher"]
    assert "research per run" in " ".join(blocked[0])
    # The runaway run stopped at the per-run limit (0.05 USD) before its next ~0.02 USD call.
    assert 0.03 < float(blocked[0][5]) <= 0.05
    looping = [row for row in rows if row[1] == "document-processor"]
    assert looping and looping[0][6] == "loop", result.stdout
    assert {row[3] for row in rows if row not in blocked} == {"finished"}


def test_demo_against_a_running_collector() -> None:
    with LocalCollector() as collector:
        result = _demo("--quick", "--collector-endpoint", collector.otlp_endpoint,
                       "--collector-http", collector.http_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(_table_rows(result.stdout)) == 6


def test_keep_running_sends_until_interrupted() -> None:
    process = subprocess.Popen([*DEMO, "--quick", "--metrics-port", "0", "--keep-running"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        output = ""
        while "Ctrl-C to stop" not in output and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output += line
        assert "Ctrl-C to stop" in output, output + process.stderr.read()
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, errors
    assert "stopped" in rest


def test_an_unreachable_collector_is_a_clear_error() -> None:
    port = free_port()
    result = _demo("--quick", "--collector-endpoint", f"http://127.0.0.1:{port}",
                   "--collector-http", f"http://127.0.0.1:{port}", timeout=30)
    assert result.returncode == 1
    assert "no collector answers" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [(["--rounds", "0"], "--rounds"),
                                               (["--pause", "-1"], "--pause"),
                                               (["--metrics-port", "70000"], "--metrics-port")])
def test_bad_arguments_are_refused(args: list[str], message: str) -> None:
    result = _demo(*args, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_compose_collector_has_the_demo_budgets() -> None:
    """The docker-compose stack runs the demo against grafana/collector.yaml: same budgets."""
    compose_config = yaml.safe_load((GRAFANA_DIR / "collector.yaml").read_text())
    assert compose_config["budgets"] == DEMO_BUDGETS
