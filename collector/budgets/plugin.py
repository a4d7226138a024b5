"""Installs budgets into the collector (collector/plugins.py): the pipeline stage, the gRPC
`BudgetService`, `POST /v1/budget/check`, and the budget metrics.

The ledger is built on first use (when the pipeline is assembled, after the collector's store is
open), in the collector's own SQLite file so the stage writes in the batch's transaction; or in
Redis when $COGNOCIENT_BUDGETS_REDIS_URL is set. The ledger's clock is the collector's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from .http_handler import CHECK_PATH, handle_check
from .model import RunBlock
from .prometheus import describe_families

if TYPE_CHECKING:
    import grpc

    from collector.app import Collector
    from collector.http_server import HttpRequest, HttpResponse
    from collector.pipeline import Stage

    from .runtime import BudgetRuntime

__all__ = ["install"]

STAGE_ORDER = 200  # after waste (100): a loop flagged in this batch is known before budgets count


def install(collector: Collector) -> None:
    budgets = tuple(collector.config.budgets)
    if not budgets:
        return
    lock = threading.Lock()
    holder: list[BudgetRuntime] = []

    def runtime() -> BudgetRuntime:
        with lock:
            if not holder:
                from .runtime import BudgetRuntime

                holder.append(
                    BudgetRuntime.build(
                        budgets,
                        store_path=collector.config.store.path,
                        clock=lambda: datetime.fromtimestamp(collector.clock(), timezone.utc),
                        on_run_blocked=record_block,
                    )
                )
            return holder[0]

    def record_block(key: tuple[str, str], block: RunBlock, feature: str, agent: str) -> None:
        # The ledger already refuses the run; this puts `blocked` with budget and step in the runs API.
        # The check names the run's feature and agent: its spans may not have arrived yet (the
        # SDK's batch processor holds them), and the run's end is counted under these labels.
        collector.run_job(
            lambda uow: uow.mark_blocked(
                key, budget=block.budget, step=block.step or None,
                feature=feature or None, agent=agent or None,
            )
        )

    def stage(next: Stage) -> Stage:
        return runtime().stage_factory(next)

    def register(server: grpc.Server) -> None:
        from .grpc_servicer import add_budget_servicer

        add_budget_servicer(server, runtime().checker)

    def check_route(request: HttpRequest) -> HttpResponse:
        from collector.http_server import HttpResponse

        status, headers, body = handle_check(
            runtime().checker, request.body, request.headers.get("content-type", "application/json")
        )
        return HttpResponse(status, body, headers["Content-Type"])

    collector.add_stage(stage, order=STAGE_ORDER)
    collector.add_grpc_servicer(register)
    collector.add_route("POST", CHECK_PATH, check_route)
    collector.add_metrics_collector(_LazyMetrics(runtime))


class _LazyMetrics:
    """The budget metrics collector, resolved at scrape time (the ledger is built at start)."""

    def __init__(self, runtime: Callable[[], BudgetRuntime]) -> None:
        self._runtime = runtime

    def describe(self) -> list[Metric]:
        return describe_families()

    def collect(self) -> Iterator[Metric]:
        return self._runtime().metrics.collect()
