"""The decision, as a pure function of what the ledger holds: allow, warn or block.

A call is allowed only if every limit that applies allows it. A limit refuses when its spend
has reached it, or when spend plus open reservations plus this call's estimate would cross it.
`warn` budgets never refuse; they turn an allow into a warn. The deciding limit is the first
refusing one in nesting order: windows global -> tenant -> feature/agent, then per-run limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from .config import SCOPE_ORDER, BudgetConfig
from .model import Decision, RunBlock

__all__ = ["LimitState", "Verdict", "decide"]

LimitKind = Literal["daily", "monthly", "per_run"]


@dataclass(frozen=True, slots=True)
class LimitState:
    budget: BudgetConfig
    kind: LimitKind
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    period: str = ""  # "2026-11" for a monthly window, "" for per-run

    @property
    def headroom(self) -> Decimal:
        return self.limit - self.spent - self.reserved

    def refuses(self, estimate: Decimal) -> bool:
        return self.spent >= self.limit or self.spent + self.reserved + estimate > self.limit

    def explain(self, estimate: Decimal) -> str:
        what = f"{self.kind} window {self.period}" if self.period else "per-run limit"
        return (
            f"budget '{self.budget.name}' ({what}): spent ${self.spent} + reserved ${self.reserved} "
            f"+ this call ${estimate} would exceed ${self.limit}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str
    budget: str
    blocks_run: bool  # a per-run block limit refused: the run is blocked from now on
    # How much more than this call's estimate could be spent without crossing any limit
    # (None: no limit applies). Allowances are granted out of it.
    headroom: Decimal | None
    run_remaining: Decimal | None
    window: str
    window_remaining: Decimal | None
    # The deciding limit (None when allowed): its value and what was spent and reserved against it.
    limit: Decimal | None = None
    committed: Decimal | None = None


def _order(state: LimitState) -> tuple[int, int]:
    return (1 if state.kind == "per_run" else 0, SCOPE_ORDER[state.budget.scope])


def decide(limits: list[LimitState], *, estimate: Decimal, run_block: RunBlock | None) -> Verdict:
    ordered = sorted(limits, key=_order)
    per_run = [state for state in ordered if state.kind == "per_run"]
    windows = [state for state in ordered if state.kind != "per_run"]
    run_remaining = min((state.headroom for state in per_run), default=None)
    tightest_window = min(windows, key=lambda state: state.headroom, default=None)
    window = f"{tightest_window.kind} {tightest_window.period}" if tightest_window else ""
    window_remaining = tightest_window.headroom if tightest_window else None
    headroom = min((state.headroom - estimate for state in ordered), default=None)

    def verdict(
        decision: Decision,
        reason: str,
        budget: str,
        blocks_run: bool = False,
        deciding: LimitState | None = None,
    ) -> Verdict:
        return Verdict(
            decision,
            reason,
            budget,
            blocks_run,
            headroom,
            run_remaining,
            window,
            window_remaining,
            deciding.limit if deciding else None,
            deciding.spent + deciding.reserved if deciding else None,
        )

    if run_block is not None:
        deciding = next(
            (s for s in per_run if s.budget.name == run_block.budget), per_run[0] if per_run else None
        )
        return verdict(
            "block",
            f"run is blocked by budget '{run_block.budget}' since step {run_block.step}",
            run_block.budget,
            deciding=deciding,
        )
    refusing = [state for state in ordered if state.refuses(estimate)]
    blocking = [state for state in refusing if state.budget.enforcement == "block"]
    if blocking:
        first = blocking[0]
        return verdict(
            "block",
            first.explain(estimate),
            first.budget.name,
            blocks_run=first.kind == "per_run",
            deciding=first,
        )
    if refusing:
        first = refusing[0]
        return verdict("warn", first.explain(estimate), first.budget.name, deciding=first)
    if not ordered:
        return verdict("allow", "no budget applies", "")
    return verdict("allow", "within every budget that applies", "")
