"""`Collector`: everything assembled from the configuration, startable in-process and stoppable.

    collector = Collector(load_config("collector.yaml"))
    collector.start()                 # binds, loads the store, logs the "collector.ready" line
    collector.grpc_port, collector.http_port, collector.metrics_port
    collector.stop()                  # drains: stop accepting, commit what was accepted, close

Pipeline: receivers decode -> dedup -> cost -> rollup -> [plugin stages by order] -> commit.
Extension points for other parts (before `start()`): `add_stage`, `add_grpc_servicer`,
`add_route`, `add_metrics_collector`, `registry` (see `collector/plugins.py`); after start,
`run_job(fn)` runs `fn(uow)` in a store transaction on the writer thread (e.g. marking a run
blocked from a budget check) and returns once it is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector as PrometheusCollector

from cognocient_otel.pricing import PriceBook
from collector import __version__
from collector.config import CollectorConfig, split_endpoint
from collector.decode_pool import DecodePool, workers_for
from collector.grpc_server import GrpcServer, ServicerRegistration
from collector.http_server import HttpServer, RouteHandler
from collector.ingest import Ingest
from collector.metrics import CollectorMetrics
from collector.pipeline import Stage, StageFactory
from collector.plugins import Plugin, installed_plugins
from collector.receiver import TraceReceiver
from collector.rollup import RunState
from collector.runs_api import RunsApi
from collector.stages import CommitStage, CostStage, DedupStage, RollupStage
from collector.stats import CollectorStats
from collector.store import Store, UnitOfWork

logger = logging.getLogger("collector")

# Dedup marks outlive any exporter retry (the OTel SDKs give up within minutes) by far; two days
# also cover replays from a collector's persistent queue after an outage.
DEDUP_RETENTION_SECONDS = 2 * 86_400


T = TypeVar("T")


def _listening(purpose: str, endpoint: str, bind: Callable[[], T]) -> T:
    """`bind()`, with a bind failure told as the endpoint and what it was for (the OS error alone,
    "Address already in use", does not say which of the collector's ports is taken)."""
    try:
        return bind()
    except OSError as error:
        raise OSError(
            error.errno,
            f"cannot listen on {endpoint} for {purpose}: {error.strerror or error} "
            "(another process holds the port? set another one, or port 0 for any free port)",
        ) from error


class Collector:
    def __init__(
        self,
        config: CollectorConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        plugins: list[Plugin] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or CollectorConfig()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        self.stats = CollectorStats()
        self.state = RunState()
        self.price_book = PriceBook(override.to_override() for override in self.config.pricing.overrides)
        self._stage_factories: list[tuple[int, int, StageFactory]] = []
        self._servicers: list[ServicerRegistration] = []
        self._routes: list[tuple[str, str, RouteHandler]] = []
        self._metrics_collectors: list[PrometheusCollector] = []
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.decode_pool: DecodePool | None = None
        self.head: Stage | None = None
        self._grpc: GrpcServer | None = None
        self._http: HttpServer | None = None
        self._metrics_server: Any = None
        self._ready = False
        self._stopped = threading.Event()
        self.grpc_port = self.http_port = self.metrics_port = 0
        for plugin in installed_plugins() if plugins is None else plugins:
            plugin(self)

    # -- extension points (before start) -------------------------------------------------------

    def add_stage(self, factory: StageFactory, *, order: int = 100) -> None:
        self._stage_factories.append((order, len(self._stage_factories), factory))

    def add_grpc_servicer(self, register: ServicerRegistration) -> None:
        self._servicers.append(register)

    def add_route(self, method: str, pattern: str, handler: RouteHandler) -> None:
        self._routes.append((method, pattern, handler))

    def add_metrics_collector(self, collector: PrometheusCollector) -> None:
        self._metrics_collectors.append(collector)

    def run_job(self, job: Callable[[UnitOfWork], Any], *, timeout: float = 30.0) -> Any:
        if self.ingest is None:
            raise RuntimeError("the collector is not started")
        return self.ingest.run_job(job, timeout=timeout)

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self) -> Collector:
        started = time.perf_counter()
        config = self.config
        try:
            self._start_parts(config)
        except BaseException:
            self.stop(grace=0)
            raise
        self._ready = True
        logger.info(
            "collector ready",
            extra={
                "event": "collector.ready",
                "version": __version__,
                "grpc_port": self.grpc_port,
                "http_port": self.http_port,
                "metrics_port": self.metrics_port,
                "grpc_endpoint": f"{split_endpoint(config.receivers.otlp.grpc.endpoint)[0]}:{self.grpc_port}",
                "http_endpoint": f"{split_endpoint(config.receivers.otlp.http.endpoint)[0]}:{self.http_port}",
                "metrics_endpoint": f"{split_endpoint(config.prometheus.endpoint)[0]}:{self.metrics_port}",
                "store": config.store.path,
                "runs_loaded": len(self.state),
                "startup_seconds": round(time.perf_counter() - started, 3),
            },
        )
        return self

    def _start_parts(self, config: CollectorConfig) -> None:
        self.store = store = Store(config.store.path, synchronous=config.store.synchronous)
        now = self.clock()
        recent = store.load_runs(since=now - config.runs.keep_ended_seconds)
        self.state.publish({run.key: run for run in recent})
        self.head = self._build_pipeline(store)
        self.ingest = Ingest(
            store=store, state=self.state, head=self.head, stats=self.stats,
            queue_size=config.ingest.queue_size, max_group=config.ingest.max_group_requests,
            retry_after_seconds=config.ingest.retry_after_seconds,
            idle_timeout_seconds=config.runs.idle_timeout_seconds,
            keep_ended_seconds=config.runs.keep_ended_seconds,
            retention_seconds=config.runs.retention_days * 86_400,
            dedup_retention_seconds=DEDUP_RETENTION_SECONDS, clock=self.clock,
        )
        self.ingest.start()
        self.decode_pool = DecodePool(workers_for(config.receivers.otlp.decode_workers)).start()
        receiver = TraceReceiver(
            ingest=self.ingest, stats=self.stats, ack_timeout_seconds=config.ingest.ack_timeout_seconds,
            decoder=self.decode_pool,
        )
        grpc_config, http_config = config.receivers.otlp.grpc, config.receivers.otlp.http
        self._grpc = GrpcServer(
            receiver=receiver, endpoint=grpc_config.endpoint,
            max_recv_msg_size_mib=grpc_config.max_recv_msg_size_mib, max_workers=grpc_config.max_workers,
            extra_servicers=self._servicers,
        )
        self._http = _listening("OTLP/HTTP", http_config.endpoint, lambda: HttpServer(
            receiver=receiver, endpoint=http_config.endpoint,
            max_body_bytes=http_config.max_request_body_mib * 1024 * 1024,
            read_timeout_seconds=http_config.read_timeout_seconds,
        ))
        runs_api = RunsApi(config.store.path, ready=lambda: self._ready)
        self._http.add_route("GET", "/v1/runs", runs_api.list_runs)
        self._http.add_route("GET", "/v1/runs/{run_id}", runs_api.get_run)
        self._http.add_route("GET", "/healthz", runs_api.healthz)
        for method, pattern, handler in self._routes:
            self._http.add_route(method, pattern, handler)
        self.registry.register(CollectorMetrics(
            stats=self.stats, state=self.state, max_run_series=config.prometheus.max_run_series,
            queue_depth=lambda: self.ingest.depth if self.ingest else 0, version=__version__,
        ))
        for collector in self._metrics_collectors:
            self.registry.register(collector)
        metrics_host, metrics_port = split_endpoint(config.prometheus.endpoint)
        server, _thread = _listening(
            "Prometheus /metrics", config.prometheus.endpoint,
            lambda: start_http_server(metrics_port, addr=metrics_host, registry=self.registry),
        )
        self._metrics_server = server
        self.metrics_port = server.server_port
        self._grpc.start()
        self._http.start()
        self.grpc_port, self.http_port = self._grpc.port, self._http.port

    def _build_pipeline(self, store: Store) -> Stage:
        stats = self.stats
        stage: Stage = CommitStage(stats=stats)
        for _order, _index, factory in sorted(self._stage_factories, reverse=True):
            stage = factory(stage)
        stage = RollupStage(stage, stats=stats)
        stage = CostStage(stage, price_book=self.price_book)
        head = DedupStage(stage, stats=stats)
        for each in head.stages():
            each.metrics = stats.stages
            each.setup(store)
        return head

    def stop(self, grace: float = 10.0) -> None:
        """Drain and stop: refuse new requests, commit what was accepted, close the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._ready = False
        stopping = time.perf_counter()
        receivers = [part for part in (self._grpc, self._http) if part is not None]
        threads = [threading.Thread(target=part.stop, args=(grace,)) for part in receivers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.decode_pool is not None:
            self.decode_pool.close()
        if self.ingest is not None:
            self.ingest.stop(timeout=max(grace, 30.0))
        if self.store is not None:
            self.store.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        logger.info("collector stopped", extra={
            "event": "collector.stopped", "drain_seconds": round(time.perf_counter() - stopping, 3)})

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
