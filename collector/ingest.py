"""The single writer: a bounded queue of export batches and jobs, committed in groups.

Receivers decode a request into a `SpanBatch` on their own thread and `submit` it; one writer
thread takes every batch waiting (up to `max_group_requests`), runs each through the pipeline in
one transaction, commits once, then releases every request of the group (group commit: the fsync
and the transaction overhead are paid once for many requests). A request is answered only after
the commit that made its effect durable. When the queue is full, `submit` raises `Overloaded` at
once, and the receiver answers RESOURCE_EXHAUSTED / 429 so the exporter backs off.

If a group fails (a bug in a stage, a disk error), it is rolled back and each item is retried in
a transaction of its own, so one bad batch fails only its own request.

Housekeeping runs on the same thread between groups, as ordinary transactions: runs idle for the
idle timeout become `expired`, ended runs leave memory after `keep_ended_seconds`, and rows older
than the retention are deleted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from collector.model import SpanBatch
from collector.pipeline import Stage
from collector.rollup import ACTIVE, ENDED_STATUSES, EXPIRED, RunState
from collector.stats import CollectorStats
from collector.store import Store, UnitOfWork

logger = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The ingest queue is full; retry after `retry_after_seconds`."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"ingest queue full, retry in {retry_after_seconds}s")
        self.retry_after_seconds = retry_after_seconds


class ShuttingDown(RuntimeError):
    """The collector stopped accepting work."""


class _Item:
    __slots__ = ("batch", "done", "error", "job", "result")

    def __init__(
        self, batch: SpanBatch | None = None, job: Callable[[UnitOfWork], Any] | None = None
    ) -> None:
        self.batch = batch
        self.job = job
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.result: Any = None

    def wait(self, timeout: float) -> Any:
        if not self.done.wait(timeout):
            raise TimeoutError("the store did not commit in time")
        if self.error is not None:
            raise self.error
        return self.result


class Ingest:
    def __init__(
        self,
        *,
        store: Store,
        state: RunState,
        head: Stage,
        stats: CollectorStats,
        queue_size: int,
        max_group: int,
        retry_after_seconds: int,
        idle_timeout_seconds: float,
        keep_ended_seconds: float,
        retention_seconds: float,
        dedup_retention_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.state, self.head, self.stats = store, state, head, stats
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._max_group = max_group
        self._retry_after = retry_after_seconds
        self._idle_timeout = idle_timeout_seconds
        self._keep_ended = keep_ended_seconds
        self._retention = retention_seconds
        self._dedup_retention = dedup_retention_seconds
        self._clock = clock
        self._accepting = False
        self._thread = threading.Thread(target=self._run, name="cognocient-ingest-writer", daemon=True)
        self._sweep_every = max(0.05, min(5.0, idle_timeout_seconds / 4))
        self._next_sweep = 0.0
        self._next_retention = 0.0

    # -- producers ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._accepting = True
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, batch: SpanBatch) -> _Item:
        """Queue `batch`; `.wait(timeout)` on the result returns once it is committed."""
        return self._put(_Item(batch=batch))

    def run_job(self, job: Callable[[UnitOfWork], Any], *, timeout: float = 30.0) -> Any:
        """Run `job(uow)` on the writer thread in a transaction of its own; return its result."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("run_job called from the writer thread: use batch.uow instead")
        item = _Item(job=job)
        if not self._accepting:
            raise ShuttingDown("the collector is stopping")
        self._queue.put(item, timeout=timeout)  # jobs wait for room rather than fail
        return item.wait(timeout)

    def _put(self, item: _Item) -> _Item:
        if not self._accepting:
            raise ShuttingDown("the collector is stopping")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            raise Overloaded(self._retry_after) from None
        return item

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish everything queued, then return (the store stays open)."""
        self._accepting = False
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # -- the writer thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._sweep_every)
            except queue.Empty:
                item = _IDLE
            stopping = item is None
            group = [] if item is None or item is _IDLE else [item]
            while len(group) < self._max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    continue
                group.append(more)
            if group:
                self._process(group)
            now = self._clock()
            if now >= self._next_sweep or stopping:
                self._housekeeping(now)
            if stopping and self._queue.empty():
                return

    def _process(self, group: list[_Item]) -> None:
        uow = UnitOfWork(self.store, self.state, now=self._clock())
        try:
            uow.begin()
            for item in group:
                self._apply(item, uow)
            started = time.perf_counter()
            uow.commit()
            self.stats.store_commit.observe((), time.perf_counter() - started)
        except BaseException as error:
            uow.rollback()
            if len(group) > 1:
                for item in group:
                    self._process([item])
                return
            logger.exception("ingest transaction failed", extra={"event": "ingest.failed"})
            group[0].error = error
            group[0].done.set()
            return
        self.stats.observe_ended(uow.ended_runs)
        for item in group:
            item.done.set()

    def _apply(self, item: _Item, uow: UnitOfWork) -> None:
        if item.job is not None:
            item.result = item.job(uow)
            return
        batch = item.batch
        assert batch is not None
        batch.uow = uow
        self.head.consume(batch)

    def _housekeeping(self, now: float) -> None:
        self._next_sweep = now + self._sweep_every
        idle_before = now - self._idle_timeout
        keep_before = now - self._keep_ended
        expiring, evicting = [], []
        for run in self.state.snapshot():
            if run.status == ACTIVE and run.last_seen < idle_before:
                expiring.append(run.key)
            elif run.status in ENDED_STATUSES and (run.ended_at or run.last_seen) < keep_before:
                evicting.append(run.key)
        if expiring:
            def expire(uow: UnitOfWork) -> None:
                for key in expiring:
                    run = uow.run(key)
                    if run is not None and run.status == ACTIVE:
                        uow.end_run(run, EXPIRED)

            self._process([_Item(job=expire)])
        if evicting:
            self.state.evict(evicting)
        if now >= self._next_retention:
            self._next_retention = now + 3600
            self._delete_old(now)

    def _delete_old(self, now: float) -> None:
        runs_before = now - self._retention
        seen_before = int((now - self._dedup_retention) * 1e9).to_bytes(8, "big")

        def delete(uow: UnitOfWork) -> None:
            uow.execute("DELETE FROM runs WHERE last_seen < ? AND status != ?", (runs_before, ACTIVE))
            # Keys start with the span's start time: old marks are one range of the index.
            uow.execute("DELETE FROM spans_seen WHERE k < ?", (seen_before,))

        self._process([_Item(job=delete)])


_IDLE = _Item()
