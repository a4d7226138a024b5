"""In-process counters and histograms the `/metrics` collector turns into families at scrape time.

Not prometheus-client metric objects on purpose: the exposition is built by a custom collector
from these plain values (and from the rollup state), the way client_python's `gc_collector` does,
so nothing registers itself in a global registry. Each value is guarded by its own lock because
receivers update from many threads.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator


class CounterVec:
    """Monotonic sums keyed by a tuple of label values."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        self.created = time.time()

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def inc_many(self, deltas: dict[tuple[str, ...], float]) -> None:
        with self._lock:
            values = self._values
            for labels, amount in deltas.items():
                values[labels] = values.get(labels, 0.0) + amount

    def items(self) -> list[tuple[tuple[str, ...], float]]:
        with self._lock:
            return list(self._values.items())

    def get(self, labels: tuple[str, ...]) -> float:
        return self._values.get(labels, 0.0)


class Histogram:
    """Cumulative-on-read bucket counts with a sum."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> Iterator[tuple[str, int]]:
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            yield ("+Inf" if bound == float("inf") else _bound_text(bound)), running


def _bound_text(bound: float) -> str:
    return repr(float(bound))


class HistogramVec:
    """Histograms keyed by a tuple of label values."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = tuple(float(b) for b in buckets)
        self._histograms: dict[tuple[str, ...], Histogram] = {}
        self._lock = threading.Lock()
        self.created = time.time()

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            histogram = self._histograms.get(labels)
            if histogram is None:
                histogram = self._histograms[labels] = Histogram(self.buckets)
            histogram.observe(value)

    def snapshot(self) -> list[tuple[tuple[str, ...], list[tuple[str, int]], float]]:
        with self._lock:
            return [(labels, list(h.cumulative()), h.sum) for labels, h in self._histograms.items()]
