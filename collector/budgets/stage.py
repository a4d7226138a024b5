"""The pipeline stage that counts ingested LLM span costs into the budget ledger.

Runs after dedup, cost and rollup (collector/pipeline.py), inside the batch's transaction: with
the SQLite ledger in the collector's own store, a span's cost reaches the budgets in the same
commit that counts it in its run's rollup. A span whose call was already settled through a
check is skipped by the ledger (once per span id). A run that crosses a per-run `block` limit
is marked blocked in the rollup, with the budget and the step.

In the collector's own store the ledger counts through a `SqliteBatchTxn`: the same reads and
writes as `SqliteLedgerTxn`, in the same transaction, but gathered per batch (see sqlite_store.py).
"""

from __future__ import annotations

from collector.model import SpanBatch
from collector.pipeline import Stage, StageMetrics
from collector.store import Store

from .ledger import Ledger
from .model import SpanCost
from .service import BudgetCounters
from .sqlite_store import SCHEMA, SqliteBatchTxn, SqliteLedgerStore

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
        if self._in_store_transaction and batch.uow is not None:
            txn = SqliteBatchTxn(batch.uow.conn, spans)
            blocked = self.ledger.count_spans(spans, txn=txn)
            txn.flush()
        else:
            blocked = self.ledger.count_spans(spans)
        for span, block in blocked:
            if batch.uow is not None:
                batch.uow.mark_blocked((span.tenant, span.run_id), budget=block.budget, step=block.step)
            labels = (block.budget, span.feature, span.agent)
            if batch.uow is not None:
                batch.uow.after_commit(lambda labels=labels: self.counters.blocked_runs.inc(labels))
            else:
                self.counters.blocked_runs.inc(labels)


def _same_file(first: str, second: str) -> bool:
    import os

    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.abspath(first) == os.path.abspath(second)
