"""End to end with agents in their own processes (`configure(endpoint=...)` points the exporter
and the budget checks at the collector): one run split over two processes (the second joins it
from W3C baggage, as a sub-agent called over HTTP does) is limited as one run;
with the collector down, fail_open and fail_closed do what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from cognocient_otel.testing import LLMServer
from collector.process import free_port

from .e2e import start_collector, wait_for_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def llm():
    with LLMServer() as server:
        yield server


def spawn(
    endpoint: str,
    llm: LLMServer,
    run_id: str,
    *,
    calls: int,
    policy: str = "fail_open",
    go: Path | None = None,
    flush: bool = False,
    via_baggage: bool = False,
) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "tests.budgets.agent_process",
        "--endpoint",
        endpoint,
        "--llm",
        llm.base_url,
        "--run-id",
        run_id,
        "--feature",
        "document-processor",
        "--calls",
        str(calls),
        "--policy",
        policy,
    ]
    if go is not None:
        command += ["--go", str(go)]
    if flush:
        command.append("--flush")
    if via_baggage:
        command.append("--via-baggage")
    env = {**os.environ, "OTEL_EXPORTER_OTLP_TIMEOUT": "2", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)


def result_of(process: subprocess.Popen[str]) -> dict:
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return json.loads(output.strip().splitlines()[-1])


def test_one_run_split_over_two_processes_is_limited_as_one_run(tmp_path, llm):
    collector = start_collector(
        tmp_path,
        [
            {
                "name": "document-processor per run",
                "scope": "feature",
                "scope_value": "document-processor",
                "per_run_limit_usd": "0.50",
            },
        ],
    )
    try:
        run_id = str(uuid.uuid4())
        go = tmp_path / "go"
        endpoint = f"http://127.0.0.1:{collector.grpc_port}"
        # The run starts in one process; a sub-agent in another joins it from W3C baggage.
        workers = [
            spawn(endpoint, llm, run_id, calls=20, go=go, flush=True, via_baggage=via_baggage)
            for via_baggage in (False, True)
        ]
        for worker in workers:  # both imported everything and are ready: start them together
            assert json.loads(worker.stdout.readline()) == {"ready": True}
        go.touch()
        results = [result_of(worker) for worker in workers]
        assert [result["run_id"] for result in results] == [run_id, run_id]
        sent = sum(result["sent"] for result in results)
        spent = sum(Decimal(result["cost_usd"]) for result in results)
        # Alone, each process would have made 12 calls of about $0.04 within $0.50: together they
        # share one limit, and both end refused.
        assert all(result["blocked_step"] is not None for result in results), results
        assert all("document-processor per run" in result["reason"] for result in results), results
        assert spent <= Decimal("0.50") and 8 <= sent <= 12, results
        assert llm.request_count() == sent
        run = wait_for_run(collector, run_id, steps=sent)
        assert run["status"] == "blocked" and run["blocked_by"]["budget"] == "document-processor per run"
        assert Decimal(run["cost_usd_exact"]) == spent
    finally:
        collector.stop(grace=2)


@pytest.mark.parametrize(("policy", "sent"), [("fail_open", 3), ("fail_closed", 0)])
def test_collector_down(tmp_path, llm, policy, sent):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = result_of(spawn(endpoint, llm, str(uuid.uuid4()), calls=3, policy=policy))
    assert result["sent"] == sent and llm.request_count() == sent
    if policy == "fail_closed":
        assert result["blocked_step"] == 1 and "unreachable" in result["reason"]
    else:
        assert result["blocked_step"] is None
