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
from collections.abc import Iterable
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

_COLUMNS = """
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    entry TEXT NOT NULL,
    updated REAL NOT NULL
"""
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS waste_entries_by_run ON waste_entries (tenant, run_id, seq);
CREATE INDEX IF NOT EXISTS waste_entries_by_updated ON waste_entries (updated);
"""
SCHEMA = f"""
-- The waste detectors' state of each run (collector/waste/state.py): one row per run and batch,
-- holding the calls and tool calls the batch added, appended as spans arrive; `updated` is the
-- wall-clock time of the batch, for retention. A rowid table: rows go at its end, and only a
-- small index entry lands among the run's earlier rows (rows of a kilobyte or more in a
-- WITHOUT ROWID table made each insert split pages).
CREATE TABLE IF NOT EXISTS waste_entries ({_COLUMNS});
{_INDEXES}
"""
# The first format was a WITHOUT ROWID table keyed by (tenant, run_id, seq): same columns, kept rows.
_MIGRATE_FROM_WITHOUT_ROWID = f"""
BEGIN IMMEDIATE;
ALTER TABLE waste_entries RENAME TO waste_entries_without_rowid;
DROP INDEX IF EXISTS waste_entries_by_updated;
CREATE TABLE waste_entries ({_COLUMNS});
INSERT INTO waste_entries (tenant, run_id, seq, kind, entry, updated)
    SELECT tenant, run_id, seq, kind, entry, updated FROM waste_entries_without_rowid ORDER BY updated;
DROP TABLE waste_entries_without_rowid;
{_INDEXES}
COMMIT;
"""
_SELECT_MANY = ("SELECT run_id, kind, entry FROM waste_entries WHERE tenant = ? AND run_id IN ({marks}) "
                "ORDER BY run_id, seq")
_SQL_VARIABLES = 500
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
        cached_entries: int = 100_000,
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
        # States of recent runs, so that a batch neither reads nor decodes them again, least
        # recently used first. Bounded by entries, not runs: a few long runs weigh as much as many
        # short ones (a run costs some 300 bytes plus 200 per entry). Runs that end are dropped at
        # once: their late spans, if any, read the state back from the store.
        self._cache: OrderedDict[RunKey, RunWasteState] = OrderedDict()
        self._cached_entries = 0
        self._max_cached_entries = cached_entries
        self._uow: UnitOfWork | None = None
        self._ledger: Any | None = None  # the budget ledger, for on_loop: block
        # Runs changed in the open transaction: key -> (checkpoint, entries counted in the cache),
        # or None for a state not cached before. States are changed in place (no copy per batch);
        # if the transaction does not commit, the next one restores them from here first.
        self._touched: dict[RunKey, tuple[Any, int] | None] = {}

    def setup(self, store: Store) -> None:
        existing = store.conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'waste_entries'").fetchone()
        if existing is not None and "WITHOUT ROWID" in existing[0].upper():
            store.executescript(_MIGRATE_FROM_WITHOUT_ROWID)
        store.executescript(SCHEMA)
        self._ledger = find_ledger(self.stages()[1:]) if self.loop_blockers else None

    def process(self, batch: SpanBatch) -> None:
        uow = batch.uow
        if uow is None or not self.detector.enabled_kinds:
            return
        if uow is not self._uow:  # a new transaction: the last one committed, or is void
            self._begin(uow)
        by_run: dict[RunKey, list[SpanRecord]] = {}
        for record in batch.records:
            if record.is_llm or record.operation == _EXECUTE_TOOL:
                key = (record.tenant, record.run_id)
                records = by_run.get(key)
                if records is None:
                    by_run[key] = [record]
                else:
                    records.append(record)
        if not by_run:
            return
        cache = self._cache
        missing = [key for key in by_run if key not in cache]
        if missing:
            self._load(uow, missing)
        raised: list[tuple[str, str]] = []
        rows: list[tuple[object, ...]] = []
        for key, records in by_run.items():
            flags = self._process_run(uow, key, records, rows)
            if flags:
                raised += self._raise(uow, key, records, flags)
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
    ) -> list[WasteFlag]:
        """Detect on one run; its new entries are appended to `rows`, to be inserted with the batch's."""
        state = self._cache[key]
        detector = self.detector
        if not detector.wants(state):
            return []
        cache = self._cache
        touched = self._touched
        if key not in touched:
            cache.move_to_end(key)
            touched[key] = (state.checkpoint(), state.size)
        first_seq = state.size
        added = detector.record_all(state, records)
        if not added:
            return []
        flags = detector.evaluate(state, added=added)
        if not detector.wants(state):
            uow.execute(_DELETE, key)  # every kind raised: nothing left to watch for
        else:
            kind, text = RunWasteState.batch_row(added)
            rows.append((key[0], key[1], first_seq, kind, text, uow.now))
        return flags

    def _raise(
        self, uow: UnitOfWork, key: RunKey, records: list[SpanRecord], flags: list[WasteFlag]
    ) -> list[tuple[str, str]]:
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

    def _begin(self, uow: UnitOfWork) -> None:
        if self._touched:  # the last transaction did not commit: undo what it did to the states
            self._undo(self._touched)
        self._uow = uow
        touched = self._touched = {}
        uow.after_commit(lambda: self._committed(uow, touched))

    def _undo(self, touched: dict[RunKey, tuple[Any, int] | None]) -> None:
        cache = self._cache
        for key, before in touched.items():
            if before is None:
                cache.pop(key, None)
            else:
                state = cache.get(key)
                if state is not None:
                    state.restore(before[0])
        touched.clear()

    def _committed(self, uow: UnitOfWork, touched: dict[RunKey, tuple[Any, int] | None]) -> None:
        """After the commit: count the changed states into the memory bound, drop ended runs, trim."""
        changed = list(touched.items())
        touched.clear()  # first: whatever happens below, this transaction is never undone
        cache = self._cache
        entries = self._cached_entries
        for key, before in changed:
            state = cache.get(key)
            if state is not None:
                entries += state.size - (before[1] if before is not None else -1)
        for run in uow.ended_runs:  # finished, blocked or expired: its spans have (nearly) all come
            state = cache.pop(run.key, None)
            if state is not None:
                entries -= 1 + state.size
        while entries > self._max_cached_entries and cache:
            _key, evicted = cache.popitem(last=False)
            entries -= 1 + evicted.size
        self._cached_entries = entries

    def _load(self, uow: UnitOfWork, keys: list[RunKey]) -> None:
        """Read the states of runs not in memory: new runs, evicted ones, runs from before a restart.

        One query for all of them (a batch of new runs finds no row at all).
        """
        rows_by_key: dict[RunKey, list[tuple[str, str]]] = {}
        by_tenant: dict[str, list[str]] = {}
        for tenant, run_id in keys:
            by_tenant.setdefault(tenant, []).append(run_id)
        for tenant, run_ids in by_tenant.items():
            for offset in range(0, len(run_ids), _SQL_VARIABLES):
                chunk = run_ids[offset:offset + _SQL_VARIABLES]
                query = _SELECT_MANY.format(marks=", ".join("?" * len(chunk)))
                for run_id, kind, entry in uow.execute(query, (tenant, *chunk)):
                    rows_by_key.setdefault((tenant, run_id), []).append((kind, entry))
        cache, touched = self._cache, self._touched
        for key in keys:
            # The rollup is the record of what was raised (the rows are gone once all kinds were).
            run = uow.run(key)
            raised = [str(flag.get("kind")) for flag in run.waste_flags] if run is not None else []
            rows = rows_by_key.get(key)
            state = self._decode(uow, key, rows, raised) if rows else RunWasteState(raised=raised)
            cache[key] = state
            touched[key] = None

    @staticmethod
    def _decode(
        uow: UnitOfWork, key: RunKey, rows: list[tuple[str, str]], raised: list[str]
    ) -> RunWasteState:
        try:
            return RunWasteState.from_rows(rows, raised=raised)
        except StateDecodeError as error:
            # A bad row must not fail every later batch of the run: start its state afresh.
            logger.warning("waste state of run %s dropped: %s", key[1], error)
            uow.execute(_DELETE, key)
            return RunWasteState(raised=raised)

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


def _feature_of(records: list[SpanRecord]) -> str | None:
    return next((record.feature for record in records if record.feature), None)


def _count(raised: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for labels in raised:
        counts[labels] = counts.get(labels, 0.0) + 1
    return counts
