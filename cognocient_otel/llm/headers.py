"""The `X-Cost-Run-ID` / `X-Cost-Feature` headers: reading them, and step counters of runs
known only from them (teams that tag their calls by hand, with no `run()` in the code)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from cognocient_otel import semconv as sc

__all__ = ["HeaderRunSteps", "cost_headers"]

_HEADER_RUN_CAPACITY = 4096
_RUN_HEADER = sc.HEADER_RUN_ID_LOWER.encode()
_FEATURE_HEADER = sc.HEADER_FEATURE_LOWER.encode()
_PREFIX = b"x-cost-"


def cost_headers(headers: Any) -> tuple[str | None, str | None]:
    """`X-Cost-Run-ID` and `X-Cost-Feature` from the raw header list.

    Most requests carry neither: one case-folded search over the joined names says so, and
    only then are the headers walked one by one.
    """
    raw = headers.raw
    if _PREFIX not in b"\n".join([key for key, _ in raw]).lower():
        return None, None
    run_id = feature = None
    for key, value in raw:
        lowered = key.lower()
        if lowered == _RUN_HEADER:
            run_id = value.decode("latin-1")
        elif lowered == _FEATURE_HEADER:
            feature = value.decode("latin-1")
    return run_id or None, feature or None


class HeaderRunSteps:
    """Step counters of runs known only from `X-Cost-Run-ID` headers (no `run()` in the code)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: OrderedDict[str, int] = OrderedDict()

    def next(self, run_id: str) -> int:
        with self._lock:
            step = self._counters.pop(run_id, 0) + 1
            self._counters[run_id] = step
            if len(self._counters) > _HEADER_RUN_CAPACITY:
                self._counters.popitem(last=False)
            return step
