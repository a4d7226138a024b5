"""Run by test_ledger_processes: checks against a shared SQLite ledger file from another process.

Usage: python -m tests.budgets.ledger_worker LEDGER_PATH NAME CALLS; prints the calls allowed.
"""

import sys
from decimal import Decimal

from collector.budgets.config import parse_budgets
from collector.budgets.ledger import Ledger
from collector.budgets.model import CheckRequest
from collector.budgets.sqlite_store import SqliteLedgerStore

BUDGETS = parse_budgets(
    [
        {"name": "shared", "scope": "feature", "scope_value": "docs", "monthly_limit_usd": "1.00"},
        {"name": "run", "scope": "feature", "scope_value": "docs", "per_run_limit_usd": "0.50"},
    ]
)


def main() -> None:
    path, name, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ledger = Ledger(SqliteLedgerStore(path), BUDGETS)
    allowed = 0
    for index in range(calls):
        # Half the calls belong to one run shared by both processes, half to this process's own runs.
        run_id = "shared-run" if index % 2 == 0 else f"{name}-{index}"
        answer = ledger.check(
            CheckRequest(
                run_id=run_id, feature="docs", estimated_cost_usd=Decimal("0.03"), span_id=f"{name}-{index}"
            )
        )
        allowed += answer.decision == "allow"
    print(allowed)


if __name__ == "__main__":
    main()
