"""What both OTLP receivers share: decode, queue, wait for the commit, and say what happened.

`TraceReceiver.export` turns one request into an `ExportOutcome` that each transport maps to its
own status (`collector/grpc_server.py`, `collector/http_server.py`):

| outcome | gRPC | HTTP |
|---|---|---|
| accepted (maybe with rejected spans) | OK + partial_success | 200 + partial_success |
| malformed | INVALID_ARGUMENT | 400 |
| too large | RESOURCE_EXHAUSTED | 413 |
| overloaded | RESOURCE_EXHAUSTED + RetryInfo | 429 + Retry-After |
| shutting down / commit timed out | UNAVAILABLE | 503 + Retry-After |
| internal error | INTERNAL | 500 |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from collector.decode import MalformedRequest, decode_request, parse_json
from collector.decode_pool import DecodePool
from collector.ingest import Ingest, Overloaded, ShuttingDown
from collector.model import SpanBatch
from collector.stats import CollectorStats

logger = logging.getLogger(__name__)

OutcomeKind = Literal["ok", "malformed", "too_large", "overloaded", "unavailable", "internal"]


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    kind: OutcomeKind
    message: str = ""
    rejected_spans: int = 0
    retry_after_seconds: int = 0

    def response(self) -> ExportTraceServiceResponse:
        response = ExportTraceServiceResponse()
        if self.rejected_spans:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=self.rejected_spans, error_message=self.message)
            )
        return response


class TraceReceiver:
    def __init__(
        self, *, ingest: Ingest, stats: CollectorStats, ack_timeout_seconds: float,
        decoder: DecodePool | None = None,
    ) -> None:
        self.ingest = ingest
        self.stats = stats
        self.ack_timeout = ack_timeout_seconds
        self.decoder = decoder if decoder is not None else DecodePool(0)

    def refuse(self, transport: str, kind: OutcomeKind, message: str) -> ExportOutcome:
        """A request refused before its spans could be counted (malformed, too large)."""
        self.stats.spans_rejected.inc((transport, kind))
        return ExportOutcome(kind, message)

    def export_body(self, body: bytes, transport: str, *, json: bool = False) -> ExportOutcome:
        """A request body, protobuf (decoded in a worker process when that pays) or OTLP/JSON
        (decoded here): refused if malformed, else queued and answered after its commit."""
        try:
            if json:
                batch = decode_request(parse_json(body), transport=transport)
            else:
                batch = self.decoder.decode(body, transport)
        except MalformedRequest as error:
            return self.refuse(transport, "malformed", str(error))
        except Exception:  # a decoder bug must not take the request thread down with a traceback
            logger.exception("decoding an export request failed", extra={"event": "decode.failed"})
            return ExportOutcome("internal", "the collector could not decode the request")
        return self._export_batch(batch, transport)

    def _export_batch(self, batch: SpanBatch, transport: str) -> ExportOutcome:
        stats = self.stats
        stats.spans_received.inc((transport,), batch.received)
        if batch.rejected:
            stats.spans_rejected.inc((transport, "unusable"), batch.rejected)
        message = ""
        if batch.rejected:
            message = f"{batch.rejected} span(s) rejected: " + "; ".join(batch.reject_messages)
        if not batch.records:
            return ExportOutcome("ok", message, batch.rejected)
        try:
            item = self.ingest.submit(batch)
        except Overloaded as overloaded:
            stats.spans_rejected.inc((transport, "overloaded"), len(batch.records))
            return ExportOutcome(
                "overloaded", str(overloaded), retry_after_seconds=overloaded.retry_after_seconds
            )
        except ShuttingDown as stopping:
            return ExportOutcome("unavailable", str(stopping), retry_after_seconds=1)
        try:
            item.wait(self.ack_timeout)
        except TimeoutError:
            # Not acknowledged: the exporter retries, and dedup makes the retry harmless if the
            # batch commits after all.
            return ExportOutcome("unavailable", "the store did not commit in time", retry_after_seconds=1)
        except Exception:
            return ExportOutcome("internal", "the collector could not store the spans")
        return ExportOutcome("ok", message, batch.rejected)
