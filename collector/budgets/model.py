"""The check API's request and answer, independent of gRPC, HTTP and storage."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

__all__ = ["CheckAnswer", "CheckRequest", "Decision", "Reservation", "RunBlock", "Settlement", "SpanCost"]

Decision = Literal["allow", "warn", "block"]
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Settlement:
    """A call finished: replace (part of) its reservation by what it really cost.

    `reservation_id` names the reservation the call was covered by: its own span id (the
    default, empty string) or the span id of the call that was granted an allowance the agent
    then spent down locally. `reserved_usd` is the part of that reservation this call took (its
    estimate); None releases the whole reservation.
    """

    span_id: str
    actual_cost_usd: Decimal
    reservation_id: str = ""
    reserved_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """May the next LLM call of this run go ahead? Reserves `estimated_cost_usd` under `span_id`.

    An empty `span_id` asks without reserving (the `run.check()` between steps).
    `allowance_usd` asks for extra headroom, reserved too, that the agent may spend on later
    calls of the same run without asking again; the answer says how much was granted.
    """

    run_id: str
    tenant: str = ""
    feature: str = ""
    agent: str = ""
    estimated_cost_usd: Decimal = ZERO
    span_id: str = ""
    step: int = 0
    settle: tuple[Settlement, ...] = ()
    release: tuple[str, ...] = ()
    allowance_usd: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    decision: Decision
    reason: str
    budget: str = ""
    run_spent_usd: Decimal = ZERO
    run_remaining_usd: Decimal | None = None
    window: str = ""
    window_remaining_usd: Decimal | None = None
    reservation_id: str = ""
    allowance_usd: Decimal = ZERO
    reservation_ttl_seconds: float = 0.0
    # The deciding limit, when a budget decided (warn, block): its value, and what was spent and
    # reserved against it before this call.
    limit_usd: Decimal | None = None
    committed_usd: Decimal | None = None
    # Set when this check marked the run blocked (it was not before): the caller records it
    # in the run rollup and counts it once.
    newly_blocked: RunBlock | None = None


@dataclass(frozen=True, slots=True)
class RunBlock:
    """Why and when a run was blocked; it stays blocked."""

    budget: str
    step: int
    at: float


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    keys: tuple[str, ...]
    amount: Decimal
    expires_at: float


@dataclass(frozen=True, slots=True)
class SpanCost:
    """What the ledger needs from one ingested LLM span."""

    span_id: str
    run_id: str
    cost_usd: Decimal
    tenant: str = ""
    feature: str = ""
    agent: str = ""
    step: int = 0
