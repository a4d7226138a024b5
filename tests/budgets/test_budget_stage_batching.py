"""The budget stage counts a batch in one `Ledger.count_spans` call (lookups made once per call)
through a `SqliteBatchTxn` (reads gathered, writes deferred): the ledger ends in exactly the state
that counting span by span, one call per span through the plain SQLite ledger transaction, gives."""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from collector.budgets.config import parse_budgets
from collector.budgets.ledger import Ledger
from collector.budgets.model import SpanCost
from collector.budgets.sqlite_store import SCHEMA, SqliteBatchTxn, SqliteLedgerStore, SqliteLedgerTxn

BUDGETS = parse_budgets([
    {"name": "support per run", "scope": "feature", "scope_value": "support", "per_run_limit_usd": "0.05",
     "monthly_limit_usd": 100},
    {"name": "global daily", "scope": "global", "daily_limit_usd": 100, "enforcement": "warn"},
    {"name": "agent a", "scope": "agent", "scope_value": "a", "per_run_limit_usd": "0.08"},
])
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def _batches(seed: int) -> list[list[SpanCost]]:
    rng = random.Random(seed)
    spans = [SpanCost(span_id=f"s{index}", run_id=f"r{rng.randrange(6)}",
                      cost_usd=Decimal(rng.randrange(1, 900)) / 10_000, tenant=rng.choice(["default", "t2"]),
                      feature=rng.choice(["support", "other"]), agent=rng.choice(["a", "b"]), step=index + 1)
             for index in range(rng.randrange(5, 60))]
    spans += rng.sample(spans, min(len(spans), 4))  # delivered again
    batches, position = [], 0
    while position < len(spans):
        size = rng.randint(1, 12)
        batches.append(spans[position:position + size])
        position += size
    return batches


def _count(path, batches, *, batched: bool) -> tuple[list, list]:
    store = SqliteLedgerStore(path)
    ledger = Ledger(store, BUDGETS, clock=lambda: NOW)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.executescript(SCHEMA)
    blocked = []
    for batch in batches:
        connection.execute("BEGIN IMMEDIATE")
        if batched:
            txn = SqliteBatchTxn(connection, batch)
            blocked += ledger.count_spans(batch, txn=txn)
            txn.flush()
        else:
            txn = SqliteLedgerTxn(connection)
            for span in batch:
                blocked += ledger.count_spans([span], txn=txn)
        connection.execute("COMMIT")
    tables = [connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
              for table in ("budget_spend", "budget_accounted", "budget_run_block")]
    connection.close()
    store.close()
    return [(span.span_id, block.budget, block.step) for span, block in blocked], tables


@pytest.mark.parametrize("seed", range(30))
def test_batched_counting_leaves_the_ledger_as_counting_span_by_span_does(tmp_path, seed):
    batches = _batches(seed)
    expected = _count(str(tmp_path / "plain.db"), batches, batched=False)
    assert _count(str(tmp_path / "batched.db"), batches, batched=True) == expected


def test_the_random_batches_do_block_runs(tmp_path):
    # guards the test above against comparing ledgers where nothing crossed a limit
    blocked = [_count(str(tmp_path / f"{seed}.db"), _batches(seed), batched=True)[0] for seed in range(10)]
    assert sum(1 for blocks in blocked if blocks) >= 3
