"""Calendar windows in UTC, and the clock that tells which one we are in.

Daily and monthly limits apply to the calendar day and month in UTC, as a finance team reads
an invoice. The clock is injectable (any callable returning an aware datetime) so that tests
cross a month boundary instantly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Literal

__all__ = ["Clock", "ManualClock", "Window", "period_of", "system_clock", "window_end"]

Window = Literal["daily", "monthly"]
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


class ManualClock:
    """A clock that only moves when told: `clock.set(datetime(...))`, `clock.advance(seconds=5)`."""

    def __init__(self, start: datetime) -> None:
        self._now = _as_utc(start)

    def __call__(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = _as_utc(moment)

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the budget clock needs an aware datetime (tzinfo=timezone.utc)")
    return moment.astimezone(timezone.utc)


def period_of(window: Window, moment: datetime) -> str:
    """The window's id at `moment`: `2026-11-29` for daily, `2026-11` for monthly."""
    moment = _as_utc(moment)
    return moment.strftime("%Y-%m-%d") if window == "daily" else moment.strftime("%Y-%m")


def window_end(window: Window, moment: datetime) -> datetime:
    """When the window containing `moment` rolls over (the next UTC midnight or month start)."""
    moment = _as_utc(moment)
    day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "daily":
        return day_start + timedelta(days=1)
    month_start = day_start.replace(day=1)
    return (
        month_start.replace(year=month_start.year + 1, month=1)
        if month_start.month == 12
        else (month_start.replace(month=month_start.month + 1))
    )
