"""The check API's core, shared by the gRPC servicer and the HTTP handler: validate a request,
ask the ledger, count the decision, and report runs that became blocked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

from collector.decode import MAX_COST_USD
from collector.telemetry import CounterVec

from .ledger import Ledger
from .model import CheckAnswer, CheckRequest, RunBlock, Settlement

__all__ = [
    "CHECK_SCALAR_FIELDS", "DEFAULT_TENANT", "BadCheckRequest", "BudgetChecker", "BudgetCounters",
    "build_request", "request_from_message",
]

logger = logging.getLogger(__name__)

# The collector files spans without a tenant under this one (collector/model.py): a check
# without a tenant must land on the same run keys.
DEFAULT_TENANT = "default"
MAX_SETTLEMENTS = 10_000
# The fields of a check besides its `settle` and `release` lists, as both transports name them
# (the JSON body's keys, the protobuf CheckRequest's fields): what `build_request` reads.
CHECK_SCALAR_FIELDS = (
    "run_id", "tenant", "feature", "agent", "estimated_cost_usd", "span_id", "step", "allowance_usd",
)
_MAX_ID = 256
_MAX_NUMBER_TEXT = 64  # characters of an amount given as a string: longer is no amount of USD


class BadCheckRequest(ValueError):
    """A check request the caller must fix (INVALID_ARGUMENT / 400); the message says what."""


class _BeyondOneCall(BadCheckRequest):
    """An amount over one call's worth (`MAX_COST_USD`, infinity included)."""


class BudgetCounters:
    """The budget counters of /metrics (decisions, blocked calls, blocked runs)."""

    def __init__(self) -> None:
        self.decisions = CounterVec()  # (budget, decision)
        self.blocked_calls = CounterVec()  # (budget,)
        self.blocked_runs = CounterVec()  # (budget, feature, agent)


OnRunBlocked = Callable[[tuple[str, str], RunBlock, str, str], None]
"""Called with ((tenant, run_id), block, feature, agent) once when a check blocks a run."""


class BudgetChecker:
    def __init__(
        self,
        ledger: Ledger,
        *,
        counters: BudgetCounters | None = None,
        on_run_blocked: OnRunBlocked | None = None,
    ) -> None:
        self.ledger = ledger
        self.counters = counters or BudgetCounters()
        self.on_run_blocked = on_run_blocked

    def check(self, request: CheckRequest) -> CheckAnswer:
        answer = self.ledger.check(request)
        if not request.run_id:
            return answer  # a flush of settlements, not a decision
        self.counters.decisions.inc((answer.budget, answer.decision))
        if answer.decision == "block":
            self.counters.blocked_calls.inc((answer.budget,))
        if answer.newly_blocked is not None:
            self.counters.blocked_runs.inc((answer.newly_blocked.budget, request.feature, request.agent))
            if self.on_run_blocked is not None:
                try:
                    self.on_run_blocked(
                        (request.tenant, request.run_id), answer.newly_blocked, request.feature, request.agent
                    )
                except Exception:  # the ledger holds the block; the rollup's copy is for display
                    logger.exception("could not record blocked run %s in the rollup", request.run_id)
        return answer


def _text(fields: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    return _text_value(name, fields.get(name), required=required)


def _text_value(name: str, value: Any, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise BadCheckRequest(f"{name}: required (the run's id, cognocient.run.id)")
        return ""
    if not isinstance(value, str):
        raise BadCheckRequest(f"{name}: must be a string, got {type(value).__name__}")
    if len(value) > _MAX_ID:
        raise BadCheckRequest(f"{name}: longer than {_MAX_ID} characters")
    if not value.isascii():
        _require_utf8(name, value)
    return value


def _require_utf8(name: str, value: str) -> None:
    """JSON's `\ud800` escapes decode to lone surrogates, which no store can encode."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadCheckRequest(f"{name}: not valid Unicode text (a lone surrogate)") from None


def _money(fields: Mapping[str, Any], name: str, *, optional: bool = False) -> Decimal | None:
    return _money_value(name, fields.get(name), optional=optional)


def _money_value(name: str, value: Any, *, optional: bool = False, clamp: bool = False) -> Decimal | None:
    """An amount of USD from 0 to one call's worth (`MAX_COST_USD`, as for a span's reported
    cost). Beyond it, `clamp` makes it that bound (an estimate or an allowance: a call worth more
    is blocked by any limit all the same), else `_BeyondOneCall` is raised (a settlement: what a
    gateway reported is not believed, and the call's span is costed when it arrives, as
    collector/decode.py does). Not a number, negative or NaN: `BadCheckRequest`."""
    if value is None:
        return None if optional else Decimal(0)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise BadCheckRequest(f"{name}: must be a number of USD, got {type(value).__name__}")
    if isinstance(value, str) and len(value) > _MAX_NUMBER_TEXT:
        raise BadCheckRequest(f"{name}: must be a number of USD, got a {len(value)}-character string")
    try:
        # str() of a float is its shortest repr: 0.1 stays 0.1, not 0.1000000000000000055...
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise BadCheckRequest(f"{name}: must be a number of USD, got {value!r}") from None
    if amount.is_nan() or amount < 0:
        raise BadCheckRequest(f"{name}: must be an amount >= 0, got {value!r}")
    if amount > MAX_COST_USD:  # infinity too
        if clamp:
            return MAX_COST_USD
        raise _BeyondOneCall(f"{name}: over one call's worth ({MAX_COST_USD} USD), got {value!r}")
    return amount


def _drop_beyond_one_call(index: int, error: _BeyondOneCall) -> None:
    """A settlement whose amount is not believed is left out: its reservation stays until the
    call's span settles it or it expires. Refusing the check instead would refuse it again on
    every retry of a client that re-sends its queue."""
    global _dropped_logged
    if not _dropped_logged:
        _dropped_logged = True
        logger.warning("budget check: settle[%d] left out, %s (logged once)", index, error)


_dropped_logged = False


def build_request(
    fields: Mapping[str, Any], settle: Iterable[Mapping[str, Any]], release: Iterable[Any]
) -> CheckRequest:
    """A validated `CheckRequest` from decoded fields (JSON object or protobuf message values)."""
    settlements = []
    for index, entry in enumerate(settle):
        if index >= MAX_SETTLEMENTS:
            raise BadCheckRequest(f"settle: at most {MAX_SETTLEMENTS} entries per check")
        if not isinstance(entry, Mapping):
            raise BadCheckRequest(f"settle[{index}]: must be an object with span_id and actual_cost_usd")
        try:
            settlements.append(
                Settlement(
                    span_id=_text(entry, "span_id", required=True),
                    actual_cost_usd=_money(entry, "actual_cost_usd") or Decimal(0),
                    reservation_id=_text(entry, "reservation_id"),
                    reserved_usd=_money(entry, "reserved_usd", optional=True),
                )
            )
        except _BeyondOneCall as error:
            _drop_beyond_one_call(index, error)
        except BadCheckRequest as error:
            raise BadCheckRequest(f"settle[{index}].{error}") from None
    releases = []
    for index, item in enumerate(release):
        if not isinstance(item, str) or not item:
            raise BadCheckRequest(f"release[{index}]: must be a reservation id (string)")
        releases.append(_text_value(f"release[{index}]", item))
    step = fields.get("step") or 0
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise BadCheckRequest(f"step: must be an integer >= 0, got {step!r}")
    return _check_request(fields.get, settlements, tuple(releases), step)


def request_from_message(message: Any) -> CheckRequest:
    """A validated `CheckRequest` from a protobuf `CheckRequest`: the same checks and messages as
    `build_request`, read straight from the message (its fields are typed: no type checks, no
    intermediate dicts). This runs on every uncached check."""
    settlements = []
    for index, entry in enumerate(message.settle):
        if index >= MAX_SETTLEMENTS:
            raise BadCheckRequest(f"settle: at most {MAX_SETTLEMENTS} entries per check")
        try:
            settlements.append(
                Settlement(
                    span_id=_text_value("span_id", entry.span_id, required=True),
                    actual_cost_usd=_money_value("actual_cost_usd", entry.actual_cost_usd) or Decimal(0),
                    reservation_id=_text_value("reservation_id", entry.reservation_id),
                    reserved_usd=_money_value("reserved_usd", entry.reserved_usd)
                    if entry.HasField("reserved_usd")
                    else None,
                )
            )
        except _BeyondOneCall as error:
            _drop_beyond_one_call(index, error)
        except BadCheckRequest as error:
            raise BadCheckRequest(f"settle[{index}].{error}") from None
    releases = tuple(message.release)
    for index, item in enumerate(releases):
        if not item:
            raise BadCheckRequest(f"release[{index}]: must be a reservation id (string)")
    step = message.step
    if step < 0:
        raise BadCheckRequest(f"step: must be an integer >= 0, got {step!r}")
    return _check_request(partial(getattr, message), settlements, releases, step)


def _check_request(
    field: Callable[[str], Any], settlements: list[Settlement], releases: tuple[str, ...], step: int
) -> CheckRequest:
    """The scalar fields of a check, read through `field(name)` and validated the same way
    whichever transport the check came by, with its already validated lists and step."""
    span_id = _text_value("span_id", field("span_id"))
    estimate = _money_value("estimated_cost_usd", field("estimated_cost_usd"), clamp=True) or Decimal(0)
    # A request that only reports finished calls (a flush) needs no run.
    settling_only = not span_id and not estimate and (settlements or releases)
    return CheckRequest(
        run_id=_text_value("run_id", field("run_id"), required=not settling_only),
        tenant=_text_value("tenant", field("tenant")) or DEFAULT_TENANT,
        feature=_text_value("feature", field("feature")),
        agent=_text_value("agent", field("agent")),
        estimated_cost_usd=estimate,
        span_id=span_id,
        step=step,
        settle=tuple(settlements),
        release=releases,
        allowance_usd=_money_value("allowance_usd", field("allowance_usd"), clamp=True) or Decimal(0),
    )


def answer_fields(answer: CheckAnswer) -> dict[str, Any]:
    """The answer as JSON-ready values (money as float: this is the edge)."""

    def usd(value: Decimal | None) -> float | None:
        return None if value is None else float(value)

    return {
        "decision": answer.decision,
        "reason": answer.reason,
        "budget": answer.budget,
        "run_spent_usd": usd(answer.run_spent_usd),
        "run_remaining_usd": usd(answer.run_remaining_usd),
        "window": answer.window,
        "window_remaining_usd": usd(answer.window_remaining_usd),
        "reservation_id": answer.reservation_id,
        "allowance_usd": usd(answer.allowance_usd),
        "reservation_ttl_seconds": answer.reservation_ttl_seconds,
        "limit_usd": usd(answer.limit_usd),
        "committed_usd": usd(answer.committed_usd),
    }
