"""What the waste detectors remember about one run: compact, and serialisable to survive restarts.

The state is the raw material, not running conclusions: every LLM call (step, start time, input
tokens, costs, error, fingerprint) and every tool call (start time, name+arguments key) of the
run, up to `max_tracked_calls` each. The detectors re-read it after every batch, so the result
does not depend on the order the spans arrived in (spans of a run come from several processes
and exporters, in any order); see `collector/waste/timeline.py` for how calls are ordered.

Once a kind of flag is raised it is never raised again for the run, so what only that detector
needed is dropped (`compact()`), and a run with every enabled kind raised keeps almost nothing.

Serialised form (JSON, one row per run in the collector's store)::

    {"v": 1, "raised": ["loop"], "truncated": false,
     "calls": [[step|null, start_ns, input_tokens, input_usd|null, cost_usd, error_type|null,
                fingerprint|null, context_window|null], ...],
     "tools": [[start_ns, key], ...]}

Money is a decimal string, never a float.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["STATE_VERSION", "CallEntry", "RunWasteState", "StateDecodeError", "ToolEntry"]

STATE_VERSION = 1
_ZERO = Decimal(0)


@dataclass(slots=True)
class CallEntry:
    """One LLM call of the run.

    `input_usd` is what the call's input tokens alone cost (None when the model has no price),
    used to estimate what bloat wasted; `cost_usd` is the whole call's cost. `error_type` is None
    for a call that succeeded.
    """

    step: int | None
    start_ns: int
    input_tokens: int = 0
    input_usd: Decimal | None = None
    cost_usd: Decimal = _ZERO
    error_type: str | None = None
    fingerprint: str | None = None
    context_window: int | None = None  # tokens the answering model accepts, when known

    def to_json(self) -> list[Any]:
        return [
            self.step,
            self.start_ns,
            self.input_tokens,
            None if self.input_usd is None else str(self.input_usd),
            str(self.cost_usd),
            self.error_type,
            self.fingerprint,
            self.context_window,
        ]

    @classmethod
    def from_json(cls, row: list[Any]) -> CallEntry:
        step, start_ns, input_tokens, input_usd, cost_usd, error_type, fingerprint, context_window = row
        return cls(
            step=None if step is None else int(step),
            start_ns=int(start_ns),
            input_tokens=int(input_tokens),
            input_usd=None if input_usd is None else Decimal(input_usd),
            cost_usd=Decimal(cost_usd),
            error_type=error_type,
            fingerprint=fingerprint,
            context_window=None if context_window is None else int(context_window),
        )


@dataclass(slots=True)
class ToolEntry:
    """One execute_tool span; `key` identifies the tool name together with its arguments."""

    start_ns: int
    key: str
    name: str

    def to_json(self) -> list[Any]:
        return [self.start_ns, self.key, self.name]

    @classmethod
    def from_json(cls, row: list[Any]) -> ToolEntry:
        start_ns, key, name = row
        return cls(int(start_ns), str(key), str(name))


class StateDecodeError(ValueError):
    """A stored waste state could not be read (corrupt row, or a newer format)."""


@dataclass(slots=True)
class RunWasteState:
    calls: list[CallEntry] = field(default_factory=list)
    tools: list[ToolEntry] = field(default_factory=list)
    raised: set[str] = field(default_factory=set)
    truncated: bool = False  # calls beyond max_tracked_calls were seen and not kept

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": STATE_VERSION,
                "raised": sorted(self.raised),
                "truncated": self.truncated,
                "calls": [call.to_json() for call in self.calls],
                "tools": [tool.to_json() for tool in self.tools],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RunWasteState:
        try:
            document = json.loads(text)
            if document.get("v") != STATE_VERSION:
                raise StateDecodeError(f"waste state version {document.get('v')!r}, expected {STATE_VERSION}")
            return cls(
                calls=[CallEntry.from_json(row) for row in document["calls"]],
                tools=[ToolEntry.from_json(row) for row in document["tools"]],
                raised=set(document["raised"]),
                truncated=bool(document["truncated"]),
            )
        except StateDecodeError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as error:
            raise StateDecodeError(f"unreadable waste state: {error}") from None

    def compact(self, *, enabled_kinds: frozenset[str]) -> None:
        """Forget what only already-raised (or disabled) detectors needed."""
        pending = enabled_kinds - self.raised
        if not pending:
            self.calls.clear()
            self.tools.clear()
            return
        if "loop" not in pending:
            self.tools.clear()
            for call in self.calls:
                call.fingerprint = None
        # Calls stay while any LLM-call detector is pending: they are also the run's step timeline.
