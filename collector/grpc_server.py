"""OTLP/gRPC: TraceService/Export and the gRPC health service, on one server that takes extra servicers.

Export is registered with a raw-bytes handler so that the collector, not grpcio, parses the
request: a body that is not protobuf gets INVALID_ARGUMENT (grpcio's own deserializer would
answer INTERNAL, which exporters retry forever). Overload is RESOURCE_EXHAUSTED with a RetryInfo
both in the standard `grpc-status-details-bin` trailer (a google.rpc.Status) and in the
`google.rpc.retryinfo-bin` trailer that the OpenTelemetry Python exporter reads.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.receiver import ExportOutcome, TraceReceiver

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"

_CODES = {
    "malformed": (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    "too_large": (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
    "overloaded": (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
    "unavailable": (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    "internal": (grpc.StatusCode.INTERNAL, code_pb2.INTERNAL),
}

ServicerRegistration = Callable[[grpc.Server], None]
"""Adds a servicer to the server, e.g. `lambda s: add_BudgetServiceServicer_to_server(servicer, s)`."""


class GrpcServer:
    def __init__(
        self,
        *,
        receiver: TraceReceiver,
        endpoint: str,
        max_recv_msg_size_mib: int,
        max_workers: int,
        extra_servicers: list[ServicerRegistration],
    ) -> None:
        self.receiver = receiver
        max_bytes = max_recv_msg_size_mib * 1024 * 1024
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cognocient-grpc"),
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=max_workers * 8,
        )
        handler = grpc.method_handlers_generic_handler(
            TRACE_SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export,
                    request_deserializer=None,
                    response_serializer=ExportTraceServiceResponse.SerializeToString,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for register in extra_servicers:
            register(self.server)
        try:
            self.port = self.server.add_insecure_port(endpoint)
        except RuntimeError:  # recent grpcio raises where older releases returned port 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {endpoint} for OTLP/gRPC (address in use or not local?)")

    def start(self) -> None:
        self.server.start()
        for service in ("", TRACE_SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float) -> None:
        """Refuse new RPCs, let those running finish (they wait for their commit)."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)

    def _export(self, body: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        receiver = self.receiver
        outcome = receiver.export_body(body, "grpc")
        stats = receiver.stats
        if outcome.kind == "ok":
            stats.requests.inc(("grpc", "OK"))
            return outcome.response()
        grpc_code, rpc_code = _CODES[outcome.kind]
        stats.requests.inc(("grpc", grpc_code.name))
        _abort(context, grpc_code, rpc_code, outcome)
        raise AssertionError("unreachable: context.abort raises")


def _abort(context: Any, grpc_code: grpc.StatusCode, rpc_code: int, outcome: ExportOutcome) -> None:
    details = []
    trailers = []
    if outcome.retry_after_seconds:
        delay = duration_pb2.Duration(seconds=outcome.retry_after_seconds)
        retry_info = error_details_pb2.RetryInfo(retry_delay=delay)
        packed = any_pb2.Any()
        packed.Pack(retry_info)
        details.append(packed)
        trailers.append(("google.rpc.retryinfo-bin", retry_info.SerializeToString()))
    status = status_pb2.Status(code=rpc_code, message=outcome.message, details=details)
    trailers.append(("grpc-status-details-bin", status.SerializeToString()))
    context.set_trailing_metadata(tuple(trailers))
    context.abort(grpc_code, outcome.message)
