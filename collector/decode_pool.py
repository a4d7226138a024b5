"""Decoding large OTLP requests in worker processes, so that ingest uses more than one core.

Decoding (protobuf parse plus the attribute reads of `collector/decode.py`) is about two thirds
of the collector's Python work per span, and the writer (dedup, rollup, commit) the rest. In one
process both share one GIL, so the collector is bound to one core whatever the machine has. A
`DecodePool` runs the decode of large protobuf requests in worker processes (a
`concurrent.futures.ProcessPoolExecutor`, started from a clean forkserver process: grpcio's
threads make `fork` of the collector itself unsafe); the collector process then only unpacks the
records and runs the pipeline.

What travels back is a marshalled tuple per span (the `SpanRecord` fields), not the protobuf: a
record that a stage asks for all its attributes (`SpanRecord.attributes()`) re-parses its
request's body in the collector process, once per request, on demand (`LazyScope`).

Small requests (below `min_body_bytes`) and OTLP/JSON are decoded on the receiver thread: for
them the round trip to a worker costs more than it saves. So does every request while the pool
is starting or after a worker died: a `BrokenProcessPool` is logged, that request is decoded on
the receiver thread and a new pool is started. Nothing is lost or refused because of the pool.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import multiprocessing
import os
import select
import signal
import threading
import time
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import fields
from decimal import Decimal
from operator import attrgetter
from typing import Any

from collector.decode import MalformedRequest, decode_request, parse_protobuf
from collector.model import SpanBatch, SpanRecord

logger = logging.getLogger(__name__)

MIN_BODY_BYTES = 64 * 1024  # about 80 LLM spans: below it, the worker round trip does not pay
# A worker that takes longer than this (a 16 MiB request decodes in about a second) is not waited
# for: the receiver thread decodes the request itself.
WORKER_TIMEOUT_SECONDS = 30.0

_FIELDS = tuple(f.name for f in fields(SpanRecord))
_row = attrgetter(*_FIELDS)
_COST, _RAW = _FIELDS.index("cost_usd"), _FIELDS.index("raw")
_LABEL_POSITIONS = tuple(_FIELDS.index(name) for name in (
    "tenant", "run_id", "name", "operation", "provider", "request_model", "response_model", "feature",
    "agent", "cost_source", "server_address", "budget_decision",
))


AUTO_MAX_WORKERS = 2
# A worker that waits for the others to start gives up after this: the pool is used anyway.
START_TIMEOUT_SECONDS = 30.0


def workers_for(setting: int | str, cpu_count: int | None = None) -> int:
    """`auto`: one worker per usable core, at most 2, none on a single core; else the number given.

    One per core rather than per spare core: while a worker decodes, the collector process is
    often waiting on its GIL or on SQLite, and on 2 cores 2 workers measured faster than one
    (docs/collector.md "Decode worker processes"). At most 2: decoding is about two thirds of a
    span's work and the single writer the rest, so two decoding cores keep the writer busy; more
    would add memory (a worker grows while it decodes) for little throughput (not measured: this
    was built on 2 cores)."""
    if setting != "auto":
        return int(setting)
    cores = cpu_count if cpu_count is not None else usable_cores()
    return 0 if cores < 2 else min(AUTO_MAX_WORKERS, cores)


def usable_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota.

    `os.cpu_count()` is the host's count, which in a container limited to one CPU of a large
    host would start workers that only compete with the collector for that CPU."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open(cpu_max) as limits:
            quota, period = limits.read().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, -(-int(quota) // int(period))))


def _start_worker(collector_pid: int, all_started: Any) -> None:
    """Worker initializer: the collector alone decides when a worker ends.

    Ctrl-C sends SIGINT to the whole foreground process group, and a service manager may send
    SIGTERM to all of the collector's processes; the forkserver hands its workers Python's
    default handlers back, so they would die mid-task with a traceback each, and the pool would
    be restarted during the drain. The collector drains, then shuts its pool down; a worker
    ignores both signals and leaves with the pool or with the collector process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    global _all_started
    _all_started = all_started
    _exit_with_collector(collector_pid)


_all_started: Any = None  # the pool's start barrier, in a worker process


def _worker_pid() -> int:
    """The warm-up task: each worker takes one, since it holds the task until all have one."""
    with contextlib.suppress(threading.BrokenBarrierError):  # one did not come up: the others report
        _all_started.wait(START_TIMEOUT_SECONDS)
    return os.getpid()


def _exit_with_collector(collector_pid: int, poll_seconds: float = 0.5) -> None:
    """Leave as soon as the collector process has ended.

    Nothing else would tell a worker: it blocks reading its task queue, whose write end it holds
    itself, and the forkserver it was forked from lives as long as its workers do (they hold the
    forkserver's "alive" pipe). kill -9 of the collector runs no cleanup, so the worker watches
    the collector's pid: a pidfd (readable once the process has exited, zombie or not) where the
    kernel has them, a poll of the pid otherwise.
    """

    def watch() -> None:
        try:
            pidfd = os.pidfd_open(collector_pid)
        except (AttributeError, OSError):
            while _alive(collector_pid):
                time.sleep(poll_seconds)
        else:
            select.select([pidfd], [], [])
        os._exit(0)

    threading.Thread(target=watch, name="cognocient-decode-worker-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def decode_in_worker(body: bytes, transport: str) -> bytes:
    """Runs in a worker process: parse and decode, ship the records as marshalled tuples.

    A row is a record's fields in order, with the number of its scope in the request where
    `raw` goes (for `LazyScope`). Labels repeated across a request's spans (tenant, run id,
    model, feature...) are made one object each, so the row data carries each once and the
    collector process creates each once. The cost goes as a string (marshal knows no Decimal).
    `MalformedRequest` propagates to the caller like any exception of a pool task.
    """
    batch = decode_request(parse_protobuf(body), transport=transport)
    scopes: dict[int, int] = {}  # id of a scope's raw tuple -> its number in the request
    labels: dict[str, str] = {}
    canonical = labels.setdefault
    rows = []
    for record in batch.records:
        row = list(_row(record))
        for position in _LABEL_POSITIONS:
            value = row[position]
            if value is not None:
                row[position] = canonical(value, value)
        if row[_COST] is not None:
            row[_COST] = str(row[_COST])
        row[_RAW] = scopes.setdefault(id(record.raw), len(scopes))
        rows.append(tuple(row))
    return marshal.dumps((rows, len(scopes), batch.received, batch.rejected, batch.reject_messages))


class LazyRequest:
    """A request body whose protobuf is parsed again only if a stage asks for raw attributes."""

    __slots__ = ("_body", "_lock", "_scopes")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._scopes: list[tuple[Any, Any]] | None = None
        self._lock = threading.Lock()

    def scope(self, number: int) -> tuple[Any, Any]:
        """(resource attributes, spans) of the request's `number`-th scope, in decode order."""
        with self._lock:
            if self._scopes is None:
                request = parse_protobuf(self._body)
                self._scopes = [
                    (resource_spans.resource.attributes, scope_spans.spans)
                    for resource_spans in request.resource_spans
                    for scope_spans in resource_spans.scope_spans
                ]
            return self._scopes[number]


class LazyScope:
    """`SpanRecord.raw` of a record decoded in a worker: resolves to (resource attributes, spans)."""

    __slots__ = ("number", "request")

    def __init__(self, request: LazyRequest, number: int) -> None:
        self.request = request
        self.number = number

    def resolve(self) -> tuple[Any, Any]:
        return self.request.scope(self.number)


def unpack(payload: bytes, body: bytes, transport: str) -> SpanBatch:
    """The `SpanBatch` a worker's `decode_in_worker` answer stands for."""
    rows, scope_count, received, rejected, messages = marshal.loads(payload)
    request = LazyRequest(body)
    scopes = [LazyScope(request, number) for number in range(scope_count)]
    records = []
    append = records.append
    for row in rows:
        record = SpanRecord(*row)
        record.raw = scopes[record.raw]
        if record.cost_usd is not None:
            record.cost_usd = Decimal(record.cost_usd)
        append(record)
    batch = SpanBatch(records, transport=transport, received=received, rejected=rejected)
    batch.reject_messages = messages
    return batch


class DecodePool:
    """Decodes export requests: large protobuf bodies in worker processes, the rest in-thread."""

    def __init__(self, workers: int, *, min_body_bytes: int = MIN_BODY_BYTES) -> None:
        self.workers = workers
        self.min_body_bytes = min_body_bytes
        self._executor: ProcessPoolExecutor | None = None
        # The current executor's start barrier (`_worker_pid`): aborted when the pool closes or is
        # replaced, so that a worker waiting for others that will never start does not hold the
        # shutdown up for START_TIMEOUT_SECONDS.
        self._all_started: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._pids: set[int] = set()  # filled once a first task per worker came back: the workers are up
        self.worker_requests = 0  # requests decoded by a worker so far

    def start(self) -> DecodePool:
        """Start the workers in the background; requests decode in-thread until they are up."""
        if self.workers > 0:
            self._start_executor()
        return self

    def _start_executor(self) -> None:
        context = multiprocessing.get_context("forkserver")
        # The forkserver imports the decoder once; each worker forked from it starts warm.
        context.set_forkserver_preload(["collector.decode_pool"])
        all_started = context.Barrier(self.workers)
        with self._lock:
            if self._closed:
                return
            executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context,
                initializer=_start_worker, initargs=(os.getpid(), all_started),
            )
            self._executor, self._all_started = executor, all_started
        threading.Thread(
            target=self._warm_up, args=(executor,), name="cognocient-decode-pool-start", daemon=True
        ).start()

    def _warm_up(self, executor: ProcessPoolExecutor) -> None:
        """Start every worker (a task each), then let requests through to them.

        Each submit starts a process while none is idle, but a fast worker could take two of
        these tasks: `_worker_pid` holds its task until every worker has one, so the pids
        returned are all of them."""
        try:
            tasks = [executor.submit(_worker_pid) for _ in range(self.workers)]
            pids = {task.result() for task in tasks}
        except Exception as error:  # e.g. no forkserver socket can be made here: decode in-thread
            logger.warning("decode worker processes did not start: %s", error,
                           extra={"event": "decode_pool.failed"})
            return
        with self._lock:
            if self._executor is not executor:
                return
            self._pids = pids
        logger.info("decode workers ready", extra={"event": "decode_pool.ready", "workers": len(pids)})

    def worker_pids(self) -> set[int]:
        """The worker processes' pids once they are up (tests, the benchmark's CPU accounting)."""
        with self._lock:
            return set(self._pids)

    def decode(self, body: bytes, transport: str) -> SpanBatch:
        """Parse and decode a protobuf body; raises `MalformedRequest` like `parse_protobuf`."""
        executor = self._executor
        if self._pids and executor is not None and len(body) >= self.min_body_bytes:
            try:
                payload = executor.submit(decode_in_worker, body, transport).result(WORKER_TIMEOUT_SECONDS)
            except MalformedRequest:
                raise
            except BrokenExecutor:
                self._replace_broken(executor)
            except Exception:  # shutting down, timed out, or failed in the worker: the thread decodes it
                logger.warning("a decode worker failed a request; decoding it on the receiver thread",
                               exc_info=True, extra={"event": "decode_pool.fallback"})
            else:
                with self._lock:
                    self.worker_requests += 1
                return unpack(payload, body, transport)
        return decode_request(parse_protobuf(body), transport=transport)

    def _replace_broken(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken or self._closed:
                return
            self._executor = None
            self._pids = set()
            all_started, self._all_started = self._all_started, None
        if all_started is not None:
            all_started.abort()
        logger.warning(
            "a decode worker process died; decoding on the receiver threads until a new one is up",
            extra={"event": "decode_pool.restart"},
        )
        broken.shutdown(wait=False, cancel_futures=True)
        self._start_executor()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            all_started, self._all_started = self._all_started, None
            self._pids = set()
        if all_started is not None:
            all_started.abort()  # a worker still waiting for the others returns at once
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
