"""Turns a run's spans into detector state, and the state into new waste flags.

`WasteDetector.record()` keeps what the detectors need from one span (LLM or execute_tool; other
spans are ignored) in the run's `RunWasteState`; `evaluate()` runs every enabled detector that
has not yet flagged the run over the whole state and returns the new flags, each kind once per run.
Both are pure functions of the state and the spans, apart from context-window lookups (cached per
model), so they can run inside the collector's store transaction. Nothing is priced per span: a
call keeps a shared reference to its model, and `input_cost()` prices the few calls a context-bloat
flag needs, with the collector's `PriceBook` (so configured price overrides apply), when it is raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from operator import attrgetter

from cognocient_otel.pricing import PriceBook, TokenUsage
from collector.model import SpanRecord
from collector.waste.config import WasteConfig
from collector.waste.context_bloat import scan_context_bloat
from collector.waste.context_windows import ContextWindows
from collector.waste.flags import CONTEXT_BLOAT, LOOP, RETRY_STORM, WasteFlag
from collector.waste.loop import detect_loop
from collector.waste.retry_storm import detect_retry_storm
from collector.waste.state import CallEntry, Entry, ModelRef, RunWasteState, ToolEntry, model_ref
from collector.waste.timeline import ScanMark, Timeline

__all__ = ["WasteDetector", "failure_of"]

_EXECUTE_TOOL = "execute_tool"
_ZERO_TEXT = "0"
_ERROR_TYPE, _FINGERPRINT = CallEntry._fields.index("error_type"), CallEntry._fields.index("fingerprint")
_new_entry = tuple.__new__  # a CallEntry from its 9 fields, without NamedTuple's Python-level __new__
_MAX_MODELS = 4096  # model names come from spans: the lookup cache must stay bounded
# Runs this short are re-read whole by the bloat checks: cheaper than keeping marks for them.
_MARK_FROM_CALLS = 4
_BLOCKED = "blocked"
_ERROR_STATUS = 2  # OTLP Status.STATUS_CODE_ERROR


def _affected(added: Iterable[Entry]) -> frozenset[str]:
    call = loop = retry = False
    for entry in added:
        if entry.__class__ is ToolEntry:
            loop = True
        else:
            call = True  # any call can move the growth series or settle a missing step
            if entry[_ERROR_TYPE] is not None:
                retry = True
            elif entry[_FINGERPRINT] is not None:
                loop = True
    return _KIND_SETS[call, loop, retry]


_KIND_SETS = {
    (call, loop, retry): frozenset(
        kind for kind, on in ((CONTEXT_BLOAT, call), (LOOP, loop), (RETRY_STORM, retry)) if on)
    for call in (False, True) for loop in (False, True) for retry in (False, True)
}
_LOOP_ONLY = frozenset({LOOP})
_START_NS = attrgetter("start_ns")


def failure_of(record: SpanRecord) -> str | None:
    """The error type of a failed call (`error.type`, the HTTP status, or `error`); None if it succeeded."""
    if record.error_type:
        return str(record.error_type)
    if record.status_code == _ERROR_STATUS:
        return "error"
    return None


class WasteDetector:
    def __init__(
        self,
        config: WasteConfig,
        *,
        prices: PriceBook | None = None,
        context_windows: ContextWindows | None = None,
    ) -> None:
        self.config = config
        self._prices = prices if prices is not None else PriceBook()
        self._windows = context_windows or ContextWindows(config.context_windows)
        enabled = set()
        if config.enabled:
            for kind, section in ((CONTEXT_BLOAT, config.context_bloat), (LOOP, config.loop),
                                  (RETRY_STORM, config.retry_storm)):
                if section.enabled:
                    enabled.add(kind)
        self.enabled_kinds: frozenset[str] = frozenset(enabled)
        # Read per span: plain attributes, not lookups through the config models.
        self._max_calls = config.max_tracked_calls
        self._loop_tools = config.loop.tools
        self._windows_wanted = config.context_bloat.context_window_share is not None
        self._late_arrival_ns = int(config.late_arrival_seconds * 1e9)
        self._bloat_config = config.context_bloat
        self._loop_repeats = config.loop.repeats
        self._models: dict[tuple[str, str | None], ModelRef] = {}

    def wants(self, state: RunWasteState) -> bool:
        """Whether some enabled detector has yet to flag this run."""
        return bool(self.enabled_kinds - state.raised)

    def record_all(self, state: RunWasteState, records: Iterable[SpanRecord]) -> list[Entry]:
        """`record()` for each of `records` (spans of the state's run): the entries added, in order."""
        pending = self.enabled_kinds - state.raised if state.raised else self.enabled_kinds
        if not pending:
            return []
        added: list[Entry] = []
        call_entry, add_call, add, tool_entry = self._call_entry, state.add_call, state.add, self._tool_entry
        loop_pending = LOOP in pending
        for record in records:
            if record.is_llm:
                entry: Entry | None = call_entry(state, record, pending)
                if entry is not None:
                    add_call(entry)
                    added.append(entry)
            elif loop_pending and record.operation == _EXECUTE_TOOL:
                entry = tool_entry(state, record)
                if entry is not None:
                    add(entry)
                    added.append(entry)
        return added

    def record(self, state: RunWasteState, record: SpanRecord) -> Entry | None:
        """Keep what the detectors need from `record` (a span of the state's run).

        Returns the entry added to `state` (to be stored), None when the span is of no interest.
        """
        pending = self.enabled_kinds - state.raised if state.raised else self.enabled_kinds
        if not pending:
            return None
        entry: Entry | None = None
        if record.is_llm:
            entry = self._call_entry(state, record, pending)
            if entry is not None:
                state.add(entry)
        elif LOOP in pending and record.operation == _EXECUTE_TOOL:
            entry = self._tool_entry(state, record)
            if entry is not None:
                state.add(entry)
        return entry

    def evaluate(self, state: RunWasteState, *, added: Iterable[Entry] | None = None) -> list[WasteFlag]:
        """New flags for the run (at most one per kind, ever); marks them raised in `state`.

        With `added` (the entries `record()` returned since the last evaluation), only the
        detectors those entries can affect run: a retry storm needs a new failure, a loop a new
        repeatable call or tool call.
        """
        raised = state.raised
        pending = self.enabled_kinds - raised if raised else self.enabled_kinds
        if added is not None:
            pending = pending & _affected(added)
            # A loop needs `repeats` entries of one key: a run with fewer entries cannot have one.
            if LOOP in pending and (state.size < self._loop_repeats or not self._may_repeat(state, added)):
                pending = pending - _LOOP_ONLY
        if not pending:
            return []
        timeline = Timeline.of(state)
        flags: list[WasteFlag] = []
        if CONTEXT_BLOAT in pending:
            flag = self._context_bloat(state, timeline)
            if flag is not None:
                flags.append(flag)
        if LOOP in pending:
            flag = detect_loop(timeline, state.tools, self.config.loop)
            if flag is not None:
                flags.append(flag)
        if RETRY_STORM in pending:
            flag = detect_retry_storm(timeline, self.config.retry_storm)
            if flag is not None:
                flags.append(flag)
        if not flags:
            return flags
        flags.sort(key=_START_NS)
        for flag in flags:
            state.mark_raised(flag.kind)
        if not self.wants(state):
            state.clear()
        return flags

    def _context_bloat(self, state: RunWasteState, timeline: Timeline) -> WasteFlag | None:
        # Calls found clean by an earlier batch are not read again (see `ScanMark`): the usual
        # batch appends a call or two to a run, and the checks then read those only.
        settled = timeline.settled(self._late_arrival_ns)
        growth_mark = state.growth_mark
        growth_from = ScanMark.clean_prefix(timeline, growth_mark)
        flag, resume = scan_context_bloat(
            timeline, self._bloat_config, settled=settled, growth_from=growth_from,
            window_from=ScanMark.clean_prefix(timeline, state.window_mark),
            input_cost=self.input_cost, growth_resume=growth_mark.resume if growth_from else None,
        )
        if flag is None and len(timeline) > _MARK_FROM_CALLS:
            state.growth_mark = ScanMark.of(timeline, settled, resume)
            state.window_mark = ScanMark.of(timeline, len(timeline))
        return flag

    def _may_repeat(self, state: RunWasteState, added: Iterable[Entry]) -> bool:
        """Whether an added call or tool call has been seen `repeats` times: only then is a loop new."""
        repeats = self._loop_repeats
        count = state.repeat_counts().get
        for entry in added:
            if entry.__class__ is ToolEntry:
                key = entry.key
            elif entry.fingerprint and entry.error_type is None:
                key = entry.fingerprint
            else:
                continue
            if count(key, 0) >= repeats:
                return True
        return False

    def _call_entry(
        self, state: RunWasteState, record: SpanRecord, pending: frozenset[str]
    ) -> CallEntry | None:
        if len(state.calls) >= self._max_calls:
            state.truncated = True
            return None
        if record.budget_decision == _BLOCKED:
            # Refused before it was sent: no tokens, no repeat, no failure; only its step number,
            # which the timeline needs so as not to wait for it as a missing step.
            return CallEntry(record.step, record.start_ns)
        cost = record.cost_usd
        cost_text = _ZERO_TEXT if cost is None else str(cost)
        error_type = record.error_type
        if error_type:
            error_type = str(error_type)
        else:
            error_type = "error" if record.status_code == _ERROR_STATUS else None
        fingerprint = record.fingerprint if LOOP in pending else None
        # An embeddings input is a document, not the conversation's context.
        if CONTEXT_BLOAT in pending and record.input_tokens > 0 and record.operation != "embeddings":
            model = record.response_model or record.request_model
            ref = self._models.get((model, record.provider)) if model else None
            if ref is None and model:
                ref = self._model(model, record.provider)
            return _new_entry(CallEntry, (
                record.step, record.start_ns, record.input_tokens, cost_text, error_type, fingerprint,
                ref, record.cache_read_tokens, record.cache_creation_tokens))
        return _new_entry(CallEntry, (record.step, record.start_ns, 0, cost_text, error_type, fingerprint,
                                      None, 0, 0))

    def _tool_entry(self, state: RunWasteState, record: SpanRecord) -> ToolEntry | None:
        if not self._loop_tools or not record.tool_name or not record.tool_args_hash:
            return None  # without the arguments, "the same call again" cannot be told from a new one
        if len(state.tools) >= self._max_calls:
            state.truncated = True
            return None
        return ToolEntry(record.start_ns, f"{record.tool_name}\x00{record.tool_args_hash}", record.tool_name)

    def _model(self, model: str, provider: str | None) -> ModelRef:
        """A model's shared `ModelRef` (its context window looked up once), the first time it is seen."""
        window = self._windows.window(model=model, provider=provider) if self._windows_wanted else None
        ref = model_ref(model, provider, window)
        if len(self._models) < _MAX_MODELS:
            self._models[(model, provider)] = ref
        return ref

    def input_cost(self, call: CallEntry) -> Decimal | None:
        """What the call's input tokens cost (cached tokens at their rate); None if unpriced."""
        priced = call.priced
        if priced is None or isinstance(priced, Decimal):
            return priced
        usage = TokenUsage(input_tokens=call.input_tokens, cache_read_tokens=call.cache_read_tokens,
                           cache_write_tokens=call.cache_write_tokens)
        result = self._prices.cost(model=priced.name, usage=usage, provider=priced.provider, api_url=None)
        return None if result.source == "unknown_model" else result.usd
