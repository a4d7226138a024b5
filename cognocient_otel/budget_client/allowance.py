"""Allowances: headroom the collector reserved for a run, spent down locally without asking.

When the collector allows a call it may grant more than the call's estimate (never more than
what every limit still has room for) and hold it under the call's reservation. Later calls of the
same run take their estimate out of it locally, in a few microseconds, until it runs out or
expires; then the next call asks the collector again. This process can never spend more than
the collector granted: a call is taken from the allowance only if its whole estimate fits, and a
call that cost more than its estimate is charged the difference when it finishes.

Expiry: the collector drops an unsettled reservation after its TTL, so the allowance is used for
half of that, measured on this process's monotonic clock.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

__all__ = ["Allowance"]

_ZERO = Decimal(0)


class Allowance:
    __slots__ = ("_lock", "closed", "deadline", "in_flight", "last_used", "remaining", "reservation_id")

    def __init__(self, reservation_id: str, amount: Decimal, ttl_seconds: float) -> None:
        self.reservation_id = reservation_id
        self.remaining = amount
        self.deadline = time.monotonic() + ttl_seconds / 2
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.closed = False
        self._lock = threading.Lock()

    def take(self, estimate: Decimal) -> bool:
        """Take `estimate` if it fits and the allowance is still good."""
        with self._lock:
            if self.closed or estimate > self.remaining or time.monotonic() >= self.deadline:
                return False
            self.remaining -= estimate
            self.in_flight += 1
            self.last_used = time.monotonic()
            return True

    def idle_for(self, seconds: float) -> bool:
        """Nothing in flight and nothing taken for `seconds`: the run has probably ended."""
        with self._lock:
            return self.in_flight == 0 and time.monotonic() - self.last_used >= seconds

    def call_done(self, overrun: Decimal = _ZERO) -> bool:
        """A call taken from this allowance (or the call that made it) finished; `overrun` is
        what it cost beyond its estimate. True when the allowance is closed and nothing is in
        flight any more: time to release it.

        An overrun is charged to what is left: the collector counts the actual cost but releases
        only the estimate from the reservation, so without this the process could go past the
        grant by the sum of its calls' overruns. A saving (negative overrun) is not credited:
        the collector released that part to others already.
        """
        with self._lock:
            if overrun > 0:
                self.remaining -= overrun
            self.in_flight -= 1
            return self.closed and self.in_flight == 0

    def close(self) -> bool:
        """No more takes. True if nothing is in flight (release now), else the last call releases."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            return self.in_flight == 0
