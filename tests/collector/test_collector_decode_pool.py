"""Decode worker processes (`collector/decode_pool.py`): same records as in-thread, and nothing lost
when a worker dies or the collector is killed."""

from __future__ import annotations

import gzip
import os
import random
import signal
import threading
import time
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from collector_harness import get_json, llm_attributes, make_request, make_span, wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

from collector import decode_pool
from collector.decode import MalformedRequest, decode_request, parse_protobuf
from collector.decode_pool import DecodePool, usable_cores, workers_for
from collector.process import stat_fields

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RECORD_FIELDS = [name for name in ("tenant", "run_id", "trace_id", "span_id", "parent_span_id", "name",
                 "kind", "start_ns", "end_ns", "status_code", "is_llm", "is_run_root", "operation",
                 "provider", "request_model", "response_model", "feature", "agent", "input_tokens",
                 "output_tokens", "cache_read_tokens", "cache_creation_tokens", "reasoning_tokens",
                 "cost_usd", "cost_source", "step", "fingerprint", "error_type", "tool_name",
                 "tool_args_hash", "budget_decision", "server_address", "has_explicit_run", "dedup_key")]

# Values of every AnyValue type, in range and not: the decoder's general paths must agree too.
ODD_VALUES: list[Any] = [
    "", "x" * 300, "gpt-4o", 0, -5, 10**13, 7, 3.5, float("inf"), True, False, b"\x00\x01",
    ["a", "b"], [], [1, 2], "12", "not a number", 0.0001, 2_000_000.0,
]
KEYS = [
    "gen_ai.operation.name", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens", "cognocient.run.id", "cognocient.tenant", "cognocient.feature",
    "gen_ai.agent.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.reasoning.output_tokens",
    "server.address", "cognocient.step", "cognocient.request.fingerprint",
    "cognocient.budget.decision", "cognocient.cost.usd", "cognocient.cost.source", "error.type",
    "http.response.status_code", "gen_ai.tool.name", "gen_ai.tool.call.arguments", "custom.key",
]


def random_request(rng: random.Random, spans: int) -> bytes:
    """Several resources and scopes of spans: mostly LLM spans, some with odd values or bad ids."""
    request = ExportTraceServiceRequest()
    for _resource in range(3):
        resource_spans = ResourceSpans()
        if rng.random() < 0.5:
            resource_spans.resource.CopyFrom(make_request(resource={"cognocient.tenant": "acme"})
                                             .resource_spans[0].resource)
        for _scope in range(2):
            scope = ScopeSpans()
            for _ in range(spans // 6):
                attributes = llm_attributes(f"run-{rng.randrange(5)}", cost=rng.choice([0.01, None, 1e-7]))
                for _odd in range(rng.randrange(4)):
                    attributes[rng.choice(KEYS)] = rng.choice(ODD_VALUES)
                span = make_span(attributes, parent_span_id=rng.choice([b"", os.urandom(8)]))
                if rng.random() < 0.05:
                    span.span_id = rng.choice([b"", bytes(8), b"\x01" * 7])
                if rng.random() < 0.05:
                    span.end_time_unix_nano = span.start_time_unix_nano - 1
                scope.spans.append(span)
            resource_spans.scope_spans.append(scope)
        request.resource_spans.append(resource_spans)
    return request.SerializeToString()


@pytest.fixture(scope="module")
def pool() -> Any:
    pool = DecodePool(1, min_body_bytes=0).start()
    wait_for(pool.worker_pids, timeout=60, message="decode worker up")
    yield pool
    pool.close()


def test_records_decoded_in_a_worker_are_the_records_decoded_in_thread(pool: DecodePool) -> None:
    rng = random.Random(7)
    compared = 0
    for _ in range(12):
        body = random_request(rng, 120)
        from_worker = pool.decode(body, "grpc")
        in_thread = decode_request(parse_protobuf(body), transport="grpc")
        assert (from_worker.received, from_worker.rejected, from_worker.reject_messages) == (
            in_thread.received, in_thread.rejected, in_thread.reject_messages)
        assert len(from_worker.records) == len(in_thread.records) > 0
        for ours, theirs in zip(from_worker.records, in_thread.records, strict=True):
            assert [getattr(ours, f) for f in RECORD_FIELDS] == [getattr(theirs, f) for f in RECORD_FIELDS]
            assert ours.attributes() == theirs.attributes()
            compared += 1
    assert pool.worker_requests == 12
    assert compared > 500


def test_a_malformed_body_is_refused_from_the_worker_as_from_the_thread(pool: DecodePool) -> None:
    with pytest.raises(MalformedRequest, match="not a protobuf ExportTraceServiceRequest"):
        pool.decode(b"\xff" * 100_000, "grpc")


def test_small_bodies_stay_on_the_receiver_thread() -> None:
    pool = DecodePool(0)  # no workers: everything in-thread, nothing started
    batch = pool.decode(make_request(make_span(llm_attributes("r"))).SerializeToString(), "http")
    assert len(batch.records) == 1 and pool.worker_requests == 0
    assert pool.worker_pids() == set()


@pytest.mark.parametrize(("setting", "cores", "workers"), [
    ("auto", 1, 0), ("auto", 2, 2), ("auto", 8, 2), (0, 8, 0), (3, 1, 3)])
def test_auto_takes_a_worker_per_core_up_to_two_none_on_one(setting: Any, cores: int, workers: int) -> None:
    assert workers_for(setting, cores) == workers


@pytest.mark.parametrize(("cpu_max", "cores"), [
    (None, 8), ("max 100000\n", 8), ("150000 100000\n", 2), ("50000 100000\n", 1),
    ("1600000 100000\n", 8), ("garbage\n", 8)])
def test_usable_cores_are_the_affinity_capped_by_the_cgroup_quota(
    cpu_max: str | None, cores: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert usable_cores(str(path)) == cores


def _export_big_request(port: int, run_id: str, spans: int = 300) -> None:
    spans_of_run = (make_span(llm_attributes(run_id, cost=0.01)) for _ in range(spans))
    body = make_request(*spans_of_run).SerializeToString()
    assert len(body) >= 64 * 1024  # large enough for the pool
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary(EXPORT)(body, timeout=30)


def test_a_collector_decodes_large_requests_in_its_worker_and_survives_its_death(start_collector) -> None:
    collector = start_collector(receivers={"otlp": {
        "grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}, "decode_workers": 1}})
    pool = collector.decode_pool
    [first_worker] = wait_for(pool.worker_pids, timeout=60, message="decode worker up")
    _export_big_request(collector.grpc_port, "run-a")
    assert pool.worker_requests == 1

    os.kill(first_worker, signal.SIGKILL)
    _export_big_request(collector.grpc_port, "run-b")  # decoded in-thread while the pool restarts
    [second_worker] = wait_for(pool.worker_pids, timeout=60, message="a new decode worker")
    assert second_worker != first_worker
    _export_big_request(collector.grpc_port, "run-c")
    assert pool.worker_requests == 2

    spans_of_run = (make_span(llm_attributes("run-http", cost=0.01)) for _ in range(300))
    answer = httpx.post(f"http://127.0.0.1:{collector.http_port}/v1/traces",
                        content=gzip.compress(make_request(*spans_of_run).SerializeToString()),
                        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert answer.status_code == 200 and pool.worker_requests == 3  # OTLP/HTTP goes the same way

    for run_id in ("run-a", "run-b", "run-c", "run-http"):
        status, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")
        assert status == 200 and run["steps"] == 300 and Decimal(str(run["cost_usd"])) == Decimal("3.00")


def test_a_collector_on_its_defaults_decodes_large_requests_in_a_worker_per_core(start_collector) -> None:
    collector = start_collector()  # receivers.otlp.decode_workers left at its default, auto
    pool = collector.decode_pool
    assert pool.workers == workers_for("auto")
    if pool.workers:  # every worker up and known, not only the first to answer
        pids = wait_for(pool.worker_pids, timeout=60, message="decode workers up")
        assert len(pids) == pool.workers
    _export_big_request(collector.grpc_port, "run-default")
    assert pool.worker_requests == (1 if pool.workers else 0)  # one core: decoded on the thread
    status, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/run-default")
    assert status == 200 and run["steps"] == 300


def test_decode_workers_end_with_a_killed_collector(collector_process, tmp_path: Path) -> None:
    process = collector_process(receivers={"otlp": {
        "grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}, "decode_workers": 2}})
    process.start()
    # the collector, the forkserver it starts, and the two workers forked from that
    descendants = wait_for(lambda: (tree := process.pids()) and len(tree) >= 4 and tree[1:],
                           timeout=60, message="decode workers started")
    _export_big_request(process.grpc_port, "run-k")
    assert process.signal(signal.SIGKILL) == -signal.SIGKILL

    def all_gone() -> bool:  # ended, or a zombie nobody reaped yet
        return all(stat_fields(pid)[:1] in ([], ["Z"]) for pid in descendants)
    wait_for(all_gone, timeout=30, message="decode workers exited after the collector was killed")


def test_closing_while_a_worker_waits_for_the_others_is_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    # A collector that fails to start (a port in use) closes its pool at once, when a worker may
    # be waiting in the start barrier for one that will never come: that took 30 s.
    submitted = threading.Event()

    def warm_up_one(pool: DecodePool, executor: Any) -> None:  # the second worker never starts
        executor.submit(decode_pool._worker_pid)
        submitted.set()

    monkeypatch.setattr(DecodePool, "_warm_up", warm_up_one)
    pool = DecodePool(2).start()
    assert submitted.wait(30)
    time.sleep(1.0)  # let the worker start and block in the barrier
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 10


def test_ctrl_c_drains_the_collector_and_its_workers_without_a_traceback(collector_process) -> None:
    process = collector_process(receivers={"otlp": {
        "grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}, "decode_workers": 2}})
    log_offset = process.log_path.stat().st_size if process.log_path.exists() else 0
    process.start()
    wait_for(lambda: '"workers":2' in process.log_path.read_text()[log_offset:],
             timeout=60, message="both decode workers ready")
    tree = process.pids()  # the collector, the forkserver, the resource tracker, the workers
    _export_big_request(process.grpc_port, "run-int")
    for pid in tree:  # what a terminal's Ctrl-C does: SIGINT to the whole process group
        os.kill(pid, signal.SIGINT)
    assert process.process.wait(timeout=30) == 0
    log = process.log_path.read_bytes()[log_offset:].decode()
    assert "collector.stopped" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log and "decode_pool.restart" not in log
    wait_for(lambda: all(stat_fields(pid)[:1] in ([], ["Z"]) for pid in tree[1:]),
             timeout=30, message="decode workers exited with the collector")


class _StalledExecutor:
    """Takes every task and never runs it."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Future:
        self.submitted += 1
        return Future()


def test_a_request_the_worker_is_slow_to_decode_is_decoded_on_the_thread(
    pool: DecodePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that never answers (a real one can answer before a zero timeout is checked on a
    # busy machine), and no wait for it.
    stalled = _StalledExecutor()
    monkeypatch.setattr(pool, "_executor", stalled)
    monkeypatch.setattr("collector.decode_pool.WORKER_TIMEOUT_SECONDS", 0.0)
    body = random_request(random.Random(3), 60)
    before = pool.worker_requests
    batch = pool.decode(body, "grpc")
    expected = decode_request(parse_protobuf(body), transport="grpc")
    assert stalled.submitted == 1 and pool.worker_requests == before
    assert [r.dedup_key for r in batch.records] == [r.dedup_key for r in expected.records]
    assert batch.records[0].raw.__class__ is tuple  # decoded here, not unpacked from a worker
