"""Parts that extend the collector (budgets, waste detection) install themselves from here.

Extension point (issues 4 and 5). A plugin is `install(collector: Collector) -> None`; it reads its
configuration section (`collector.config.budgets`, `collector.config.waste`) and calls, before
the collector starts:

* `collector.add_stage(factory, order=...)`: a pipeline stage between rollup and commit;
  `factory(next) -> Stage`; lower `order` runs first (waste 100, budgets 200);
* `collector.add_grpc_servicer(register)`: `register(grpc_server)` adds a servicer on port 4317;
* `collector.add_route(method, pattern, handler)`: an HTTP route on port 4318;
* `collector.add_metrics_collector(prometheus_collector)`: families on /metrics.

`installed_plugins()` below lists the parts installed (waste detection, then budgets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.app import Collector

Plugin = Callable[["Collector"], None]


def installed_plugins() -> list[Plugin]:
    plugins: list[Plugin] = []
    from collector.budgets.plugin import install as install_budgets
    from collector.waste.plugin import install as install_waste

    plugins.append(install_waste)
    plugins.append(install_budgets)
    return plugins
