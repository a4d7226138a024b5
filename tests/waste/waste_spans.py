"""Building SpanRecords for the detector tests: LLM calls and tool calls of one run; the flags a
fresh detector raises for them (`flags_of`)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from collector.model import SpanRecord
from collector.waste import WasteConfig, WasteDetector, WasteFlag
from collector.waste.state import RunWasteState

RUN = "run-1"
T0 = 1_800_000_000 * 10**9  # a fixed wall clock start, ns
SECOND = 10**9
_span_ids = itertools.count(1)


def llm(
    step: int | None,
    *,
    input_tokens: int = 1000,
    output_tokens: int = 100,
    at: float | None = None,
    fingerprint: str | None = None,
    error_type: str | None = None,
    status_code: int = 0,
    cost: str | None = "0.001",
    model: str = "gpt-4o-mini",
    budget_decision: str | None = None,
    operation: str = "chat",
) -> SpanRecord:
    """An inference span; `at` is its start in seconds after T0 (default: 2 s per step)."""
    seconds = at if at is not None else 2.0 * (step or 0)
    return _with_dedup_key(SpanRecord(
        tenant="default", run_id=RUN, trace_id="ab" * 16, span_id=f"{next(_span_ids):016x}",
        parent_span_id="cd" * 8, name=f"{operation} {model}", kind=3,
        start_ns=T0 + int(seconds * SECOND), end_ns=T0 + int((seconds + 1) * SECOND),
        status_code=status_code, is_llm=True, operation=operation, provider="openai",
        request_model=model, response_model=model,
        input_tokens=0 if error_type else input_tokens, output_tokens=0 if error_type else output_tokens,
        cost_usd=None if cost is None else Decimal(cost), step=step, fingerprint=fingerprint,
        error_type=error_type, budget_decision=budget_decision,
    ))


def _with_dedup_key(record: SpanRecord) -> SpanRecord:
    record.dedup_key = bytes.fromhex(record.trace_id + record.span_id)
    return record


def tool(name: str, args_hash: str | None, *, at: float) -> SpanRecord:
    return _with_dedup_key(SpanRecord(
        tenant="default", run_id=RUN, trace_id="ab" * 16, span_id=f"{next(_span_ids):016x}",
        parent_span_id="cd" * 8, name=f"execute_tool {name}", kind=1,
        start_ns=T0 + int(at * SECOND), end_ns=T0 + int((at + 0.5) * SECOND),
        operation="execute_tool", tool_name=name, tool_args_hash=args_hash,
    ))


def growing(inputs: list[int], **kwargs) -> list[SpanRecord]:
    """One call per input size, steps 1..n, each with its own fingerprint."""
    return [llm(step, input_tokens=tokens, fingerprint=f"fp{step}", **kwargs)
            for step, tokens in enumerate(inputs, start=1)]


def geometric(first: int, rate: float, steps: int) -> list[int]:
    return [round(first * (1 + rate) ** index) for index in range(steps)]


def flags_of(records: list[SpanRecord], config: WasteConfig | None = None) -> list[WasteFlag]:
    """The flags of one run whose spans are `records`, recorded one by one, evaluated once."""
    detector = WasteDetector(config or WasteConfig())
    state = RunWasteState()
    for record in records:
        detector.record(state, record)
    return detector.evaluate(state)
