"""A waste flag: what a detector found, at which step, and what it cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = ["CONTEXT_BLOAT", "KINDS", "LOOP", "RETRY_STORM", "WasteFlag", "WasteKind"]

WasteKind = Literal["context_bloat", "loop", "retry_storm"]
CONTEXT_BLOAT: WasteKind = "context_bloat"
LOOP: WasteKind = "loop"
RETRY_STORM: WasteKind = "retry_storm"
KINDS: tuple[WasteKind, ...] = (CONTEXT_BLOAT, LOOP, RETRY_STORM)


@dataclass(frozen=True, slots=True)
class WasteFlag:
    """Raised once per run and kind.

    `step` is the step at which the condition first held (see `collector/waste/timeline.py` for
    what a step is when spans lack `cognocient.step`). `wasted_usd` is None where the waste cannot
    be priced (tool repeats, models without a price). `start_ns` orders flags found in one pass and
    is the start time of the call at which the condition held. `details` are JSON-able numbers for
    tests and logs; the message says the same for people.
    """

    kind: WasteKind
    step: int
    message: str
    wasted_usd: Decimal | None = None
    start_ns: int = 0
    details: dict[str, Any] = field(default_factory=dict)
