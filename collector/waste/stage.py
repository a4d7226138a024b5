"""The pipeline stage that runs the waste detectors: after rollup, inside the batch's transaction.

For each run a batch touches, the stage takes the run's detector state (from memory, or from its
own table `waste_entries` in the collector's store after a restart), adds the batch's spans,
evaluates, appends the new entries to the table and adds new flags to the run's rollup with
`uow.add_waste_flag`; all of it in the batch's transaction, so the state, the flags and the
rollup commit together or not at all, and a restart resumes exactly where the last acknowledged
batch left off. The in-memory copy of a run's state changes only after its transaction commits.

A span is already committed (and its trace exported) when the collector sees it, so a flag cannot
be added to the span; it shows in the runs API (`waste_flags`, `GET /v1/runs?flag=loop`) and in
the `cognocient_waste_flags_total{feature, kind}` counter, counted after the commit.

A budget with `on_loop: block` that applies to the run (tenant, feature, agent) blocks a run when
it is flagged `loop`, with the budget's name and the flag's step (`collector/waste/loop_block.py`):
the budget check refuses the run's next call, as for a run over its limit.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from cognocient_otel.pricing import PriceBook
from collector.model import RunKey, SpanBatch, SpanRecord
from collector.pipeline import Stage, StageMetrics
from collector.store import Store, UnitOfWork
from collector.telemetry import CounterVec
from collector.waste.config import WasteConfig
from collector.waste.detector import WasteDetector
from collector.waste.flags import LOOP, WasteFlag
from collector.waste.loop_block import LoopBlocker, block_run, find_ledger
from collector.waste.state import RunWasteState, StateDecodeError

__all__ = ["SCHEMA", "WasteStage"]

logger = logging.getLogger(__name__)

SCHEMA = """
-- The waste detectors' state of each run (collector/waste/state.py), one row per LLM or tool call
-- kept, appended as spans arrive; `updated` is the wall-clock time of the batch, for retention.
CREATE TABLE IF NOT EXISTS waste_entries (
    tenant TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    entry TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (tenant, run_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS waste_entries_by_updated ON waste_entries (updated);
"""
_SELECT = "SELECT kind, entry FROM waste_entries WHERE tenant = ? AND run_id = ? ORDER BY seq"
_INSERT = ("INSERT OR REPLACE INTO waste_entries (tenant, run_id, seq, kind, entry, updated) "
           "VALUES (?, ?, ?, ?, ?, ?)")
_DELETE = "DELETE FROM waste_entries WHERE tenant = ? AND run_id = ?"
_PURGE = "DELETE FROM waste_entries WHERE updated < ?"
_PURGE_EVERY_SECONDS = 3600.0
_UNKNOWN = "unknown"
_EXECUTE_TOOL = "execute_tool"


class WasteStage(Stage):
    name = "waste"

    def __init__(
        self,
        next: Stage | None = None,
        *,
        config: WasteConfig,
        price_book: PriceBook | None = None,
        loop_blockers: Iterable[LoopBlocker] = (),
        retention_seconds: float = 30 * 86400.0,
        cached_entries: int = 200_000,
        flags_raised: CounterVec | None = None,
        metrics: StageMetrics | None = None,
    ) -> None:
        super().__init__(next, metrics=metrics)
        self.config = config
        self.detector = WasteDetector(config, prices=price_book)
        self.loop_blockers = tuple(loop_blockers)
        self.retention_seconds = retention_seconds
        # (feature, kind): cognocient_waste_flags_total, counted once the flag is committed
        self.flags_raised = flags_raised if flags_raised is not None else CounterVec()
        self._next_purge = 0.0
        # Committed states of recent runs, so that a batch neither reads nor decodes them again.
        # A transaction works on copies (`_staged`), merged in only once it commits.
        # Bounded by entries, not runs: a few long runs weigh as much as many short ones
        # (an entry is some 200 bytes in memory).
        self._cache: OrderedDict[RunKey, RunWasteState] = OrderedDict()
        self._cached_entries = 0
        self._max_cached_entries = cached_entries
        self._uow: UnitOfWork | None = None
        self._ledger: Any | None = None  # the budget ledger, for on_loop: block
        self._staged: dict[RunKey, RunWasteState] = {}

    def setup(self, store: Store) -> None:
        store.executescript(SCHEMA)
        self._ledger = find_ledger(self.stages()[1:]) if self.loop_blockers else None

    def process(self, batch: SpanBatch) -> None:
        uow = batch.uow
        if uow is None or not self.detector.enabled_kinds:
            return
        if uow is not self._uow:  # a new transaction: what the last one staged committed or is void
            self._uow = uow
            self._staged = {}
            uow.after_commit(self._publish_staged(self._staged))
        by_run: dict[RunKey, list[SpanRecord]] = {}
        for record in batch.records:
            if record.is_llm or record.operation == _EXECUTE_TOOL:
                by_run.setdefault(record.run_key, []).append(record)
        raised: list[tuple[str, str]] = []
        rows: list[tuple[object, ...]] = []
        for key, records in by_run.items():
            raised += self._process_run(uow, key, records, rows)
        if rows:
            uow.executemany(_INSERT, rows)
        if raised:
            counter = self.flags_raised
            uow.after_commit(lambda: counter.inc_many(_count(raised)))
        if uow.now >= self._next_purge:
            self._next_purge = uow.now + _PURGE_EVERY_SECONDS
            uow.execute(_PURGE, (uow.now - self.retention_seconds,))

    def _process_run(
        self, uow: UnitOfWork, key: RunKey, records: list[SpanRecord], rows: list[tuple[object, ...]]
    ) -> list[tuple[str, str]]:
        """Detect on one run; its new entries are appended to `rows`, to be inserted with the batch's."""
        state = self._state(uow, key)
        if not self.detector.wants(state):
            return []
        first_seq = len(state.calls) + len(state.tools)
        added = [entry for entry in (self.detector.record(state, record) for record in records) if entry]
        if not added:
            return []
        flags = self.detector.evaluate(state, added=added)
        if not self.detector.wants(state):
            uow.execute(_DELETE, key)  # every kind raised: nothing left to watch for
        else:
            for seq, entry in enumerate(added, start=first_seq):
                kind, text = RunWasteState.entry_row(entry)
                rows.append((key[0], key[1], seq, kind, text, uow.now))
        raised = []
        for flag in flags:
            if not uow.add_waste_flag(key, kind=flag.kind, step=flag.step, message=flag.message,
                                      wasted_cost_usd=flag.wasted_usd):
                continue  # the run is not in the rollup, or already carries this kind
            run = uow.run(key)
            feature = (run.feature if run else None) or _feature_of(records) or _UNKNOWN
            raised.append((feature, flag.kind))
            if flag.kind == LOOP:
                self._block_on_loop(uow, key, flag, records)
        return raised

    def _state(self, uow: UnitOfWork, key: RunKey) -> RunWasteState:
        """The run's state staged in this transaction: a copy of the cached one, or read from the store."""
        staged = self._staged.get(key)
        if staged is not None:
            return staged
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            state = cached.copy()
        else:
            state = self._read(uow, key)
        self._staged[key] = state
        return state

    def _read(self, uow: UnitOfWork, key: RunKey) -> RunWasteState:
        # The rollup is the record of what was raised (the rows are gone once all kinds were).
        run = uow.run(key)
        raised = [str(flag.get("kind")) for flag in run.waste_flags] if run is not None else []
        rows = uow.execute(_SELECT, key).fetchall()
        try:
            return RunWasteState.from_rows(rows, raised=raised)
        except StateDecodeError as error:
            # A bad row must not fail every later batch of the run: start its state afresh.
            logger.warning("waste state of run %s dropped: %s", key[1], error)
            uow.execute(_DELETE, key)
            return RunWasteState(raised=set(raised))

    def _publish_staged(self, staged: dict[RunKey, RunWasteState]) -> Callable[[], None]:
        def publish() -> None:
            cache = self._cache
            for key, state in staged.items():
                previous = cache.pop(key, None)
                if previous is not None:
                    self._cached_entries -= _size(previous)
                cache[key] = state
                self._cached_entries += _size(state)
            while self._cached_entries > self._max_cached_entries and cache:
                _key, evicted = cache.popitem(last=False)
                self._cached_entries -= _size(evicted)

        return publish

    def _block_on_loop(
        self, uow: UnitOfWork, key: RunKey, flag: WasteFlag, records: list[SpanRecord]
    ) -> None:
        if not self.loop_blockers:
            return
        run = uow.run(key)
        feature = (run.feature if run else None) or _feature_of(records) or ""
        agent = (run.agent if run else None) or next((r.agent for r in records if r.agent), None) or ""
        for blocker in self.loop_blockers:
            if blocker.applies(tenant=key[0], feature=feature, agent=agent):
                block_run(uow, key, budget=blocker.budget, step=flag.step, ledger=self._ledger)
                return


def _size(state: RunWasteState) -> int:
    return 1 + len(state.calls) + len(state.tools)


def _feature_of(records: list[SpanRecord]) -> str | None:
    return next((record.feature for record in records if record.feature), None)


def _count(raised: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for labels in raised:
        counts[labels] = counts.get(labels, 0.0) + 1
    return counts
