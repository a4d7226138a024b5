"""The collector as a real process: --version, bad config exit 2, SIGKILL restart, SIGTERM drain."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import grpc
import httpx
from collector_harness import llm_attributes, make_request, make_span

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def export(endpoint: str, body: bytes, timeout: float = 5) -> grpc.StatusCode:
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        try:
            call(body, timeout=timeout, wait_for_ready=False)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK


def run_cost(db_path: Path, run_id: str) -> tuple[Decimal, int]:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT cost_usd, steps FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return (Decimal(row[0]), row[1]) if row else (Decimal(0), 0)


def test_version_and_bad_config_exit_code(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "collector.main", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("cognocient-collector ")
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: {idle_timeout_seconds: -5}\n")
    result = subprocess.run(
        [sys.executable, "-m", "collector.main", "--config", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "runs.idle_timeout_seconds" in result.stderr and "greater than 0" in result.stderr


def test_sigkill_between_exports_loses_nothing_acknowledged_and_counts_nothing_twice(
    collector_process, tmp_path: Path
) -> None:
    process = collector_process().start()
    run_id = str(uuid.uuid4())
    spans_per_request, requests = 20, 60
    bodies = [
        make_request(
            *(make_span(llm_attributes(run_id, cost=0.01)) for _ in range(spans_per_request))
        ).SerializeToString()
        for _ in range(requests)
    ]
    acknowledged: list[int] = []
    attempted: list[int] = []

    def send_until_killed() -> None:
        for index, body in enumerate(bodies):
            attempted.append(index)
            if export(process.grpc_endpoint, body) != grpc.StatusCode.OK:
                return
            acknowledged.append(index)

    sender = threading.Thread(target=send_until_killed)
    sender.start()
    # Bounded: a collector that refuses the exports must fail the test with its log, not hang it.
    deadline = time.monotonic() + 30
    while len(acknowledged) < 10:
        assert sender.is_alive(), f"export {len(attempted) - 1} was refused: {process.log_text()}"
        assert time.monotonic() < deadline, f"10 exports not acknowledged in 30 s: {process.log_text()}"
        time.sleep(0.005)
    assert process.signal(signal.SIGKILL) == -signal.SIGKILL
    sender.join(10)
    assert 10 <= len(acknowledged) < requests, "the kill must land between exports"

    db = tmp_path / "collector.db"
    cost, steps = run_cost(db, run_id)
    assert cost == steps * Decimal("0.01")
    per_request = Decimal("0.01") * spans_per_request
    assert cost >= len(acknowledged) * per_request  # every acknowledged span survived the kill
    assert cost <= len(attempted) * per_request

    # Restart on the same store; the exporter re-sends what it was not sure of, and more.
    restarted = collector_process().start()
    for body in bodies:
        assert export(restarted.grpc_endpoint, body) == grpc.StatusCode.OK
    response = httpx.get(f"{restarted.http_url}/v1/runs/{run_id}", timeout=5).json()
    assert Decimal(response["cost_usd_exact"]) == requests * per_request
    assert response["steps"] == requests * spans_per_request
    assert response["status"] == "active"  # still running: it goes on accumulating
    assert restarted.signal(signal.SIGTERM) == 0


def test_sigterm_drains_accepted_requests_and_exits_zero(collector_process, tmp_path: Path) -> None:
    process = collector_process().start()
    run_id = str(uuid.uuid4())
    results: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(30):
            body = make_request(*(make_span(llm_attributes(run_id, cost=0.5)) for _ in range(50)))
            code = export(process.grpc_endpoint, body.SerializeToString())
            with lock:
                results.append(code)
            if code != grpc.StatusCode.OK:
                return

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    while len(results) < 8:
        time.sleep(0.005)
    assert process.signal(signal.SIGTERM) == 0
    for thread in clients:
        thread.join(15)
    ok = results.count(grpc.StatusCode.OK)
    assert ok >= 8
    cost, steps = run_cost(tmp_path / "collector.db", run_id)
    # Drained: everything acknowledged is committed. In-flight requests the server still accepted
    # were committed too before it answered, so the store may hold more than the client saw OK.
    assert steps >= ok * 50
    assert cost == Decimal("0.5") * steps
    assert '"event":"collector.stopped"' in process.log_text()
