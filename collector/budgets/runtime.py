"""Everything the collector needs to run budgets, built from the `budgets:` section.

The collector's assembly code (collector/app.py) calls `BudgetRuntime.build(...)` once, then
adds `runtime.stage_factory` to its pipeline, `runtime.checker` to its gRPC server and HTTP route,
and `runtime.metrics` to its Prometheus registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.pipeline import Stage

from .config import BudgetConfig
from .ledger import Ledger, LedgerStore
from .prometheus import BudgetMetricsCollector
from .service import BudgetChecker, BudgetCounters, OnRunBlocked
from .stage import BudgetStage
from .windows import Clock, system_clock

__all__ = ["REDIS_URL_ENV", "BudgetRuntime"]

# Set to keep budget spend in Redis (several collector replicas); else the SQLite store is used.
REDIS_URL_ENV = "COGNOCIENT_BUDGETS_REDIS_URL"


@dataclass
class BudgetRuntime:
    ledger: Ledger
    counters: BudgetCounters
    checker: BudgetChecker
    metrics: BudgetMetricsCollector

    @classmethod
    def build(
        cls,
        budgets: Iterable[BudgetConfig],
        *,
        store_path: str | Path,
        clock: Clock = system_clock,
        redis_url: str | None = None,
        on_run_blocked: OnRunBlocked | None = None,
    ) -> BudgetRuntime:
        """Ledger in `redis_url` (or $COGNOCIENT_BUDGETS_REDIS_URL) if set, else in the SQLite file."""
        redis_url = redis_url or os.environ.get(REDIS_URL_ENV) or None
        store: LedgerStore
        if redis_url:
            from .redis_store import RedisLedgerStore

            store = RedisLedgerStore(redis_url)
        else:
            from .sqlite_store import SqliteLedgerStore

            store = SqliteLedgerStore(store_path)
        ledger = Ledger(store, budgets, clock=clock)
        counters = BudgetCounters()
        return cls(
            ledger,
            counters,
            BudgetChecker(ledger, counters=counters, on_run_blocked=on_run_blocked),
            BudgetMetricsCollector(ledger, counters),
        )

    def stage_factory(self, next: Stage) -> Stage:
        return BudgetStage(next, ledger=self.ledger, counters=self.counters)

    def close(self) -> None:
        self.ledger.store.close()
