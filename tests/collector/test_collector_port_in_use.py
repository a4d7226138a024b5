"""A port the collector cannot bind (held by another process) ends `cognocient-collector` at once,
exit code 1, with an error naming the endpoint and what it was for; no hang, no traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from collector_harness import base_config

PURPOSES = {"grpc": "OTLP/gRPC", "http": "OTLP/HTTP", "metrics": "Prometheus /metrics"}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket is listening on for the whole test."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize("taken", sorted(PURPOSES))
def test_a_port_in_use_exits_1_promptly_naming_the_endpoint(
    tmp_path: Path, busy_port: int, taken: str
) -> None:
    endpoint = f"127.0.0.1:{busy_port}"
    if taken == "metrics":
        config = base_config(tmp_path, prometheus={"endpoint": endpoint})
    else:
        config = base_config(tmp_path)
        config["receivers"]["otlp"][taken] = {"endpoint": endpoint}
    config_path = tmp_path / "collector.yaml"
    config_path.write_text(yaml.safe_dump(config))

    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "collector.main", "--config", str(config_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    try:
        code = process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the collector neither started nor exited with {endpoint} taken for {PURPOSES[taken]}")
    finally:
        stderr = process.stderr.read().decode() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
    elapsed = time.monotonic() - started

    assert code == 1, stderr
    assert elapsed < 10, f"took {elapsed:.1f} s to give up"
    assert "Traceback" not in stderr
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    failures = [entry for entry in entries if entry.get("event") == "collector.start_failed"]
    assert len(failures) == 1, stderr
    message = failures[0]["msg"]
    assert f"cannot listen on {endpoint} for {PURPOSES[taken]}" in message, message
    assert failures[0]["level"] == "error"
    assert not any(entry.get("event") == "collector.ready" for entry in entries)
