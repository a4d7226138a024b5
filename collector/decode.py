"""OTLP trace requests (protobuf or OTLP/JSON) -> a `SpanBatch` of `SpanRecord`s.

This is the hot path of ingest. Requests are parsed into the lean `collector/otlp_lite.py` view,
whose attributes are a map: a span's dozen useful keys are looked up (in C) and converted, the
others are never touched unless a stage asks (`SpanRecord.attributes()`).

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

from cognocient_otel.semconv import MAX_CALL_COST_USD, MAX_CALL_TOKENS
from collector import attributes as attr
from collector.model import DEFAULT_TENANT, SpanBatch, SpanRecord
from collector.otlp_lite import LiteExportRequest

MAX_ID_CHARS = 256  # run ids, tenants
MAX_LABEL_CHARS = 256  # models, features, agents, providers: longer values are cut
MAX_TOKENS = MAX_CALL_TOKENS  # per call; beyond this the number is garbage and would overflow sums
MAX_COST_USD = Decimal(MAX_CALL_COST_USD)  # per call; beyond it a reported cost is ignored
MAX_FUTURE_NS = 86_400 * 10**9
MAX_REJECT_MESSAGES = 10

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_SPAN_FLAG_PARENT_IS_REMOTE = 0x300  # CONTEXT_HAS_IS_REMOTE | CONTEXT_IS_REMOTE
_STATUS_ERROR = 2


class MalformedRequest(ValueError):
    """The request body is not a valid OTLP trace export request."""


_NOT_LLM_OPERATIONS = frozenset({attr.OPERATION_INVOKE_AGENT, attr.OPERATION_EXECUTE_TOOL})
_RUN_OPERATIONS = _NOT_LLM_OPERATIONS
_INFERENCE = attr.INFERENCE_OPERATIONS
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
    """Attributes (a lite map of key -> AnyValue, or repeated KeyValue) as a plain dict."""
    if hasattr(attributes, "items"):
        return {key: any_value(value) for key, value in attributes.items()}
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


def parse_protobuf(body: bytes) -> Any:
    """An OTLP ExportTraceServiceRequest body as a `LiteExportRequest`."""
    request = LiteExportRequest()
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


def parse_json(body: bytes) -> Any:
    """OTLP/JSON: protobuf JSON mapping, except that trace and span ids are hex, not base64."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
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
    # The JSON path is not the hot one: re-encode and read it like a protobuf body.
    return parse_protobuf(request.SerializeToString())


def _value(value: Any) -> Any:
    """A looked-up AnyValue (or None) as a Python value; arrays keep their first element's type."""
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return any_value(value)
    return getattr(value, kind)


def decode_request(request: Any, *, transport: str, now_ns: int | None = None) -> SpanBatch:
    """Every span of `request` (a `LiteExportRequest`) as a `SpanRecord`; unusable ones counted."""
    if now_ns is None:
        now_ns = time.time_ns()
    latest_end = now_ns + MAX_FUTURE_NS
    records: list[SpanRecord] = []
    batch = SpanBatch(records, transport=transport)
    received = 0
    append = records.append
    for resource_spans in request.resource_spans:
        resource_attributes = resource_spans.resource.attributes
        resource_tenant = _text(_value(resource_attributes.get(attr.COGNOCIENT_TENANT)), MAX_ID_CHARS + 1)
        for scope_spans in resource_spans.scope_spans:
            spans = scope_spans.spans
            # One `raw` per scope, shared by its records (with each record's index): a record keeps
            # no per-span wrapper object alive, which keeps the garbage collector's work per span low.
            raw = (resource_attributes, spans)
            for index, span in enumerate(spans):
                received += 1
                try:
                    record = _record(span, resource_tenant, latest_end, raw, index)
                except _Unusable as problem:
                    batch.rejected += 1
                    _note_problem(batch.reject_messages, str(problem), span.span_id)
                    continue
                if record is not None:
                    append(record)
    batch.received = received
    return batch


def _note_problem(messages: list[str], problem: str, span_id: bytes) -> None:
    """Each distinct problem once, with the first span that had it (bounded: messages are for people)."""
    if len(messages) < MAX_REJECT_MESSAGES and not any(message.startswith(problem) for message in messages):
        messages.append(f"{problem} (span {span_id.hex() or '?'})")


def _string(found: Any, limit: int = MAX_LABEL_CHARS) -> str | None:
    """A looked-up AnyValue expected to be a string: the common case in two C calls."""
    if found is None:
        return None
    text = found.string_value
    if text and len(text) <= limit:
        return text
    return _text(_value(found), limit)


def _label(value: Any, limit: int = MAX_LABEL_CHARS) -> str | None:
    if value.__class__ is str and 0 < len(value) <= limit:
        return value
    return _text(value, limit)


def _tokens(value: Any, key: str) -> int:
    if value.__class__ is int and 0 <= value <= MAX_TOKENS:
        return value
    return _count(value, key)


# Attribute names as module globals: one LOAD_GLOBAL each on the hot path instead of a global plus
# an attribute lookup on the `attr` module (about 25 per span).
_OPERATION = attr.GEN_AI_OPERATION_NAME
_INPUT_TOKENS, _PROMPT_TOKENS = attr.GEN_AI_USAGE_INPUT_TOKENS, attr.GEN_AI_USAGE_PROMPT_TOKENS
_OUTPUT_TOKENS, _COMPLETION_TOKENS = attr.GEN_AI_USAGE_OUTPUT_TOKENS, attr.GEN_AI_USAGE_COMPLETION_TOKENS
_RUN_ID, _HEADER_RUN_ID = attr.COGNOCIENT_RUN_ID, attr.HTTP_REQUEST_HEADER_RUN_ID
_TENANT = attr.COGNOCIENT_TENANT
_FEATURE, _HEADER_FEATURE = attr.COGNOCIENT_FEATURE, attr.HTTP_REQUEST_HEADER_FEATURE
_AGENT = attr.GEN_AI_AGENT_NAME
_PROVIDER, _SYSTEM = attr.GEN_AI_PROVIDER_NAME, attr.GEN_AI_SYSTEM
_REQUEST_MODEL, _RESPONSE_MODEL = attr.GEN_AI_REQUEST_MODEL, attr.GEN_AI_RESPONSE_MODEL
_CACHE_READ = attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
_CACHE_CREATION = attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
_CACHE_WRITE = attr.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS
_REASONING = attr.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
_SERVER_ADDRESS = attr.SERVER_ADDRESS
_STEP = attr.COGNOCIENT_STEP
_FINGERPRINT = attr.COGNOCIENT_REQUEST_FINGERPRINT
_BUDGET_DECISION = attr.COGNOCIENT_BUDGET_DECISION
_COST_USD, _COST_SOURCE = attr.COGNOCIENT_COST_USD, attr.COGNOCIENT_COST_SOURCE
_ERROR_TYPE, _HTTP_STATUS = attr.ERROR_TYPE, attr.HTTP_RESPONSE_STATUS_CODE
_MAX_COST_FLOAT = float(MAX_COST_USD)


def _record(
    span: Any, resource_tenant: str | None, latest_end: int, raw: tuple[Any, Any], index: int
) -> SpanRecord | None:
    # Straight-line on purpose: this runs once per span on the ingest hot path. Each string read is
    # `found.string_value` checked in place (the common case); anything else (another type, empty,
    # too long) takes the general path through `_string`. Keys that LLM spans rarely carry are
    # tested with `in` first: a miss that way is a third of the price of a `get` miss.
    trace_id = span.trace_id
    span_id = span.span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        raise _Unusable(f"trace id has {len(trace_id)} bytes or is zero; 16 non-zero bytes expected")
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        raise _Unusable(f"span id has {len(span_id)} bytes or is zero; 8 non-zero bytes expected")
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        raise _Unusable(f"parent span id has {len(parent)} bytes; 8 expected")
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start == 0 or end == 0:
        raise _Unusable("start or end time is missing (zero)")
    if end < start:
        raise _Unusable("end time is before start time")
    if end > latest_end:
        raise _Unusable("end time is more than a day in the future (is the sender's clock right?)")

    attributes = span.attributes
    get = attributes.get
    found = get(_OPERATION)
    if found is None:
        operation = None
    else:
        operation = found.string_value
        if not operation or len(operation) > MAX_LABEL_CHARS:
            operation = _string(found)
    found = get(_INPUT_TOKENS) or get(_PROMPT_TOKENS)
    input_value = None if found is None else (found.int_value or _value(found))
    found = get(_OUTPUT_TOKENS) or get(_COMPLETION_TOKENS)
    output_value = None if found is None else (found.int_value or _value(found))
    if operation in _INFERENCE:
        is_llm = True
    elif operation in _NOT_LLM_OPERATIONS:
        is_llm = False
    else:
        is_llm = input_value is not None or output_value is not None
    found = get(_RUN_ID) or get(_HEADER_RUN_ID)
    if found is None:
        run_id = None
    else:
        run_id = found.string_value
        if not run_id or len(run_id) > MAX_ID_CHARS:
            run_id = _string(found, MAX_ID_CHARS + 1)
    is_trace_root = not parent
    if run_id is None and not (is_llm or is_trace_root or operation in _RUN_OPERATIONS):
        return None
    explicit_run = run_id is not None
    if run_id is None:
        run_id = trace_id.hex()
    elif len(run_id) > MAX_ID_CHARS:
        raise _Unusable(f"cognocient.run.id is longer than {MAX_ID_CHARS} characters")
    if _TENANT in attributes:
        tenant = _string(get(_TENANT), MAX_ID_CHARS + 1) or resource_tenant or DEFAULT_TENANT
    else:
        tenant = resource_tenant or DEFAULT_TENANT
    if len(tenant) > MAX_ID_CHARS:
        raise _Unusable(f"cognocient.tenant is longer than {MAX_ID_CHARS} characters")
    is_run_root = (is_trace_root and not is_llm) or (
        operation == _INVOKE_AGENT
        and (is_trace_root or span.flags & _SPAN_FLAG_PARENT_IS_REMOTE == _SPAN_FLAG_PARENT_IS_REMOTE)
    )
    found = get(_FEATURE) or get(_HEADER_FEATURE)
    if found is None:
        feature = None
    else:
        feature = found.string_value
        if not feature or len(feature) > MAX_LABEL_CHARS:
            feature = _string(found)
    agent = _string(get(_AGENT)) if _AGENT in attributes else None
    status_code = span.status.code

    provider = request_model = response_model = server_address = fingerprint = budget_decision = None
    tool_name = tool_args_hash = cost = cost_source = step = None
    input_tokens = output_tokens = cache_read = cache_creation = reasoning = 0
    if is_llm:
        found = get(_PROVIDER) or get(_SYSTEM)
        if found is not None:
            provider = found.string_value
            if not provider or len(provider) > MAX_LABEL_CHARS:
                provider = _string(found)
        found = get(_REQUEST_MODEL)
        if found is not None:
            request_model = found.string_value
            if not request_model or len(request_model) > MAX_LABEL_CHARS:
                request_model = _string(found)
        found = get(_RESPONSE_MODEL)
        if found is not None:
            response_model = found.string_value
            if not response_model or len(response_model) > MAX_LABEL_CHARS:
                response_model = _string(found)
        if input_value is not None:
            input_tokens = (input_value if input_value.__class__ is int and 0 <= input_value <= MAX_TOKENS
                            else _count(input_value, _INPUT_TOKENS))
        if output_value is not None:
            output_tokens = (output_value if output_value.__class__ is int and 0 <= output_value <= MAX_TOKENS
                             else _count(output_value, _OUTPUT_TOKENS))
        found = get(_CACHE_READ)
        if found is not None:
            cache_read = _tokens(found.int_value or _value(found), _CACHE_READ)
        if _CACHE_CREATION in attributes or _CACHE_WRITE in attributes:
            found = get(_CACHE_CREATION) or get(_CACHE_WRITE)
            cache_creation = _tokens(found.int_value or _value(found), _CACHE_CREATION)
        if _REASONING in attributes:
            found = get(_REASONING)
            reasoning = _tokens(found.int_value or _value(found), _REASONING)
        found = get(_SERVER_ADDRESS)
        if found is not None:
            server_address = found.string_value
            if not server_address or len(server_address) > MAX_LABEL_CHARS:
                server_address = _string(found)
        found = get(_STEP)
        if found is not None:
            value = found.int_value
            if 0 < value <= MAX_TOKENS:
                step = value
        found = get(_FINGERPRINT)
        if found is not None:
            fingerprint = found.string_value
            if not fingerprint or len(fingerprint) > 128:
                fingerprint = _string(found, 128)
        if _BUDGET_DECISION in attributes:
            budget_decision = _string(get(_BUDGET_DECISION), 32)
        # A cost reported as a double in range (what our instrumentation sends): read in place.
        found = get(_COST_USD)
        value = 0.0 if found is None else found.double_value
        if 0.0 < value <= _MAX_COST_FLOAT:
            cost = Decimal(repr(value))
            found = get(_COST_SOURCE)
            cost_source = "price_table" if found is None else found.string_value
            if cost_source not in _COST_SOURCES:
                cost_source = "price_table"
        else:
            cost, cost_source = _reported_cost(get)
    elif operation == _EXECUTE_TOOL:
        value = _value(get(attr.GEN_AI_TOOL_NAME))
        tool_name = None if value is None else _label(value)
        arguments = _value(get(attr.GEN_AI_TOOL_CALL_ARGUMENTS))
        if arguments is not None:
            encoded = (arguments.encode("utf-8", "replace") if isinstance(arguments, str)
                       else repr(arguments).encode())
            tool_args_hash = hashlib.blake2b(encoded, digest_size=8).hexdigest()
    error_type = None
    if _ERROR_TYPE in attributes:
        error_type = _value(get(_ERROR_TYPE))
    if error_type is not None:
        error_type = _label(error_type, 128)
    else:
        http_status = _value(get(_HTTP_STATUS)) if _HTTP_STATUS in attributes else None
        if http_status.__class__ is int and http_status >= 400:
            error_type = str(http_status)
        elif status_code == _STATUS_ERROR:
            error_type = "error"
    name = span.name
    return SpanRecord(
        tenant, run_id, trace_id.hex(), span_id.hex(), parent.hex() if parent else "",
        name if len(name) <= MAX_LABEL_CHARS else name[:MAX_LABEL_CHARS], span.kind, start, end,
        status_code, is_llm, is_run_root, operation, provider, request_model, response_model, feature,
        agent, input_tokens, output_tokens, cache_read, cache_creation, reasoning, cost, cost_source, step,
        fingerprint, error_type, tool_name, tool_args_hash, budget_decision, server_address, explicit_run,
        start.to_bytes(8, "big") + trace_id + span_id, raw, index,
    )


_INVOKE_AGENT = attr.OPERATION_INVOKE_AGENT
_EXECUTE_TOOL = attr.OPERATION_EXECUTE_TOOL


def _reported_cost(get: Any) -> tuple[Decimal | None, str | None]:
    value = _value(get(attr.COGNOCIENT_COST_USD))
    if value is not None:
        cost = _money(value)
        if cost is not None:
            source = _value(get(attr.COGNOCIENT_COST_SOURCE))
            return cost, source if source.__class__ is str and source in _COST_SOURCES else "price_table"
    currency = _value(get(attr.GEN_AI_USAGE_COST_CURRENCY))
    if currency is None or (isinstance(currency, str) and currency.upper() == "USD"):
        value = _value(get(attr.GEN_AI_USAGE_COST_AMOUNT))
        cost = None if value is None else _money(value)
        if cost is None:
            value = _value(get(attr.GEN_AI_USAGE_COST))
            cost = None if value is None else _money(value)
        if cost is not None:
            return cost, "provider"
    return None, None
