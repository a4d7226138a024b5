"""What the waste detectors remember about one run: compact, and serialisable to survive restarts.

The state is the raw material, not running conclusions: every LLM call (step, start time, input
tokens, cost, error, fingerprint, model) and every tool call (start time, name+arguments key) of
the run, up to `max_tracked_calls` each. The detectors re-read what a batch can affect, so the
result does not depend on the order the spans arrived in (spans of a run come from several
processes and exporters, in any order); see `collector/waste/timeline.py` for how calls are ordered.

Compact on purpose (100k tracked runs must fit in memory next to their rollups): an entry is a
tuple; money is its decimal text (a `Decimal` weighs twice as much); the calls are kept in the
run's order as they arrive (one bisect, no sort per batch); what is derived (fingerprint counts,
how far the run was found clean) is built only when needed. What the input tokens of a call cost
is not computed per span: the call keeps a reference to its model (`ModelRef`, shared by every
call of that model) and is priced only when a context-bloat flag needs its wasted cost.

Once a kind of flag is raised it is never raised again for the run; a run with every enabled kind
raised keeps nothing. Which kinds were raised is not stored here: the run's rollup (its
`waste_flags`) is the record of that.

Serialised form: rows appended as spans arrive (the stage never rewrites a run's state). A row
of kind `b` holds the entries one batch added to the run, a JSON list of::

    ["c", step|null, start_ns, input_tokens, cost_usd, error_type|null, fingerprint|null,
     model|null, provider|null, context_window|null, cache_read_tokens, cache_write_tokens]
    ["t", start_ns, key, name]

Rows of kind `c` / `t` hold one entry each (without the leading tag); a `c` row of 8 fields is the
earlier format, with the input tokens' cost in place of the model. Money is decimal text.
"""

from __future__ import annotations

import json
from bisect import bisect_left, insort_right
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from operator import attrgetter
from typing import Any, NamedTuple

__all__ = ["CallEntry", "Entry", "ModelRef", "RunWasteState", "StateDecodeError", "ToolEntry", "model_ref"]

_ZERO_TEXT = "0"
_MAX_MODEL_REFS = 4096  # distinct (model, provider, window) shared; beyond that, one per call
_MODEL_REFS: dict[tuple[str, str | None, int | None], ModelRef] = {}


class ModelRef(NamedTuple):
    """The model that answered a call: what prices its input, and its context window when known."""

    name: str
    provider: str | None
    context_window: int | None


def model_ref(name: str, provider: str | None, context_window: int | None) -> ModelRef:
    """One shared `ModelRef` per (model, provider, window): calls hold a pointer, not three fields."""
    key = (name, provider, context_window)
    ref = _MODEL_REFS.get(key)
    if ref is None:
        ref = ModelRef(name, provider, context_window)
        if len(_MODEL_REFS) < _MAX_MODEL_REFS:  # model names come from spans: never unbounded
            _MODEL_REFS[key] = ref
    return ref


class CallEntry(NamedTuple):
    """One LLM call of the run.

    `cost_usd` is the whole call's cost as decimal text (`cost` gives the Decimal). `priced` is
    what prices the call's input tokens for the bloat estimate: its `ModelRef`, a `Decimal` (the
    input cost an older stored row carried), or None (no input kept, or no model). `error_type`
    is None for a call that succeeded.
    """

    step: int | None
    start_ns: int
    input_tokens: int = 0
    cost_usd: str = _ZERO_TEXT
    error_type: str | None = None
    fingerprint: str | None = None
    priced: ModelRef | Decimal | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def cost(self) -> Decimal:
        return Decimal(self.cost_usd)

    @property
    def context_window(self) -> int | None:
        """Tokens the answering model accepts, when known."""
        priced = self.priced
        return priced.context_window if priced.__class__ is ModelRef else None

    def to_json(self) -> list[Any]:
        ref = self.priced if isinstance(self.priced, ModelRef) else None
        return [
            self.step, self.start_ns, self.input_tokens, self.cost_usd, self.error_type, self.fingerprint,
            None if ref is None else ref.name, None if ref is None else ref.provider,
            None if ref is None else ref.context_window, self.cache_read_tokens, self.cache_write_tokens,
        ]

    @classmethod
    def from_json(cls, row: list[Any]) -> CallEntry:
        if len(row) == 8:  # the earlier format: [..., input_usd, cost, error, fingerprint, window]
            step, start_ns, input_tokens, input_usd, cost_usd, error_type, fingerprint, _window = row
            return cls(_step(step), int(start_ns), int(input_tokens), _decimal_text(cost_usd),
                       _text(error_type), _text(fingerprint),
                       None if input_usd is None else Decimal(input_usd))
        (step, start_ns, input_tokens, cost_usd, error_type, fingerprint, model, provider, window,
         cache_read, cache_write) = row
        priced = None if model is None else model_ref(
            str(model), _text(provider), None if window is None else int(window))
        return cls(_step(step), int(start_ns), int(input_tokens), _decimal_text(cost_usd), _text(error_type),
                   _text(fingerprint), priced, int(cache_read), int(cache_write))


class ToolEntry(NamedTuple):
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


def _step(value: Any) -> int | None:
    return None if value is None else int(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _decimal_text(value: Any) -> str:
    Decimal(value)  # refuse what is not a decimal number now, not when a flag sums it
    return str(value)


class StateDecodeError(ValueError):
    """A stored waste state could not be read (corrupt row, or a newer format)."""


Entry = CallEntry | ToolEntry
_CALL, _TOOL, _BATCH = "c", "t", "b"
_NO_KINDS: frozenset[str] = frozenset()
_NO_MODEL = (None, None, None)
_STEP = attrgetter("step")
_TIME_ORDER = attrgetter("start_ns", "step")  # used only where no step is None; see _time_key


def _time_key(call: CallEntry) -> tuple[int, int]:
    return (call.start_ns, call.step or 0)


class RunWasteState:
    """A run's calls in run order (`calls`), its tool calls (`tools`), the kinds raised.

    `by_step` says which order `calls` is in (see `collector/waste/timeline.py`): by
    `cognocient.step` while every call carries a distinct one, else by start time. The switch
    happens once, when the first call without a step or with a step already taken arrives.
    """

    __slots__ = ("_repeats", "_tools", "by_step", "calls", "growth_mark", "raised", "truncated",
                 "window_mark")

    def __init__(self, *, raised: Iterable[str] = ()) -> None:
        self.calls: list[CallEntry] = []
        self._tools: list[ToolEntry] | None = None
        self.raised: frozenset[str] = frozenset(raised) if raised else _NO_KINDS
        self.truncated = False  # calls beyond max_tracked_calls were seen and not kept
        self.by_step = True
        # How often each successful call's fingerprint and each tool key occurs: derived from the
        # entries (never stored), built the first time a loop check asks, then kept up to date.
        self._repeats: dict[str, int] | None = None
        # How far each context-bloat check has found the run clean (see `ScanMark` in
        # collector/waste/timeline.py): derived too, and simply absent after a reload.
        self.growth_mark: Any = None
        self.window_mark: Any = None

    @property
    def tools(self) -> list[ToolEntry]:
        return self._tools if self._tools is not None else []

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunWasteState):
            return NotImplemented
        return (self.calls, self.tools, self.raised, self.truncated, self.by_step) == (
            other.calls, other.tools, other.raised, other.truncated, other.by_step)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"RunWasteState(calls={len(self.calls)}, tools={len(self.tools)}, raised={set(self.raised)}, "
                f"by_step={self.by_step})")

    @property
    def size(self) -> int:
        """Entries kept: what the stage's memory bound counts."""
        return len(self.calls) + (len(self._tools) if self._tools is not None else 0)

    def add_call(self, entry: CallEntry) -> None:
        """`add` for an entry known to be a call (the per-span path)."""
        self._add_call(entry)
        repeats = self._repeats
        if repeats is not None and entry.error_type is None:
            key = entry.fingerprint
            if key:
                repeats[key] = repeats.get(key, 0) + 1

    def add(self, entry: Entry) -> None:
        if isinstance(entry, ToolEntry):
            if self._tools is None:
                self._tools = []
            self._tools.append(entry)
            key: str | None = entry.key
        else:
            self._add_call(entry)
            key = entry.fingerprint if entry.error_type is None else None
        if key and self._repeats is not None:
            self._repeats[key] = self._repeats.get(key, 0) + 1

    def _add_call(self, entry: CallEntry) -> None:
        calls = self.calls
        step = entry.step
        if self.by_step:
            if step is not None:
                if not calls or step > calls[-1].step:  # the usual case: the run's next call
                    calls.append(entry)
                    return
                position = bisect_left(calls, step, key=_STEP)
                if position == len(calls) or calls[position].step != step:
                    calls.insert(position, entry)
                    return
            # No step, or a step already taken (a second process): start-time order from now on.
            # Steps were distinct, so the sort has no ties for arrival order to settle.
            self.by_step = False
            calls.sort(key=_TIME_ORDER)
        if not calls or _time_key(entry) >= _time_key(calls[-1]):
            calls.append(entry)
        else:
            insort_right(calls, entry, key=_time_key)  # after equal ones: arrival order breaks ties

    def repeat_count(self, key: str) -> int:
        """Entries with this fingerprint (successful calls) or tool key."""
        return self.repeat_counts().get(key, 0)

    def repeat_counts(self) -> dict[str, int]:
        """Entries by fingerprint (successful calls) and tool key; the caller must not change it."""
        if self._repeats is None:
            counts: dict[str, int] = {}
            for call in self.calls:
                if call.fingerprint and call.error_type is None:
                    counts[call.fingerprint] = counts.get(call.fingerprint, 0) + 1
            for tool in self.tools:
                counts[tool.key] = counts.get(tool.key, 0) + 1
            self._repeats = counts
        return self._repeats

    def mark_raised(self, kind: str) -> None:
        self.raised = self.raised | {kind}

    def forget_scan_marks(self) -> None:
        self.growth_mark = self.window_mark = None

    def clear(self) -> None:
        """Forget every call: once every enabled kind is raised, nothing is left to watch for.

        New lists, not cleared ones: a checkpoint taken earlier in the transaction (see
        `checkpoint`) may still hold the tool list, to restore it if the transaction fails.
        """
        self.calls = []
        self._tools = None
        self._repeats = None
        self.forget_scan_marks()

    def checkpoint(self) -> tuple[Any, ...]:
        """What `restore` needs to undo every later change: a copy of the calls' order (pointers
        only), and how many tool calls there were (those are only ever appended)."""
        return (self.calls[:], self._tools, len(self._tools) if self._tools is not None else 0,
                self.raised, self.truncated, self.by_step, self.growth_mark, self.window_mark)

    def restore(self, checkpoint: tuple[Any, ...]) -> None:
        (self.calls, tools, tool_count, self.raised, self.truncated, self.by_step,
         self.growth_mark, self.window_mark) = checkpoint
        if tools is not None:
            del tools[tool_count:]
        self._tools = tools
        self._repeats = None

    @staticmethod
    def entry_row(entry: Entry) -> tuple[str, str]:
        """(kind, JSON) of one entry."""
        kind = _CALL if isinstance(entry, CallEntry) else _TOOL
        return kind, json.dumps(entry.to_json(), separators=(",", ":"))

    @staticmethod
    def batch_row(entries: list[Entry]) -> tuple[str, str]:
        """(kind, JSON) of the entries one batch added to a run: one row, however many.

        The same lists as `to_json()` with the tag in front, built from the tuples directly (this
        runs for every span): a call's `priced` is a `ModelRef` (or None) in entries made from spans.
        """
        tagged = [(_CALL, *entry[:6], *(entry[6] or _NO_MODEL), entry[7], entry[8])
                  if entry.__class__ is CallEntry else (_TOOL, *entry) for entry in entries]
        return _BATCH, _encode(tagged)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]], *, raised: Iterable[str] = ()) -> RunWasteState:
        """The state stored as rows; `raised` comes from the run's rollup, the record of flags."""
        state = cls(raised=raised)
        for kind, text in rows:
            try:
                row = json.loads(text)
                if kind == _BATCH:
                    for tagged in row:
                        state.add(_decode(tagged[0], tagged[1:]))
                else:
                    state.add(_decode(kind, row))
            except StateDecodeError:
                raise
            except (ValueError, TypeError, InvalidOperation, IndexError, KeyError) as error:
                raise StateDecodeError(f"unreadable waste state entry {text[:80]!r}: {error}") from None
        return state


def _decode(kind: str, row: list[Any]) -> Entry:
    if kind == _CALL:
        return CallEntry.from_json(row)
    if kind == _TOOL:
        return ToolEntry.from_json(row)
    raise StateDecodeError(f"waste state entry of unknown kind {kind!r}")


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON of lists, strings, ints and None: `json.dumps(..., separators=(",", ":"))`.

    The C encoder is made once here; `json.dumps` makes a new one per call, which costs more than
    encoding one batch's entries (this runs per run and batch).
    """
    if c_make_encoder is None:  # no C accelerator: the pure-Python encoder
        return json.JSONEncoder(separators=(",", ":")).encode
    iterencode = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(iterencode(value, 0))


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encode = _json_encoder()
