"""The ledger: spend per (budget, window) and per run, reservations, and the two-phase check.

Keys name what is counted: `run/{tenant}/{run_id}` for a run, `win/{budget}/{daily|monthly}/{period}`
for a budget's calendar window. A reservation holds an amount against a set of keys until it
is settled (replaced by the actual cost), released, or expires.

Every operation runs inside one storage transaction (`LedgerStore.run`), so a check reads the
spend and reservations of every limit that applies and reserves against all of them, or none,
atomically: two concurrent checks cannot both take the last dollar. The algorithm is written
once, here, against the small `LedgerTxn` interface that both backends implement.

Each span is counted once: a span id is remembered as "accounted" when its cost is counted,
whether that happened through a check's settlement or through the ingested span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple, Protocol, TypeVar

from .config import BudgetConfig
from .decision import LimitState, decide
from .model import ZERO, CheckAnswer, CheckRequest, Reservation, RunBlock, SpanCost
from .windows import Clock, Window, period_of, system_clock, window_end

__all__ = ["Ledger", "LedgerStore", "LedgerTxn", "run_key", "window_key"]

T = TypeVar("T")

# Spend of a run is kept this long after its last change: long enough for any agent run.
RUN_RETENTION_SECONDS = 7 * 86400.0
# A span id is remembered as counted this long: OTLP exporters retry for minutes, not days.
ACCOUNTED_RETENTION_SECONDS = 2 * 86400.0
# Window totals outlive their window by this much, for late reports and the metrics.
WINDOW_GRACE_SECONDS = 35 * 86400.0
PURGE_INTERVAL_SECONDS = 60.0
# When no budget applies to a call, the answer grants this much, valid this long: the agent then
# asks again only every half TTL (budgets change only when the collector is reconfigured).
NO_LIMIT_ALLOWANCE_USD = Decimal(1_000_000)
NO_BUDGET_TTL_SECONDS = 60.0
# An allowance may hold at most this share of what a shared (daily, monthly) window has left:
# an agent's unspent allowance must not refuse other runs' calls, so near a window's limit
# allowances shrink to nothing and every call is checked on its own.
ALLOWANCE_SHARE_OF_WINDOW = Decimal("0.1")
# Remembered among the counted span ids: "this call's settlement took its part of a reservation".
_SETTLED = "settled/"


def run_key(tenant: str, run_id: str) -> str:
    return f"run/{tenant}/{run_id}"


def window_key(budget: str, window: Window, period: str) -> str:
    return f"win/{budget}/{window}/{period}"


class LedgerTxn(Protocol):
    """Reads and writes inside one atomic transaction. Reads see this transaction's writes.

    Times are epoch seconds; amounts are Decimal USD. Expired reservations are invisible.
    """

    def spend(self, key: str) -> Decimal: ...
    def spends(self, keys: list[str]) -> dict[str, Decimal]: ...
    def add_spends(self, amounts: dict[str, tuple[Decimal, float]]) -> None:
        """Add to each key's spend: {key: (amount, keep_until)}."""
        ...

    def reserved(self, key: str, now: float) -> Decimal: ...
    def reserved_many(self, keys: list[str], now: float) -> dict[str, Decimal]:
        """What live reservations hold against each key: a running total per key, so this costs
        the same however many reservations are in flight."""
        ...

    def prefetch(self, keys: list[str], reservation_ids: list[str], run_keys: list[str], now: float) -> None:
        """A hint: the transaction is about to read the spend and reservations of `keys`, the
        reservations `reservation_ids` and the blocks of `run_keys`; read them at once."""
        ...

    def reservation(self, reservation_id: str, now: float) -> Reservation | None: ...
    def put_reservation(self, reservation: Reservation) -> None: ...
    def drop_reservation(self, reservation: Reservation) -> None: ...
    def is_accounted(self, span_id: str) -> bool: ...
    def mark_accounted(self, span_id: str, *, keep_until: float) -> bool:
        """Remember the span id as counted; False if it already was (then count nothing)."""
        ...

    def run_block(self, key: str) -> RunBlock | None: ...
    def set_run_block(self, key: str, block: RunBlock, *, keep_until: float) -> None: ...


class LedgerStore(Protocol):
    def run(self, operation: Callable[[LedgerTxn], T], *, now: float) -> T:
        """Run `operation` in one atomic transaction; it may be run again if the store retries.

        `now` is the ledger clock's time: `keep_until` times are relative to it.
        """
        ...

    def purge(self, now: float) -> None:
        """Forget expired reservations, spend and span ids (housekeeping, not correctness)."""
        ...

    def close(self) -> None: ...


class Ledger:
    """The budget logic over a store. Safe to share between threads (the store serialises)."""

    def __init__(self, store: LedgerStore, budgets: Iterable[BudgetConfig], *, clock: Clock = system_clock):
        self.store = store
        self.budgets = tuple(budgets)
        self.clock = clock
        self._next_purge = 0.0
        self._plans: dict[tuple[str, str, str, int], _Plan] = {}

    # -- what applies ------------------------------------------------------------------------
    def applicable(self, *, tenant: str, feature: str, agent: str) -> list[BudgetConfig]:
        return [b for b in self.budgets if b.applies_to(tenant=tenant, feature=feature, agent=agent)]

    def _plan(self, tenant: str, feature: str, agent: str, moment: datetime, now: float) -> _Plan:
        """What a check of (tenant, feature, agent) on `moment`'s UTC day is decided against;
        worked out once a day for each such triple (every check asks, and the answer changes
        only with the day: matching budgets, making window ids and keys cost a check ~10 us)."""
        labels = (tenant, feature, agent, int(now // 86400))  # POSIX days are UTC days
        plan = self._plans.get(labels)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            budgets = self.applicable(tenant=tenant, feature=feature, agent=agent)
            windows = _windows(budgets, moment)
            plan = self._plans[labels] = _Plan(
                budgets,
                windows,
                tuple(window_key(budget.name, window, period) for budget, window, period, _ in windows),
                min((budget.reservation_ttl_seconds for budget in budgets), default=NO_BUDGET_TTL_SECONDS),
                _tracks_run(budgets),
            )
        return plan

    # -- the check ---------------------------------------------------------------------------
    def check(self, request: CheckRequest) -> CheckAnswer:
        moment = self.clock()
        now = moment.timestamp()
        self._maybe_purge(now)
        budgets, windows, window_keys, ttl, tracks_run = self._plan(
            request.tenant, request.feature, request.agent, moment, now
        )
        # A request without a run only settles: it reads no run (and `prefetch` drops empty ids).
        run = run_key(request.tenant, request.run_id) if tracks_run and request.run_id else None
        keys = [*window_keys, run] if run is not None else list(window_keys)
        touched = [settlement.reservation_id or settlement.span_id for settlement in request.settle]
        touched += request.release
        touched.append(request.span_id)

        def operation(txn: LedgerTxn) -> CheckAnswer:
            # Everything below reads these: one round trip to the store instead of one per read.
            txn.prefetch(keys if request.run_id else [], touched, [run] if run is not None else [], now)
            # Settle before releasing: a settlement is counted against the reservation it names.
            for settlement in request.settle:
                self._settle(
                    txn,
                    settlement.span_id,
                    settlement.actual_cost_usd,
                    settlement.reservation_id or settlement.span_id,
                    settlement.reserved_usd,
                    now,
                )
            for reservation_id in request.release:
                held = txn.reservation(reservation_id, now)
                if held is not None:
                    txn.drop_reservation(held)
            if not request.run_id:
                return CheckAnswer(decision="allow", reason="settled; no call to decide")

            spent, reserved = txn.spends(keys), txn.reserved_many(keys, now)
            states = [
                LimitState(budget, window, limit, spent[key], reserved[key], period)
                for key, (budget, window, period, limit) in zip(keys, windows, strict=False)
            ]
            run_spent = run_reserved = ZERO
            block = None
            if run is not None:
                run_spent, run_reserved, block = spent[run], reserved[run], txn.run_block(run)
                states += [
                    LimitState(budget, "per_run", budget.per_run_limit_usd, run_spent, run_reserved)
                    for budget in budgets
                    if budget.per_run_limit_usd is not None
                ]
            estimate = max(request.estimated_cost_usd, ZERO)
            verdict = decide(states, estimate=estimate, run_block=block)

            newly_blocked = None
            if verdict.blocks_run and run is not None:
                newly_blocked = RunBlock(verdict.budget, request.step, now)
                txn.set_run_block(run, newly_blocked, keep_until=now + RUN_RETENTION_SECONDS)
            allowance = ZERO
            reservation_id = ""
            if verdict.decision != "block" and request.span_id and budgets:
                if verdict.decision == "allow" and verdict.headroom is not None:
                    allowance = _allowance(
                        request.allowance_usd, estimate, verdict.headroom, verdict.window_remaining
                    )
                if estimate + allowance > 0:
                    held = Reservation(request.span_id, tuple(keys), estimate + allowance, now + ttl)
                    txn.put_reservation(held)
                    reservation_id = request.span_id
            elif verdict.decision == "allow" and not budgets:
                # Nothing limits this call: let the agent go on without asking for a while.
                allowance = NO_LIMIT_ALLOWANCE_USD if request.span_id else ZERO
            reserved_now = estimate + allowance if reservation_id else ZERO
            return CheckAnswer(
                decision=verdict.decision,
                reason=verdict.reason,
                budget=verdict.budget,
                run_spent_usd=run_spent,
                run_remaining_usd=None
                if verdict.run_remaining is None
                else verdict.run_remaining - reserved_now,
                window=verdict.window,
                window_remaining_usd=(
                    None if verdict.window_remaining is None else verdict.window_remaining - reserved_now
                ),
                reservation_id=reservation_id,
                allowance_usd=allowance,
                reservation_ttl_seconds=ttl,
                newly_blocked=newly_blocked,
                limit_usd=verdict.limit,
                committed_usd=verdict.committed,
            )

        return self.store.run(operation, now=now)

    def _settle(
        self,
        txn: LedgerTxn,
        span_id: str,
        actual: Decimal,
        reservation_id: str,
        reserved_part: Decimal | None,
        now: float,
    ) -> None:
        held = txn.reservation(reservation_id, now)
        if held is None:
            # Expired or never made: the span itself will be counted when it arrives.
            return
        remaining = ZERO if reserved_part is None else held.amount - reserved_part
        if remaining > 0:
            # The reservation outlives this settlement (an allowance's other calls): take this
            # call's part out of it once only. A check the agent sends again after a timeout
            # (the collector had answered too late) carries the settlement again, and taking the
            # part twice would leave the agent's allowance larger than what is still reserved.
            if not txn.mark_accounted(_SETTLED + span_id, keep_until=now + ACCOUNTED_RETENTION_SECONDS):
                return
            txn.put_reservation(Reservation(held.id, held.keys, remaining, held.expires_at))
        else:
            txn.drop_reservation(held)
        if not txn.mark_accounted(span_id, keep_until=now + ACCOUNTED_RETENTION_SECONDS):
            return  # its span (or an earlier settlement) was counted already
        txn.add_spends({key: (actual, self._keep_until(key, now)) for key in held.keys})

    def _keep_until(self, key: str, now: float) -> float:
        if key.startswith("run/"):
            return now + RUN_RETENTION_SECONDS
        window: Window = "daily" if key.split("/")[-2] == "daily" else "monthly"
        # POSIX time has 86400 s a day, so this is the UTC day `now` falls in.
        return _window_end_of_day(window, int(now // 86400)) + WINDOW_GRACE_SECONDS

    # -- ingested spans ------------------------------------------------------------------------
    def count_spans(
        self, spans: Iterable[SpanCost], txn: LedgerTxn | None = None
    ) -> list[tuple[SpanCost, RunBlock]]:
        """Count ingested LLM spans once each; return the runs this newly blocked (span, block).

        With `txn`, runs inside the caller's transaction (the collector's batch commit; the
        collector's own store passes a `SqliteBatchTxn`, which gathers the reads and writes of
        the whole batch). The clock is read once per call, so which budgets apply to a span, the
        keys of their windows and how long each key is kept depend only on the span's (tenant,
        feature, agent): they are looked up once per call for each such triple, not per span.
        """
        spans = list(spans)
        if not spans:
            return []
        moment = self.clock()
        now = moment.timestamp()
        targets: dict[tuple[str, str, str], _Targets] = {}

        def targets_of(span: SpanCost) -> _Targets:
            labels = (span.tenant, span.feature, span.agent)
            found = targets.get(labels)
            if found is None:
                plan = self._plan(span.tenant, span.feature, span.agent, moment, now)
                keep = [(key, self._keep_until(key, now)) for key in plan.window_keys]
                found = targets[labels] = _Targets(plan.budgets, keep, plan.tracks_run)
            return found

        def operation(txn: LedgerTxn) -> list[tuple[SpanCost, RunBlock]]:
            blocked: list[tuple[SpanCost, RunBlock]] = []
            for span in spans:
                if not txn.mark_accounted(span.span_id, keep_until=now + ACCOUNTED_RETENTION_SECONDS):
                    continue  # settled through a check, or delivered again
                budgets, window_keys, tracks_run = targets_of(span)
                amounts = {key: (span.cost_usd, keep_until) for key, keep_until in window_keys}
                run = run_key(span.tenant, span.run_id) if tracks_run else None
                if run is not None:
                    amounts[run] = (span.cost_usd, now + RUN_RETENTION_SECONDS)
                txn.add_spends(amounts)
                if run is None:
                    continue
                if txn.run_block(run) is not None:
                    continue
                spent = txn.spend(run)
                for budget in budgets:
                    limit = budget.per_run_limit_usd
                    if limit is not None and budget.enforcement == "block" and spent > limit:
                        block = RunBlock(budget.name, span.step, now)
                        txn.set_run_block(run, block, keep_until=now + RUN_RETENTION_SECONDS)
                        blocked.append((span, block))
                        break
            return blocked

        return operation(txn) if txn is not None else self.store.run(operation, now=now)

    # -- reading -------------------------------------------------------------------------------
    def window_spend(self) -> list[tuple[BudgetConfig, Window, Decimal, Decimal]]:
        """(budget, window, limit, spend) of every budget's current windows, for the metrics."""
        moment = self.clock()
        now = moment.timestamp()
        pairs = [
            (budget, window, limit, window_key(budget.name, window, period_of(window, moment)))
            for budget in self.budgets
            for window, limit in budget.window_limits().items()
        ]
        if not pairs:
            return []
        return self.store.run(
            lambda txn: [(b, w, limit, txn.spend(key)) for b, w, limit, key in pairs], now=now
        )

    def run_state(self, *, tenant: str, run_id: str) -> tuple[Decimal, RunBlock | None]:
        key = run_key(tenant, run_id)
        return self.store.run(lambda txn: (txn.spend(key), txn.run_block(key)), now=self.clock().timestamp())

    def _maybe_purge(self, now: float) -> None:
        if now >= self._next_purge:
            self._next_purge = now + PURGE_INTERVAL_SECONDS
            self.store.purge(now)


# Cached plans, one per (tenant, feature, agent, day) seen; forgotten all at once past this many.
_MAX_PLANS = 10_000


class _Plan(NamedTuple):
    budgets: list[BudgetConfig]
    windows: list[tuple[BudgetConfig, Window, str, Decimal]]  # (budget, window, period, limit)
    window_keys: tuple[str, ...]
    ttl: float
    tracks_run: bool


class _Targets(NamedTuple):
    """What a span of one (tenant, feature, agent) is counted against, at one moment."""

    budgets: list[BudgetConfig]
    window_keys: list[tuple[str, float]]  # (key, keep_until)
    tracks_run: bool


def _windows(
    budgets: list[BudgetConfig], moment: datetime
) -> list[tuple[BudgetConfig, Window, str, Decimal]]:
    """(budget, window, period, limit) of every calendar window of `budgets` at `moment`."""
    day = (moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)).date()
    return [
        (budget, window, _period_of_day(window, day), limit)
        for budget in budgets
        for window, limit in budget.window_limits().items()
    ]


# A window's id and end depend only on the UTC day, and every check asks for them: computing them
# (strftime, datetime arithmetic) was about a tenth of a check's Python time; now once a day.
@lru_cache(maxsize=64)
def _period_of_day(window: Window, day: date) -> str:
    return period_of(window, datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


@lru_cache(maxsize=64)
def _window_end_of_day(window: Window, epoch_day: int) -> float:
    return window_end(window, datetime.fromtimestamp(epoch_day * 86400, timezone.utc)).timestamp()


def _tracks_run(budgets: list[BudgetConfig]) -> bool:
    # A run is tracked where a per-run limit applies, or a budget may block it for looping
    # (the waste stage writes that block into the ledger: collector/waste/loop_block.py).
    return any(budget.per_run_limit_usd is not None or budget.on_loop == "block" for budget in budgets)


def _allowance(
    asked: Decimal, estimate: Decimal, headroom: Decimal, window_remaining: Decimal | None
) -> Decimal:
    """Headroom to grant beyond this call: what was asked, within every limit's room, and within a
    share of the shared windows' room; nothing if that would not cover one more call like this."""
    granted = min(asked, headroom)
    if window_remaining is not None:
        granted = min(granted, (window_remaining - estimate) * ALLOWANCE_SHARE_OF_WINDOW)
    return granted if granted > 0 and granted >= estimate else ZERO
