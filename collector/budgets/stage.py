"""The pipeline stage that counts ingested LLM span costs into the budget ledger.

Runs after dedup, cost and rollup (collector/pipeline.py), inside the batch's transaction: with
the SQLite ledger in the collector's own store, a span's cost reaches the budgets in the same
commit that counts it in its run's rollup. A span whose call was already settled through a
check is skipped by the ledger (once per span id). A run that crosses a per-run `block` limit
is marked blocked in the rollup, with the budget and the step.

In the collector's own store the ledger works through `_BatchTxn`: the same reads and writes as
`SqliteLedgerTxn`, in the same transaction, but gathered per batch (one query for which spans were
already counted, one for each key's spend, one write of each table at the end of the batch)
instead of several statements per span. What the ledger reads always includes what it wrote.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any

from collector.model import SpanBatch
from collector.pipeline import Stage, StageMetrics
from collector.store import Store

from .config import BudgetConfig
from .ledger import Ledger, run_key
from .model import RunBlock, SpanCost
from .service import BudgetCounters
from .sqlite_store import SCHEMA, SqliteLedgerStore, SqliteLedgerTxn

__all__ = ["BudgetStage"]


class BudgetStage(Stage):
    name = "budget"

    def __init__(
        self,
        next: Stage | None = None,
        *,
        ledger: Ledger,
        counters: BudgetCounters,
        metrics: StageMetrics | None = None,
    ) -> None:
        super().__init__(next, metrics=metrics)
        self.ledger = ledger
        self.counters = counters
        self._in_store_transaction = False

    def setup(self, store: Store) -> None:
        ledger_store = self.ledger.store
        # Same file: write in the batch's own transaction (one commit for rollup and budgets).
        self._in_store_transaction = isinstance(ledger_store, SqliteLedgerStore) and _same_file(
            ledger_store.path, store.path
        )
        if self._in_store_transaction:
            store.executescript(SCHEMA)

    def process(self, batch: SpanBatch) -> None:
        if not self.ledger.budgets:
            return
        spans = []
        for record in batch.records:
            if not record.is_llm or not record.cost_usd:
                continue
            feature, agent = record.feature, record.agent
            if (not feature or not agent) and batch.uow is not None:
                # LLM spans carry the feature, the run root the agent: fill in from the run.
                run = batch.uow.run(record.run_key)
                feature = feature or (run.feature if run else None)
                agent = agent or (run.agent if run else None)
            spans.append(
                SpanCost(
                    span_id=record.span_id,
                    run_id=record.run_id,
                    cost_usd=record.cost_usd,
                    tenant=record.tenant,
                    feature=feature or "",
                    agent=agent or "",
                    step=record.step or 0,
                )
            )
        if not spans:
            return
        txn = _BatchTxn(batch.uow.conn, spans) if self._in_store_transaction and batch.uow else None
        blocked = _BatchLedger(self.ledger).count_spans(spans, txn=txn)
        if txn is not None:
            txn.flush()
        for span, block in blocked:
            if batch.uow is not None:
                batch.uow.mark_blocked((span.tenant, span.run_id), budget=block.budget, step=block.step)
            labels = (block.budget, span.feature, span.agent)
            if batch.uow is not None:
                batch.uow.after_commit(lambda labels=labels: self.counters.blocked_runs.inc(labels))
            else:
                self.counters.blocked_runs.inc(labels)


class _BatchLedger(Ledger):
    """The stage's ledger for one batch: `Ledger.count_spans` with its per-span lookups remembered.

    `count_spans` reads the clock once and then, for every span, finds the budgets that apply, the
    keys of their windows and how long each key is kept: pure functions of (tenant, feature,
    agent), of that one moment, and of the key. Remembering them for the batch changes no result;
    it spares each span the calendar arithmetic (formatting periods, finding window ends).
    A shadow of the shared ledger: same store, budgets and clock; nothing else is kept.
    """

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger.store, ledger.budgets, clock=ledger.clock)
        self._applicable: dict[tuple[str, str, str], list[BudgetConfig]] = {}
        self._windows: dict[tuple[int, object, str], tuple[Any, bool]] = {}
        self._kept: dict[tuple[str, float], float] = {}

    def applicable(self, *, tenant: str, feature: str, agent: str) -> list[BudgetConfig]:
        key = (tenant, feature, agent)
        found = self._applicable.get(key)
        if found is None:
            found = self._applicable[key] = super().applicable(tenant=tenant, feature=feature, agent=agent)
        return found

    def _keys(self, budgets: list[BudgetConfig], moment: Any, tenant: str, run_id: str) -> Any:
        # The lists come from `applicable` above, kept for the batch: their ids stay theirs.
        key = (id(budgets), moment, tenant)
        found = self._windows.get(key)
        if found is None:
            windows, run = super()._keys(budgets, moment, tenant, run_id)
            found = self._windows[key] = (windows, run is not None)
        windows, tracks_run = found
        return windows, run_key(tenant, run_id) if tracks_run else None

    def _keep_until(self, key: str, now: float) -> float:
        memo = (key, now)
        kept = self._kept.get(memo)
        if kept is None:
            kept = self._kept[memo] = super()._keep_until(key, now)
        return kept


class _BatchTxn(SqliteLedgerTxn):
    """`SqliteLedgerTxn` for counting one batch of spans: reads gathered, writes deferred to `flush`.

    Only what `Ledger.count_spans` uses is batched (accounted span ids, spend, run blocks); the
    rest is `SqliteLedgerTxn`'s. Spend is already cached by the parent for the transaction.
    """

    _SQL_VARIABLES = 500

    def __init__(self, connection: sqlite3.Connection, spans: list[SpanCost]) -> None:
        super().__init__(connection)
        self._accounted: set[str] = set()  # counted before this batch, or by it
        self._new_accounted: dict[str, float] = {}
        self._spend_writes: dict[str, float] = {}  # key -> keep_until (the highest asked for)
        self._blocks: dict[str, RunBlock | None] = {}
        ids = list({span.span_id for span in spans})
        for offset in range(0, len(ids), self._SQL_VARIABLES):
            chunk = ids[offset:offset + self._SQL_VARIABLES]
            marks = ",".join("?" * len(chunk))
            self._accounted.update(row[0] for row in connection.execute(
                f"SELECT span_id FROM budget_accounted WHERE span_id IN ({marks})", chunk))
        # Each span reads its run's spend and block: read them for every run of the batch at once.
        runs = list({run_key(span.tenant, span.run_id) for span in spans})
        for offset in range(0, len(runs), self._SQL_VARIABLES):
            chunk = runs[offset:offset + self._SQL_VARIABLES]
            self.spends(chunk)
            self._blocks.update(dict.fromkeys(chunk))
            marks = ",".join("?" * len(chunk))
            query = f"SELECT run_key, budget, step, at FROM budget_run_block WHERE run_key IN ({marks})"
            for key, budget, step, at in connection.execute(query, chunk):
                self._blocks[key] = RunBlock(budget, step, at)

    def mark_accounted(self, span_id: str, *, keep_until: float) -> bool:
        if span_id in self._accounted:
            return False
        self._accounted.add(span_id)
        self._new_accounted[span_id] = keep_until
        return True

    def add_spends(self, amounts: dict[str, tuple[Decimal, float]]) -> None:
        current = self.spends(list(amounts))
        writes = self._spend_writes
        for key, (amount, keep_until) in amounts.items():
            self._spent[key] = current[key] + amount
            if writes.get(key, keep_until) <= keep_until:
                writes[key] = keep_until

    def run_block(self, key: str) -> RunBlock | None:
        if key not in self._blocks:
            self._blocks[key] = super().run_block(key)
        return self._blocks[key]

    def set_run_block(self, key: str, block: RunBlock, *, keep_until: float) -> None:
        super().set_run_block(key, block, keep_until=keep_until)  # INSERT OR IGNORE: the first stays
        self._blocks.pop(key, None)

    def flush(self) -> None:
        """Write what the batch counted, in the caller's transaction."""
        if self._new_accounted:
            self._db.executemany(
                "INSERT OR IGNORE INTO budget_accounted (span_id, keep_until) VALUES (?, ?)",
                list(self._new_accounted.items()))
        if self._spend_writes:
            self._db.executemany(
                "INSERT INTO budget_spend (key, usd, keep_until) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET usd = excluded.usd, keep_until = MAX(keep_until, excluded.keep_until)",
                [(key, str(self._spent[key]), keep_until) for key, keep_until in self._spend_writes.items()])
        self._new_accounted.clear()
        self._spend_writes.clear()


def _same_file(first: str, second: str) -> bool:
    import os

    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.abspath(first) == os.path.abspath(second)
