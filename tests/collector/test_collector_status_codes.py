"""OTLP status semantics: malformed, unusable spans, too large, overload; nothing crashes the collector."""

from __future__ import annotations

import gzip
import json
import random
import socket
import threading
import time
import uuid
from decimal import Decimal

import grpc
import httpx
import pytest
from collector_harness import (
    Agent,
    get_json,
    grpc_exporter,
    llm_attributes,
    make_request,
    make_span,
    wait_for,
)
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from collector.app import Collector
from collector.model import SpanBatch
from collector.pipeline import Stage

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def grpc_call(collector: Collector, body: bytes) -> tuple[grpc.StatusCode, bytes | str, dict]:
    with grpc.insecure_channel(
        f"127.0.0.1:{collector.grpc_port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        try:
            response = call(body, timeout=10)
        except grpc.RpcError as error:
            return error.code(), error.details(), dict(error.trailing_metadata() or ())
        return grpc.StatusCode.OK, response, {}


def http_post(
    collector: Collector, body: bytes, content_type: str = "application/x-protobuf", **headers: str
):
    return httpx.post(
        f"http://127.0.0.1:{collector.http_port}/v1/traces",
        content=body,
        headers={"Content-Type": content_type, **headers},
        timeout=10,
    )


def assert_still_serving(collector: Collector) -> None:
    run_id = str(uuid.uuid4())
    code, _, _ = grpc_call(collector, make_request(make_span(llm_attributes(run_id))).SerializeToString())
    assert code == grpc.StatusCode.OK
    status, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")
    assert status == 200 and run["steps"] == 1


def test_random_bytes_and_truncated_protobuf_are_invalid_argument_and_400(collector: Collector) -> None:
    garbage = random.Random(7).randbytes(4096)
    valid = make_request(*(make_span(llm_attributes("r")) for _ in range(5))).SerializeToString()
    for body in (garbage, valid[: len(valid) // 2], b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"):
        code, details, _ = grpc_call(collector, body)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        response = http_post(collector, body)
        assert response.status_code == 400
        status = status_pb2.Status.FromString(response.content)
        assert status.code == 3 and "protobuf" in status.message
    assert collector.stats.requests.get(("grpc", "INVALID_ARGUMENT")) == 3
    assert_still_serving(collector)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        b"[1, 2, 3]",
        json.dumps({"resourceSpans": "everything"}).encode(),
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5, "traceId": 7}]}]}]}).encode(),
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz-not-hex"}]}]}]}).encode(),
        json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}
        ).encode(),
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": [1, 2]}]}]}]}).encode(),
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {
                                        "attributes": [
                                            {
                                                "key": "deep",
                                                "value": {
                                                    "kvlistValue": {
                                                        "values": [{"key": "x", "value": {"kvlistValue": {}}}]
                                                    }
                                                },
                                            }
                                        ]
                                    }
                                ]
                            }
                        ]
                    }
                ]
            }
        )
        .replace(
            '{"kvlistValue": {}}',
            '{"kvlistValue": {"values": [{"key": "x", "value": ' * 150 + "{}" + "}]}}" * 150,
        )
        .encode(),
    ],
)
def test_wrong_json_is_400_with_a_message(collector: Collector, payload: bytes) -> None:
    response = http_post(collector, payload, "application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 3 and body["message"]


def test_unusable_spans_are_rejected_with_a_message_and_the_rest_accepted(collector: Collector) -> None:
    run_id = str(uuid.uuid4())
    now = time.time_ns()
    good = make_span(llm_attributes(run_id, cost=0.5))
    bad = [
        make_span(llm_attributes(run_id), trace_id=b"\x01" * 15),
        make_span(llm_attributes(run_id), span_id=b""),
        make_span(llm_attributes(run_id), trace_id=bytes(16)),
        make_span(llm_attributes(run_id), parent_span_id=b"\x02" * 3),
        make_span(llm_attributes(run_id), start_ns=0, duration_ns=0),
        make_span(llm_attributes(run_id), start_ns=now + 80 * 365 * 86_400 * 10**9),
        make_span(llm_attributes("x" * 10_000)),
        make_span(llm_attributes(run_id, **{"gen_ai.usage.input_tokens": 2**62})),
    ]
    huge_model = make_span(llm_attributes(run_id, model="m" * 100_000, cost=0.25))
    code, body, _ = grpc_call(collector, make_request(good, *bad, huge_model).SerializeToString())
    assert code == grpc.StatusCode.OK
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == len(bad)
    message = response.partial_success.error_message
    for fragment in (
        "16 non-zero bytes",
        "8 non-zero bytes",
        "parent span id",
        "zero",
        "future",
        "longer than 256",
        "out of range",
    ):
        assert fragment in message, fragment
    status, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")
    assert status == 200
    assert Decimal(run["cost_usd_exact"]) == Decimal("0.75")
    assert sorted(map(len, run["models"])) == [6, 256]
    assert collector.stats.spans_rejected.get(("grpc", "unusable")) == len(bad)


def test_a_client_that_stops_sending_is_dropped_and_the_server_goes_on(start_collector) -> None:
    import socket

    collector = start_collector(
        receivers={
            "otlp": {
                "grpc": {"endpoint": "127.0.0.1:0"},
                "http": {"endpoint": "127.0.0.1:0", "read_timeout_seconds": 0.5},
            }
        }
    )
    with socket.create_connection(("127.0.0.1", collector.http_port)) as slow:
        slow.sendall(
            b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 1000\r\n\r\nabc"
        )
        assert_still_serving(collector)  # another client is served meanwhile
        slow.settimeout(5)
        assert slow.recv(100) == b""  # dropped after the read timeout
    assert_still_serving(collector)


def test_partial_success_over_http_json(collector: Collector) -> None:
    payload = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0102",
                                "spanId": "0000000000000001",
                                "name": "chat",
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                            },
                        ]
                    }
                ]
            }
        ]
    }
    response = http_post(collector, json.dumps(payload).encode(), "application/json")
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "trace id has 2 bytes" in response.json()["partialSuccess"]["errorMessage"]


def test_size_limits_are_resource_exhausted_and_413(start_collector) -> None:
    collector = start_collector(
        receivers={
            "otlp": {
                "grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 1},
                "http": {"endpoint": "127.0.0.1:0", "max_request_body_mib": 1},
            }
        }
    )
    big = make_request(
        make_span(llm_attributes("big", **{"padding": "p" * (2 * 1024 * 1024)}))
    ).SerializeToString()
    code, _, _ = grpc_call(collector, big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert http_post(collector, big).status_code == 413
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 1024 * 1024
    assert http_post(collector, bomb, **{"Content-Encoding": "gzip"}).status_code == 413
    assert http_post(collector, b"\x1f\x8b garbage", **{"Content-Encoding": "gzip"}).status_code == 400
    whole = gzip.compress(make_request(make_span(llm_attributes("cut"))).SerializeToString())
    cut_short = http_post(collector, whole[: len(whole) // 2], **{"Content-Encoding": "gzip"})
    assert cut_short.status_code == 400 and "ends inside a member" in cut_short.text
    assert http_post(collector, whole + b"junk", **{"Content-Encoding": "gzip"}).status_code == 400
    assert get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/cut")[0] == 404  # nothing half-taken
    assert http_post(collector, b"x", "text/plain").status_code == 415
    assert_still_serving(collector)


def test_a_gzip_body_of_several_members_is_inflated_whole(collector: Collector) -> None:
    # RFC 1952 allows several members (`cat a.gz b.gz`); only the first was read, the rest lost.
    first, second = (make_request(make_span(llm_attributes(r))).SerializeToString() for r in ("m-1", "m-2"))
    body = gzip.compress(first) + gzip.compress(second)
    answer = http_post(collector, body, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200
    for run_id in ("m-1", "m-2"):
        status, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")
        assert status == 200 and run["steps"] == 1, run_id


def test_two_different_content_lengths_are_400(collector: Collector) -> None:
    body = make_request(make_span(llm_attributes("cl"))).SerializeToString()
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(body)}\r\nContent-Length: {len(body) + 1}\r\n\r\n".encode() + body
        )
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert_still_serving(collector)


class GateStage(Stage):
    """Holds the writer inside the pipeline until the test opens the gate."""

    name = "gate"

    def __init__(self, next: Stage, entered: threading.Event, gate: threading.Event) -> None:
        super().__init__(next)
        self.entered, self.gate = entered, gate

    def process(self, batch: SpanBatch) -> None:
        self.entered.set()
        assert self.gate.wait(20)


def test_overload_is_resource_exhausted_with_retry_info_and_429_and_the_sdk_retries(start_collector) -> None:
    entered, gate = threading.Event(), threading.Event()
    collector = start_collector(
        plugins=[lambda c: c.add_stage(lambda nxt: GateStage(nxt, entered, gate))],
        ingest={"queue_size": 1, "max_group_requests": 1, "retry_after_seconds": 1},
    )
    run_id = str(uuid.uuid4())
    bodies = [make_request(make_span(llm_attributes(run_id, cost=0.1))).SerializeToString() for _ in range(2)]
    first = threading.Thread(target=grpc_call, args=(collector, bodies[0]))
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=grpc_call, args=(collector, bodies[1]))
    second.start()
    wait_for(lambda: collector.ingest.depth == 1, message="the queue to fill")

    code, _details, trailers = grpc_call(
        collector, make_request(make_span(llm_attributes(run_id))).SerializeToString()
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.seconds == 1
    rich = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert rich.code == 8 and rich.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    response = http_post(collector, make_request(make_span(llm_attributes(run_id))).SerializeToString())
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"

    # The OTel SDK exporter gets RESOURCE_EXHAUSTED, waits the RetryInfo delay, and retries.
    agent = Agent(grpc_exporter(collector))
    exporter = agent.provider._active_span_processor._span_processors[0].span_exporter
    with agent.tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes(llm_attributes(run_id, cost=1.0))
    results: list[SpanExportResult] = []
    sdk_thread = threading.Thread(target=lambda: results.append(agent.provider.force_flush(20_000)))
    sdk_thread.start()
    time.sleep(0.4)
    gate.set()
    sdk_thread.join(20)
    first.join(10)
    second.join(10)
    assert results == [True]
    assert exporter is not None
    status, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")
    assert status == 200
    assert Decimal(run["cost_usd_exact"]) == Decimal("1.2")
    assert collector.stats.requests.get(("grpc", "RESOURCE_EXHAUSTED")) >= 2
    agent.shutdown()
