"""`on_loop: block`: a budget that blocks a run once the run is flagged `loop`.

Two records of the block, both written by the waste stage when it raises the loop flag:

* the run's rollup (`uow.mark_blocked`, same transaction): status `blocked`, `blocked_by`
  {budget, step} in the runs API, like a run stopped by its per-run limit;
* the budget ledger's run block, which is what the budget check (`BudgetService/Check`,
  `POST /v1/budget/check`) reads to refuse a run's next call. With the ledger in the collector's
  SQLite store (the default), it is written in the same transaction; with the ledger in Redis,
  right after the commit (a block is idempotent: the first one stays).

The ledger consults a run's block where a per-run limit applies to the run, so an
`on_loop: block` budget needs `per_run_limit_usd` for the check to refuse the run's next call;
the rollup shows the run blocked either way.

The ledger is the one of the budget stage that follows the waste stage in the pipeline
(`collector/budgets/stage.py`); without budgets there is nothing to block with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from collector.model import RunKey
from collector.store import UnitOfWork

__all__ = ["LoopBlocker", "block_run", "find_ledger", "loop_blockers_from"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopBlocker:
    """A budget with `on_loop: block`: `applies(tenant=, feature=, agent=)` says which runs it covers."""

    budget: str
    applies: Callable[..., bool]


def loop_blockers_from(budgets: Iterable[Any]) -> list[LoopBlocker]:
    """The budgets (`collector.budgets.config.BudgetConfig`) that say `on_loop: block`."""
    return [LoopBlocker(budget.name, budget.applies_to)
            for budget in budgets if getattr(budget, "on_loop", None) == "block"]


def find_ledger(stages: Iterable[Any]) -> Any | None:
    """The budget ledger of the first stage (after the waste stage) that has one, else None."""
    for stage in stages:
        ledger = getattr(stage, "ledger", None)
        if ledger is not None and hasattr(ledger, "store"):
            return ledger
    return None


def block_run(uow: UnitOfWork, key: RunKey, *, budget: str, step: int, ledger: Any | None) -> None:
    """Mark the run blocked by `budget` at `step`, in the rollup and in the budget ledger."""
    uow.mark_blocked(key, budget=budget, step=step)
    if ledger is None:
        return
    from collector.budgets.ledger import RUN_RETENTION_SECONDS, run_key
    from collector.budgets.model import RunBlock
    from collector.budgets.sqlite_store import SqliteLedgerStore, SqliteLedgerTxn

    ledger_key = run_key(*key)
    block = RunBlock(budget=budget, step=step, at=uow.now)
    keep_until = uow.now + RUN_RETENTION_SECONDS
    store = ledger.store
    if isinstance(store, SqliteLedgerStore) and _same_file(store.path, uow.store.path):
        SqliteLedgerTxn(uow.conn).set_run_block(ledger_key, block, keep_until=keep_until)
        return

    def record() -> None:
        def operation(txn: Any) -> None:
            if txn.run_block(ledger_key) is None:
                txn.set_run_block(ledger_key, block, keep_until=keep_until)

        store.run(operation, now=uow.now)

    uow.after_commit(record)


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.abspath(first) == os.path.abspath(second)
