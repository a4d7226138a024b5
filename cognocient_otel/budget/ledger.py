"""A run's in-process spend ledger: settled cost plus reservations of calls in flight."""

from __future__ import annotations

import threading
from decimal import Decimal

__all__ = ["LedgerDecision", "RunLedger"]

_ZERO = Decimal(0)


class LedgerDecision:
    """Outcome of `RunLedger.reserve`: `over_limit` tells whether a limit would be crossed and
    `blocked` whether the call must not be sent; `committed` (settled + reserved, before this
    call) is what the run with that `limit` had already committed."""

    __slots__ = ("blocked", "committed", "limit", "over_limit")

    def __init__(self, over_limit: bool, committed: Decimal, limit: Decimal | None, *, blocked: bool) -> None:
        self.over_limit = over_limit
        self.blocked = blocked
        self.committed = committed
        self.limit = limit


class RunLedger:
    """Spend of one run (or sub-run) in this process, safe under threads and asyncio tasks.

    A nested sub-run's ledger has its parent's as `parent` and shares its lock, so a reservation
    is checked against every enclosing limit and recorded at every level in one atomic step.
    The lock is held for a few Decimal operations only, never across I/O or an `await`.

    `blocks` is the run's enforcement (`block` -> True, `warn` -> False). Once a call has been
    blocked the ledger stays blocked (DESIGN.md: a blocked run stays blocked).
    """

    __slots__ = ("_lock", "blocked", "blocks", "limit", "parent", "reserved", "settled", "settled_calls")

    def __init__(
        self, limit: Decimal | None, *, blocks: bool = True, parent: RunLedger | None = None
    ) -> None:
        self.limit = limit
        self.blocks = blocks
        self.parent = parent
        self._lock: threading.Lock = parent._lock if parent is not None else threading.Lock()
        self.settled = _ZERO
        self.reserved = _ZERO
        self.settled_calls = 0
        self.blocked = False

    def reserve(self, estimate: Decimal) -> LedgerDecision:
        """Reserve `estimate` unless it would cross a blocking limit here or in an enclosing run.

        A call over a blocking limit reserves nothing (it will not be sent) and marks that ledger
        blocked for good. A call over a warn-only limit is reserved anyway and reported over limit.
        The first limit found crossed (innermost first) is the one reported.
        """
        with self._lock:
            crossed = self._reserve_locked(estimate)
            if crossed is not None:
                return crossed
            return LedgerDecision(False, self.settled + self.reserved - estimate, self.limit, blocked=False)

    def try_reserve(self, estimate: Decimal) -> LedgerDecision | None:
        """`reserve`, answering None instead of a decision when no limit is crossed (the usual
        case, with nothing to build: the per-call path)."""
        with self._lock:
            return self._reserve_locked(estimate)

    def _reserve_locked(self, estimate: Decimal) -> LedgerDecision | None:
        if self.parent is None:
            # A run that is not a sub-run: one ledger to check and charge.
            limit = self.limit
            if limit is not None and (self.blocked or self.settled + self.reserved + estimate > limit):
                committed = self.settled + self.reserved
                if self.blocks:
                    self.blocked = True
                    return LedgerDecision(True, committed, limit, blocked=True)
                self.reserved += estimate
                return LedgerDecision(True, committed, limit, blocked=False)
            self.reserved += estimate
            return None
        warned: LedgerDecision | None = None
        ledger: RunLedger | None = self
        while ledger is not None:
            if ledger.limit is not None:
                committed = ledger.settled + ledger.reserved
                if ledger.blocked or committed + estimate > ledger.limit:
                    if ledger.blocks:
                        ledger.blocked = True
                        return LedgerDecision(True, committed, ledger.limit, blocked=True)
                    if warned is None:
                        warned = LedgerDecision(True, committed, ledger.limit, blocked=False)
            ledger = ledger.parent
        ledger = self
        while ledger is not None:
            ledger.reserved += estimate
            ledger = ledger.parent
        return warned

    def settle(self, estimate: Decimal, actual: Decimal) -> None:
        """Replace a reservation of `estimate` by the call's `actual` cost, at every level."""
        with self._lock:
            ledger: RunLedger | None = self
            while ledger is not None:
                ledger.reserved -= estimate
                ledger.settled += actual
                ledger.settled_calls += 1
                ledger = ledger.parent

    def remaining(self) -> Decimal | None:
        """Limit minus settled and reserved cost (never below zero); None without a limit."""
        with self._lock:
            if self.limit is None:
                return None
            return max(_ZERO, self.limit - self.settled - self.reserved)
