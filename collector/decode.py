"""OTLP trace requests (protobuf or OTLP/JSON) -> a `SpanBatch` of `SpanRecord`s.

This is the hot path of ingest: each span's attributes are walked once, and only the keys the
collector uses (`_FIELD_OF`) are converted from protobuf values; the others stay in the protobuf
and are decoded only if a stage asks (`SpanRecord.attributes()`).

What makes a request malformed (`MalformedRequest` -> INVALID_ARGUMENT / 400, not retried): bytes
that are not an ExportTraceServiceRequest, JSON that is not OTLP/JSON (wrong types, bad hex ids).
What makes one span unusable (counted in `partial_success.rejected_spans`, the rest accepted):
ids of the wrong length or all zero, a missing or inverted start/end time, an end time more than
a day in the future, a run id or tenant too long to be an id, token counts out of range.
Spans that are neither GenAI spans nor part of a run (no run id, no gen_ai operation or usage,
not a trace root) are accepted and dropped: they cost nothing and belong to no run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector import attributes as attr
from collector.model import DEFAULT_TENANT, SpanBatch, SpanRecord

MAX_ID_CHARS = 256  # run ids, tenants
MAX_LABEL_CHARS = 256  # models, features, agents, providers: longer values are cut
MAX_TOKENS = 10**12  # per call; beyond this the number is garbage and would overflow sums
MAX_COST_USD = Decimal(1_000_000)  # per call; beyond it a reported cost is ignored
MAX_FUTURE_NS = 86_400 * 10**9
MAX_REJECT_MESSAGES = 10

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_SPAN_FLAG_PARENT_IS_REMOTE = 0x300  # CONTEXT_HAS_IS_REMOTE | CONTEXT_IS_REMOTE
_STATUS_ERROR = 2


class MalformedRequest(ValueError):
    """The request body is not a valid OTLP trace export request."""


# Attribute key -> slot in the per-span scratch list.
(_TENANT, _RUN_ID, _HEADER_RUN_ID, _FEATURE, _HEADER_FEATURE, _OPERATION, _PROVIDER, _SYSTEM, _REQ_MODEL,
 _RESP_MODEL, _AGENT, _IN, _OUT, _PROMPT, _COMPLETION, _CACHE_READ, _CACHE_CREATION, _CACHE_WRITE,
 _REASONING, _COST_USD, _COST_SOURCE, _COST_AMOUNT, _COST_CURRENCY, _COST, _STEP, _FINGERPRINT, _ERROR_TYPE,
 _HTTP_STATUS, _TOOL_NAME, _TOOL_ARGS, _BUDGET_DECISION, _SERVER_ADDRESS) = range(32)
_SLOTS = 32

_FIELD_OF: dict[str, int] = {
    attr.COGNOCIENT_TENANT: _TENANT,
    attr.COGNOCIENT_RUN_ID: _RUN_ID,
    attr.HTTP_REQUEST_HEADER_RUN_ID: _HEADER_RUN_ID,
    attr.COGNOCIENT_FEATURE: _FEATURE,
    attr.HTTP_REQUEST_HEADER_FEATURE: _HEADER_FEATURE,
    attr.GEN_AI_OPERATION_NAME: _OPERATION,
    attr.GEN_AI_PROVIDER_NAME: _PROVIDER,
    attr.GEN_AI_SYSTEM: _SYSTEM,
    attr.GEN_AI_REQUEST_MODEL: _REQ_MODEL,
    attr.GEN_AI_RESPONSE_MODEL: _RESP_MODEL,
    attr.GEN_AI_AGENT_NAME: _AGENT,
    attr.GEN_AI_USAGE_INPUT_TOKENS: _IN,
    attr.GEN_AI_USAGE_OUTPUT_TOKENS: _OUT,
    attr.GEN_AI_USAGE_PROMPT_TOKENS: _PROMPT,
    attr.GEN_AI_USAGE_COMPLETION_TOKENS: _COMPLETION,
    attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: _CACHE_READ,
    attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: _CACHE_CREATION,
    attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: _CACHE_WRITE,
    attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: _REASONING,
    attr.COGNOCIENT_COST_USD: _COST_USD,
    attr.COGNOCIENT_COST_SOURCE: _COST_SOURCE,
    attr.GEN_AI_USAGE_COST_AMOUNT: _COST_AMOUNT,
    attr.GEN_AI_USAGE_COST_CURRENCY: _COST_CURRENCY,
    attr.GEN_AI_USAGE_COST: _COST,
    attr.COGNOCIENT_STEP: _STEP,
    attr.COGNOCIENT_REQUEST_FINGERPRINT: _FINGERPRINT,
    attr.ERROR_TYPE: _ERROR_TYPE,
    attr.HTTP_RESPONSE_STATUS_CODE: _HTTP_STATUS,
    attr.GEN_AI_TOOL_NAME: _TOOL_NAME,
    attr.GEN_AI_TOOL_CALL_ARGUMENTS: _TOOL_ARGS,
    attr.COGNOCIENT_BUDGET_DECISION: _BUDGET_DECISION,
    attr.SERVER_ADDRESS: _SERVER_ADDRESS,
}
_USAGE_SLOTS = (_IN, _OUT, _PROMPT, _COMPLETION, _CACHE_READ, _CACHE_CREATION, _CACHE_WRITE, _REASONING)
_NOT_LLM_OPERATIONS = frozenset({attr.OPERATION_INVOKE_AGENT, attr.OPERATION_EXECUTE_TOOL})
_RUN_OPERATIONS = _NOT_LLM_OPERATIONS
_COST_SOURCES = frozenset({"provider", "price_table", "unknown_model"})


class _Unusable(Exception):
    """One span cannot be used; the message goes into partial_success."""


# -- values ------------------------------------------------------------------------------------------


def any_value(value: Any) -> Any:
    """A protobuf AnyValue as a Python value (arrays and maps recursively)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_to_dict(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_to_dict(attributes: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def _text(value: Any, limit: int = MAX_LABEL_CHARS) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or isinstance(value, bytes):
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:limit] if text else None


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Unusable(f"{key} is {value}")
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise _Unusable(f"{key} is not a number: {value[:40]!r}") from None
    elif not isinstance(value, int):
        return 0
    if not 0 <= value <= MAX_TOKENS:
        raise _Unusable(f"{key} is out of range: {value}")
    return value


def _money(value: Any) -> Decimal | None:
    """A reported cost, or None when absent or unusable (then the cost is computed from tokens)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount < 0 or amount > MAX_COST_USD:
        return None
    return amount


# -- requests ----------------------------------------------------------------------------------------


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise MalformedRequest(f"body is not a protobuf ExportTraceServiceRequest: {error}") from None
    return request


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(holder: dict[str, Any], where: str) -> None:
    for name in _ID_FIELDS:
        value = holder.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise MalformedRequest(f"{where}.{name} must be a hex string")
        try:
            holder[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
        except ValueError:
            raise MalformedRequest(f"{where}.{name} is not hex: {value[:40]!r}") from None


def _list(holder: dict[str, Any], name: str, where: str) -> list[Any]:
    value = holder.get(name, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedRequest(f"{where}.{name} must be a list")
    return value


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON: protobuf JSON mapping, except that trace and span ids are hex, not base64."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedRequest(f"body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("body must be a JSON object with resourceSpans")
    for r, resource_spans in enumerate(_list(data, "resourceSpans", "")):
        where = f"resourceSpans[{r}]"
        if not isinstance(resource_spans, dict):
            raise MalformedRequest(f"{where} must be an object")
        for s, scope_spans in enumerate(_list(resource_spans, "scopeSpans", where)):
            scope_where = f"{where}.scopeSpans[{s}]"
            if not isinstance(scope_spans, dict):
                raise MalformedRequest(f"{scope_where} must be an object")
            for i, span in enumerate(_list(scope_spans, "spans", scope_where)):
                span_where = f"{scope_where}.spans[{i}]"
                if not isinstance(span, dict):
                    raise MalformedRequest(f"{span_where} must be an object")
                _hex_ids_to_base64(span, span_where)
                for j, link in enumerate(_list(span, "links", span_where)):
                    if isinstance(link, dict):
                        _hex_ids_to_base64(link, f"{span_where}.links[{j}]")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise MalformedRequest(f"body is not OTLP/JSON: {error}") from None
    return request


def decode_request(
    request: ExportTraceServiceRequest, *, transport: str, now_ns: int | None = None
) -> SpanBatch:
    """Every span of `request` as a `SpanRecord`; unusable ones counted with a message."""
    if now_ns is None:
        now_ns = time.time_ns()
    latest_end = now_ns + MAX_FUTURE_NS
    records: list[SpanRecord] = []
    batch = SpanBatch(records, transport=transport)
    received = 0
    field_of = _FIELD_OF
    for resource_spans in request.resource_spans:
        resource_attributes = resource_spans.resource.attributes
        resource_tenant = None
        for kv in resource_attributes:
            if kv.key == attr.COGNOCIENT_TENANT:
                resource_tenant = _text(any_value(kv.value), MAX_ID_CHARS + 1)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received += 1
                found = [None] * _SLOTS
                for kv in span.attributes:
                    slot = field_of.get(kv.key)
                    if slot is not None:
                        value = kv.value
                        kind = value.WhichOneof("value")
                        if kind is not None:
                            found[slot] = (
                                getattr(value, kind) if kind != "array_value" else any_value(value)
                            )
                try:
                    record = _record(span, found, resource_tenant, latest_end)
                except _Unusable as problem:
                    batch.rejected += 1
                    _note_problem(batch.reject_messages, str(problem), span.span_id)
                    continue
                if record is not None:
                    record.raw = (resource_attributes, span)
                    records.append(record)
    batch.received = received
    return batch


def _note_problem(messages: list[str], problem: str, span_id: bytes) -> None:
    """Each distinct problem once, with the first span that had it (bounded: messages are for people)."""
    if len(messages) < MAX_REJECT_MESSAGES and not any(message.startswith(problem) for message in messages):
        messages.append(f"{problem} (span {span_id.hex() or '?'})")


def _record(span: Any, found: list[Any], resource_tenant: str | None, latest_end: int) -> SpanRecord | None:
    trace_id = span.trace_id
    span_id = span.span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        raise _Unusable(f"trace id has {len(trace_id)} bytes or is zero; 16 non-zero bytes expected")
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        raise _Unusable(f"span id has {len(span_id)} bytes or is zero; 8 non-zero bytes expected")
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        raise _Unusable(f"parent span id has {len(parent)} bytes; 8 expected")
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0 or end == 0:
        raise _Unusable("start or end time is missing (zero)")
    if end < start:
        raise _Unusable("end time is before start time")
    if end > latest_end:
        raise _Unusable("end time is more than a day in the future (is the sender's clock right?)")

    operation = _text(found[_OPERATION])
    has_usage = any(found[slot] is not None for slot in _USAGE_SLOTS)
    is_llm = operation in attr.INFERENCE_OPERATIONS or (has_usage and operation not in _NOT_LLM_OPERATIONS)
    run_id = _text(found[_RUN_ID], MAX_ID_CHARS + 1) or _text(found[_HEADER_RUN_ID], MAX_ID_CHARS + 1)
    explicit_run = run_id is not None
    is_trace_root = not parent
    if not (explicit_run or is_llm or is_trace_root or operation in _RUN_OPERATIONS):
        return None
    if run_id is None:
        run_id = trace_id.hex()
    elif len(run_id) > MAX_ID_CHARS:
        raise _Unusable(f"cognocient.run.id is longer than {MAX_ID_CHARS} characters")
    tenant = _text(found[_TENANT], MAX_ID_CHARS + 1) or resource_tenant or DEFAULT_TENANT
    if len(tenant) > MAX_ID_CHARS:
        raise _Unusable(f"cognocient.tenant is longer than {MAX_ID_CHARS} characters")
    is_run_root = (is_trace_root and not is_llm) or (
        operation == attr.OPERATION_INVOKE_AGENT
        and (is_trace_root or span.flags & _SPAN_FLAG_PARENT_IS_REMOTE == _SPAN_FLAG_PARENT_IS_REMOTE)
    )
    status_code = span.status.code
    record = SpanRecord(
        tenant=tenant,
        run_id=run_id,
        trace_id=trace_id.hex(),
        span_id=span_id.hex(),
        parent_span_id=parent.hex() if parent else "",
        name=span.name[:MAX_LABEL_CHARS],
        kind=span.kind,
        start_ns=start,
        end_ns=end,
        status_code=status_code,
        is_llm=is_llm,
        is_run_root=is_run_root,
        operation=operation,
        feature=_text(found[_FEATURE]) or _text(found[_HEADER_FEATURE]),
        agent=_text(found[_AGENT]),
        has_explicit_run=explicit_run,
        dedup_key=trace_id + span_id,
    )
    if is_llm:
        record.provider = _text(found[_PROVIDER]) or _text(found[_SYSTEM])
        record.request_model = _text(found[_REQ_MODEL])
        record.response_model = _text(found[_RESP_MODEL])
        record.input_tokens = _count(found[_IN], attr.GEN_AI_USAGE_INPUT_TOKENS) or _count(
            found[_PROMPT], attr.GEN_AI_USAGE_PROMPT_TOKENS)
        record.output_tokens = _count(found[_OUT], attr.GEN_AI_USAGE_OUTPUT_TOKENS) or _count(
            found[_COMPLETION], attr.GEN_AI_USAGE_COMPLETION_TOKENS)
        record.cache_read_tokens = _count(found[_CACHE_READ], attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)
        record.cache_creation_tokens = _count(
            found[_CACHE_CREATION], attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
        ) or _count(found[_CACHE_WRITE], attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS)
        record.reasoning_tokens = _count(found[_REASONING], attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)
        record.server_address = _text(found[_SERVER_ADDRESS])
        step = found[_STEP]
        if isinstance(step, int) and not isinstance(step, bool) and 0 < step <= MAX_TOKENS:
            record.step = step
        record.fingerprint = _text(found[_FINGERPRINT], 128)
        record.budget_decision = _text(found[_BUDGET_DECISION], 32)
        _reported_cost(record, found)
    elif operation == attr.OPERATION_EXECUTE_TOOL:
        record.tool_name = _text(found[_TOOL_NAME])
        arguments = found[_TOOL_ARGS]
        if arguments is not None:
            encoded = arguments.encode("utf-8", "replace") if isinstance(arguments, str) else repr(
                arguments).encode()
            record.tool_args_hash = hashlib.blake2b(encoded, digest_size=8).hexdigest()
    error_type = _text(found[_ERROR_TYPE], 128)
    if error_type is None:
        http_status = found[_HTTP_STATUS]
        if isinstance(http_status, int) and http_status >= 400:
            error_type = str(http_status)
        elif status_code == _STATUS_ERROR:
            error_type = "error"
    record.error_type = error_type
    return record


def _reported_cost(record: SpanRecord, found: list[Any]) -> None:
    cost = _money(found[_COST_USD])
    if cost is not None:
        source = _text(found[_COST_SOURCE], 32)
        record.cost_usd = cost
        record.cost_source = source if source in _COST_SOURCES else "price_table"
        return
    currency = _text(found[_COST_CURRENCY], 16)
    if currency is None or currency.upper() == "USD":
        cost = _money(found[_COST_AMOUNT])
        if cost is None:
            cost = _money(found[_COST])
        if cost is not None:
            record.cost_usd = cost
            record.cost_source = "provider"


