"""What the waste detectors remember about one run: compact, and serialisable to survive restarts.

The state is the raw material, not running conclusions: every LLM call (step, start time, input
tokens, costs, error, fingerprint) and every tool call (start time, name+arguments key) of the
run, up to `max_tracked_calls` each. The detectors re-read it after every batch, so the result
does not depend on the order the spans arrived in (spans of a run come from several processes
and exporters, in any order); see `collector/waste/timeline.py` for how calls are ordered.

Once a kind of flag is raised it is never raised again for the run; a run with every enabled kind
raised keeps nothing. Which kinds were raised is not stored here: the run's rollup (its
`waste_flags`) is the record of that.

Serialised form: one row per entry, appended as the spans arrive (the stage never rewrites a
run's whole state), each a JSON list::

    call: [step|null, start_ns, input_tokens, input_usd|null, cost_usd, error_type|null,
           fingerprint|null, context_window|null]
    tool: [start_ns, key, name]

Money is a decimal string, never a float.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["CallEntry", "Entry", "RunWasteState", "StateDecodeError", "ToolEntry"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


Entry = CallEntry | ToolEntry
_CALL, _TOOL = "c", "t"


@dataclass(slots=True)
class RunWasteState:
    calls: list[CallEntry] = field(default_factory=list)
    tools: list[ToolEntry] = field(default_factory=list)
    raised: set[str] = field(default_factory=set)
    truncated: bool = False  # calls beyond max_tracked_calls were seen and not kept
    # How often each successful call's fingerprint and each tool key occurs: derived from the
    # entries (never stored), so that a batch can tell in O(1) whether a loop may be new.
    _repeats: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    # How far each context-bloat check has found the run clean, and in which order (see
    # `collector/waste/timeline.py` `ScanMark`): derived too, and simply absent after a reload.
    scan_marks: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def add(self, entry: Entry) -> None:
        if isinstance(entry, ToolEntry):
            self.tools.append(entry)
            key: str | None = entry.key
        else:
            self.calls.append(entry)
            key = entry.fingerprint if entry.error_type is None else None
        if key:
            self._repeats[key] = self._repeats.get(key, 0) + 1

    def repeat_count(self, key: str) -> int:
        """Entries with this fingerprint (successful calls) or tool key."""
        return self._repeats.get(key, 0)

    def copy(self) -> RunWasteState:
        """A copy to change in a transaction that may roll back (entries are never changed)."""
        return RunWasteState(list(self.calls), list(self.tools), set(self.raised), self.truncated,
                             dict(self._repeats), dict(self.scan_marks))

    def clear(self) -> None:
        """Forget every call: once every enabled kind is raised, nothing is left to watch for."""
        self.calls.clear()
        self.tools.clear()
        self._repeats.clear()
        self.scan_marks.clear()

    @staticmethod
    def entry_row(entry: Entry) -> tuple[str, str]:
        """(kind, JSON) of one entry: the state is stored one row per entry, appended as spans come."""
        kind = _CALL if isinstance(entry, CallEntry) else _TOOL
        return kind, json.dumps(entry.to_json(), separators=(",", ":"))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]], *, raised: Iterable[str] = ()) -> RunWasteState:
        """The state stored as `entry_row`s; `raised` comes from the run's rollup, the record of flags."""
        state = cls(raised=set(raised))
        for kind, text in rows:
            try:
                row = json.loads(text)
                if kind == _CALL:
                    state.add(CallEntry.from_json(row))
                elif kind == _TOOL:
                    state.add(ToolEntry.from_json(row))
                else:
                    raise StateDecodeError(f"waste state entry of unknown kind {kind!r}")
            except StateDecodeError:
                raise
            except (ValueError, TypeError, InvalidOperation) as error:
                raise StateDecodeError(f"unreadable waste state entry {text[:80]!r}: {error}") from None
        return state
