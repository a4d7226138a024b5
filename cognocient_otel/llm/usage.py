"""Reading what an LLM API answered (model, id, finish reasons, token usage) from its JSON.

Token counts are normalised to the OpenTelemetry GenAI convention: input includes cache reads
and writes (Anthropic reports them apart, so they are added), output includes reasoning.
Streams (SSE) are read by `cognocient_otel.llm.sse`, which uses the same `ResponseSummary`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from cognocient_otel import semconv as sc
from cognocient_otel.llm import requests as api_ids
from cognocient_otel.llm.jsonio import loads_object

__all__ = ["JsonBodyReader", "ResponseSummary"]

# A non-SSE body read through a wrapped stream is kept for parsing up to this size.
_MAX_BUFFERED_BODY = 8 * 1024 * 1024


# Counts and costs past one call's bounds (semconv) are no answer's: believed, they would make
# the span's cost infinite, its ints unencodable, and the collector refuse the span.
MAX_TOKEN_COUNT = sc.MAX_CALL_TOKENS
MAX_PROVIDER_COST_USD = Decimal(sc.MAX_CALL_COST_USD)


def _int(mapping: Any, key: str) -> int:
    """A positive integer count up to `MAX_TOKEN_COUNT`, else 0 (parsed JSON: `type() is`
    excludes booleans)."""
    if type(mapping) is dict:
        value = mapping.get(key)
        if type(value) is int and 0 < value <= MAX_TOKEN_COUNT:
            return value
    return 0


class ResponseSummary:
    """What is known about an answer so far. `usage_complete` turns True once the provider's
    final usage has been read; `error_type` is set when the body reports an error."""

    __slots__ = (
        "cache_creation_tokens",
        "cache_read_tokens",
        "error_type",
        "finish_reasons",
        "input_tokens",
        "output_tokens",
        "provider_cost_usd",
        "reasoning_tokens",
        "response_id",
        "response_model",
        "usage_complete",
    )

    def __init__(self) -> None:
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.cache_creation_tokens = 0
        self.reasoning_tokens = 0
        self.provider_cost_usd: Decimal | None = None
        self.usage_complete = False
        self.error_type: str | None = None

    # --- one whole JSON answer ----------------------------------------------------------------
    def read_body(self, api: str, body: Any) -> None:
        if not isinstance(body, dict):
            return
        if api == api_ids.API_ANTHROPIC_MESSAGES:
            self._read_anthropic_message(body)
            self._read_anthropic_usage(body.get("usage"))
            stop = body.get("stop_reason")
            if isinstance(stop, str):
                self.finish_reasons = [stop]
            self.usage_complete = "usage" in body
            return
        self._read_identity(body)
        usage = body.get("usage")
        if api == api_ids.API_OPENAI_RESPONSES:
            self._read_responses_usage(usage)
            status = body.get("status")
            if isinstance(status, str) and status != "completed":
                self.finish_reasons = [status]
        else:
            self._read_openai_usage(usage)
            self._read_choices(body.get("choices"))
        self.usage_complete = isinstance(usage, dict)

    def _read_identity(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if isinstance(model, str) and model:
            self.response_model = model
        response_id = body.get("id")
        if isinstance(response_id, str) and self.response_id is None:
            self.response_id = response_id

    def _read_choices(self, choices: Any) -> None:
        if isinstance(choices, list):
            # A loop, not comprehensions: usually one choice, and each comprehension is a call.
            reasons = []
            for choice in choices:
                if isinstance(choice, dict):
                    reason = choice.get("finish_reason")
                    if isinstance(reason, str):
                        reasons.append(reason)
            if reasons:
                self.finish_reasons = reasons

    def _read_openai_usage(self, usage: Any) -> None:
        if type(usage) is not dict:
            return
        # Inlined `_int`s: this runs on every OpenAI-shaped answer.
        get = usage.get
        value = get("prompt_tokens")
        self.input_tokens = value if type(value) is int and 0 < value <= MAX_TOKEN_COUNT else 0
        value = get("completion_tokens")
        self.output_tokens = value if type(value) is int and 0 < value <= MAX_TOKEN_COUNT else 0
        details = get("prompt_tokens_details")
        value = details.get("cached_tokens") if type(details) is dict else None
        self.cache_read_tokens = value if type(value) is int and 0 < value <= MAX_TOKEN_COUNT else 0
        details = get("completion_tokens_details")
        value = details.get("reasoning_tokens") if type(details) is dict else None
        self.reasoning_tokens = value if type(value) is int and 0 < value <= MAX_TOKEN_COUNT else 0
        if "cost" in usage:
            self._read_provider_cost(usage)

    def _read_responses_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.input_tokens = _int(usage, "input_tokens")
        self.output_tokens = _int(usage, "output_tokens")
        self.cache_read_tokens = _int(usage.get("input_tokens_details"), "cached_tokens")
        self.reasoning_tokens = _int(usage.get("output_tokens_details"), "reasoning_tokens")
        if "cost" in usage:
            self._read_provider_cost(usage)

    def _read_provider_cost(self, usage: dict[str, Any]) -> None:
        # OpenAI-compatible gateways (OpenRouter, LiteLLM) report what they billed as usage.cost.
        cost = usage.get("cost")
        if isinstance(cost, (int, float, str)) and not isinstance(cost, bool):
            try:
                value = Decimal(str(cost))
            except ArithmeticError:
                return
            if value.is_finite() and 0 <= value <= MAX_PROVIDER_COST_USD:
                self.provider_cost_usd = value

    def _read_anthropic_message(self, message: dict[str, Any]) -> None:
        self._read_identity(message)

    def _read_anthropic_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # Streams repeat fields in message_delta (cumulative): keep what each event reports.
        if "cache_read_input_tokens" in usage:
            self.cache_read_tokens = _int(usage, "cache_read_input_tokens")
        if "cache_creation_input_tokens" in usage:
            self.cache_creation_tokens = _int(usage, "cache_creation_input_tokens")
        if "input_tokens" in usage:
            uncached = _int(usage, "input_tokens")
            self.input_tokens = uncached + self.cache_read_tokens + self.cache_creation_tokens
        if "output_tokens" in usage:
            self.output_tokens = _int(usage, "output_tokens")


class JsonBodyReader:
    """Collects a JSON body read through a wrapped stream and reads it when the stream ends."""

    __slots__ = ("_api", "_chunks", "_size", "summary")

    def __init__(self, api: str, summary: ResponseSummary) -> None:
        self._api = api
        self._chunks: list[bytes] = []
        self._size = 0
        self.summary = summary

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= _MAX_BUFFERED_BODY:
            self._chunks.append(chunk)

    def feed_all(self, chunks: list[bytes]) -> None:
        # Past the cap the body is not read at all (`finish`), so which chunks were kept is moot.
        self._size += sum(map(len, chunks))
        if self._size <= _MAX_BUFFERED_BODY:
            self._chunks.extend(chunks)

    def finish(self) -> None:
        if self._size > _MAX_BUFFERED_BODY or not self._chunks:
            return
        payload = loads_object(b"".join(self._chunks))
        self._chunks = []
        if payload is not None:
            self.summary.read_body(self._api, payload)
