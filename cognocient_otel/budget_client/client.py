"""A client of the collector's `cognocient.budget.v1.BudgetService/Check` (gRPC).

One channel per client, opened lazily and shared by all threads. A check carries the calls this
process finished since its last check (`report()` queues them); if the check fails they stay
queued for the next one, so a settlement is never lost to a transient error (the collector
ignores a settlement it already counted).

Order of settlements and releases: the collector counts a settlement against the reservation it
names, and a settlement that arrives after its reservation was released is not counted (its span
is, when it reaches the collector, seconds later). Checks of several threads run concurrently and
the collector may apply them in any order, so a release is never sent while a check that carries a
settlement of the same reservation is still unanswered: it waits, queued, for that check's answer
(then the settlements were applied, or they are queued again and go in the same request as the
release, which the collector applies after them).

Failure policy when the collector cannot be reached within `timeout_seconds`:
`fail_open` (default) allows the call and logs once until the collector answers again;
`fail_closed` refuses it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

import grpc

from collector.budgets.proto import budget_pb2, budget_pb2_grpc

__all__ = ["BudgetClient", "BudgetDecision", "FailurePolicy", "PendingSettlement", "resolve_endpoint"]

logger = logging.getLogger(__name__)

FailurePolicy = Literal["fail_open", "fail_closed"]
DEFAULT_ENDPOINT = "127.0.0.1:4317"
# Finished calls waiting to be reported; past this the oldest are dropped (their spans still
# reach the collector and are counted then).
MAX_PENDING = 10_000
# Reconnect quickly after a collector restart: gRPC's default backoff grows to two minutes,
# during which every check would fail fast and apply the failure policy.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_DECISIONS = {
    budget_pb2.DECISION_ALLOW: "allow",
    budget_pb2.DECISION_WARN: "warn",
    budget_pb2.DECISION_BLOCK: "block",
}


_ZERO = Decimal(0)


def _usd(value: float) -> Decimal:
    return Decimal(repr(value)) if value else _ZERO


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """The collector's answer (or the failure policy's, with `reachable=False`).

    `allowance_usd` is headroom granted beyond the estimate, reserved under `reservation_id`, that
    this process may spend on later calls of the same run without asking.
    """

    decision: Literal["allow", "warn", "block"]
    reason: str
    budget: str = ""
    run_spent_usd: Decimal = Decimal(0)
    run_remaining_usd: Decimal | None = None
    window: str = ""
    window_remaining_usd: Decimal | None = None
    limit_usd: Decimal | None = None
    committed_usd: Decimal | None = None
    reservation_id: str = ""
    allowance_usd: Decimal = Decimal(0)
    reservation_ttl_seconds: float = 0.0
    reachable: bool = True

    @property
    def allowed(self) -> bool:
        return self.decision != "block"


@dataclass(frozen=True, slots=True)
class PendingSettlement:
    span_id: str
    actual_cost_usd: Decimal
    reservation_id: str
    reserved_usd: Decimal


def resolve_endpoint(endpoint: str | None = None) -> str:
    """`host:port` of the collector's gRPC port: `endpoint`, else OTEL_EXPORTER_OTLP_ENDPOINT
    (`http://host:4317` or `host:4317`), else 127.0.0.1:4317."""
    raw = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    if "://" in raw:
        parts = urlsplit(raw)
        if not parts.hostname:
            raise ValueError(f"budget endpoint {raw!r}: expected http://host:port or host:port")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"{host}:{parts.port or 4317}"
    return raw if ":" in raw else f"{raw}:4317"


class BudgetClient:
    def __init__(
        self,
        endpoint: str | None = None,
        *,
        timeout_seconds: float = 0.25,
        failure_policy: FailurePolicy = "fail_open",
        tenant: str = "",
        retry_after_seconds: float = 1.0,
    ) -> None:
        if failure_policy not in ("fail_open", "fail_closed"):
            raise ValueError(f"failure_policy: must be fail_open or fail_closed, got {failure_policy!r}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds: must be > 0, got {timeout_seconds!r}")
        self.endpoint = resolve_endpoint(endpoint)
        self.timeout_seconds = timeout_seconds
        self.failure_policy: FailurePolicy = failure_policy
        self.tenant = tenant
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: budget_pb2_grpc.BudgetServiceStub | None = None
        self._pending: list[PendingSettlement] = []
        self._releases: list[str] = []
        # Reservation id -> how many of its settlements are in checks sent and not yet answered:
        # its release must not overtake them (module docstring). `_answered` is notified when a
        # check is answered (or fails).
        self._settling: dict[str, int] = {}
        self._answered = threading.Condition(self._lock)
        self._flushes_waiting = 0  # threads in `flush` waiting on `_answered`
        self._unreachable_logged = False
        # After a failed check the policy applies without trying again for this long, so that a
        # collector that does not answer costs one timeout per interval, not one per LLM call.
        self.retry_after_seconds = retry_after_seconds
        self._retry_at = 0.0
        self._last_failure = ""

    # -- reports -----------------------------------------------------------------------------
    def report(self, settlement: PendingSettlement) -> None:
        """Queue a finished call; it is sent with the next check (any run) or `flush()`."""
        with self._lock:
            self._pending.append(settlement)
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]

    def release(self, reservation_id: str) -> None:
        """Queue an allowance this process no longer needs."""
        with self._lock:
            self._releases.append(reservation_id)

    def has_pending(self) -> bool:
        return bool(self._pending or self._releases)

    def flush(self) -> bool:
        """Send queued settlements and releases now; False if the collector could not be reached.

        A release held back by another thread's unanswered check (see the module docstring) is
        waited for, at most about one check's timeout; what another thread sends meanwhile is
        its to send.
        """
        with self._lock:
            deadline = time.monotonic() + self.timeout_seconds + 0.5
            while not self._pending and self._releases and not self._sendable_releases():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._flushes_waiting += 1
                try:
                    self._answered.wait(left)
                finally:
                    self._flushes_waiting -= 1
            if not self._pending and not self._releases:
                return True
        return self.check(run_id="").reachable

    def _sendable_releases(self) -> list[str]:
        """Queued releases no unanswered check carries a settlement of (call with the lock)."""
        return [reservation_id for reservation_id in self._releases if not self._settling.get(reservation_id)]

    # -- the check ---------------------------------------------------------------------------
    def check(
        self,
        *,
        run_id: str,
        feature: str = "",
        agent: str = "",
        tenant: str = "",
        estimated_cost_usd: Decimal = Decimal(0),
        span_id: str = "",
        step: int = 0,
        allowance_usd: Decimal = Decimal(0),
    ) -> BudgetDecision:
        # Every line here runs on the LLM call's path, right after the thread wakes from the
        # previous call (cold caches): measured in the bench, the client's Python costs several
        # times what it costs in a hot loop, so empty fields are not set, nothing is counted when
        # nothing is pending, and nobody is notified when nobody waits. The request is built
        # before anything is taken from the queues: arguments that cannot make one raise while
        # every queued settlement and release is still queued, none counted as in flight.
        request = budget_pb2.CheckRequest(
            run_id=run_id, tenant=tenant or self.tenant, feature=feature, agent=agent, span_id=span_id
        )
        if estimated_cost_usd:
            request.estimated_cost_usd = float(estimated_cost_usd)
        if step:
            request.step = step
        if allowance_usd:
            request.allowance_usd = float(allowance_usd)
        with self._lock:
            if self._retry_at and time.monotonic() < self._retry_at:
                return self._policy_answer(self._last_failure)  # what is queued stays queued
            pending = self._pending
            releases = self._sendable_releases() if self._releases else []
            if pending:
                self._pending = []
                settling = self._settling
                for item in pending:
                    settling[item.reservation_id] = settling.get(item.reservation_id, 0) + 1
            if releases:
                held = set(releases)
                self._releases = [item for item in self._releases if item not in held]
            elif not run_id and not pending:
                # A flush that found nothing to send (another thread's check took it, or a
                # release still waits for the answer to one): nothing to ask.
                return BudgetDecision(decision="allow", reason="nothing to report")
        if releases:
            request.release.extend(releases)
        if not pending:
            return self._send(request, pending, releases)
        try:
            settle = request.settle
            for item in pending:
                settle.add(
                    span_id=item.span_id,
                    actual_cost_usd=float(item.actual_cost_usd),
                    reservation_id=item.reservation_id,
                    reserved_usd=float(item.reserved_usd),
                )
            return self._send(request, pending, releases)
        finally:
            with self._lock:
                settling = self._settling
                for item in pending:
                    count = settling.pop(item.reservation_id) - 1
                    if count:
                        settling[item.reservation_id] = count
                if self._flushes_waiting:
                    self._answered.notify_all()

    def _send(
        self,
        request: budget_pb2.CheckRequest,
        pending: Sequence[PendingSettlement],
        releases: Sequence[str],
    ) -> BudgetDecision:
        try:
            response = self._stub_or_connect().Check(request, timeout=self.timeout_seconds)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                # Our own request was refused: a bug or bad arguments, not an outage. What it
                # carried is not sent again: it would be refused with every later check.
                raise ValueError(f"budget check refused by the collector: {error.details()}") from None
            self._requeue(pending, releases)  # sent again with the next check
            return self._unreachable(error, code)
        self._retry_at = 0.0
        if self._unreachable_logged:
            logger.warning("budget collector at %s answers again", self.endpoint)
            self._unreachable_logged = False
        has = response.HasField
        return BudgetDecision(
            decision=_DECISIONS.get(response.decision, "allow"),
            reason=response.reason,
            budget=response.budget,
            run_spent_usd=_usd(response.run_spent_usd),
            run_remaining_usd=_usd(response.run_remaining_usd) if has("run_remaining_usd") else None,
            window=response.window,
            window_remaining_usd=_usd(response.window_remaining_usd) if has("window_remaining_usd") else None,
            limit_usd=_usd(response.limit_usd) if has("limit_usd") else None,
            committed_usd=_usd(response.committed_usd) if has("committed_usd") else None,
            reservation_id=response.reservation_id,
            allowance_usd=_usd(response.allowance_usd),
            reservation_ttl_seconds=response.reservation_ttl_seconds,
        )

    def _requeue(self, pending: Sequence[PendingSettlement], releases: Sequence[str]) -> None:
        with self._lock:
            self._pending[:0] = pending
            self._releases[:0] = releases
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]

    def _unreachable(self, error: grpc.RpcError, code: grpc.StatusCode | None) -> BudgetDecision:
        detail = (
            f"{code.name if code else 'error'}: {error.details() if isinstance(error, grpc.Call) else error}"
        )
        self._retry_at = time.monotonic() + self.retry_after_seconds
        self._last_failure = detail
        if not self._unreachable_logged:
            self._unreachable_logged = True
            logger.warning(
                "budget collector at %s unreachable (%s); applying %s until it answers",
                self.endpoint,
                detail,
                self.failure_policy,
            )
        return self._policy_answer(detail)

    def _policy_answer(self, detail: str) -> BudgetDecision:
        return BudgetDecision(
            decision="allow" if self.failure_policy == "fail_open" else "block",
            reachable=False,
            reason=f"budget collector at {self.endpoint} unreachable ({detail}); {self.failure_policy}",
        )

    def _stub_or_connect(self) -> budget_pb2_grpc.BudgetServiceStub:
        stub = self._stub
        if stub is None:
            with self._lock:
                if self._stub is None:
                    self._channel = grpc.insecure_channel(self.endpoint, options=_CHANNEL_OPTIONS)
                    self._stub = budget_pb2_grpc.BudgetServiceStub(self._channel)
                stub = self._stub
        return stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None
