"""Fixtures for the collector tests: real collectors, in-process and as a subprocess.

The helpers they use, and that test modules import, are in `collector_harness.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_harness import base_config
from prometheus_client import CollectorRegistry

from collector.app import Collector
from collector.config import parse_config
from collector.process import CollectorProcess


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Starts in-process collectors on free ports; stops them after the test."""
    started: list[Collector] = []

    def start(plugins: list[Any] | None = None, **sections: Any) -> Collector:
        config = parse_config(base_config(tmp_path, **sections))
        collector = Collector(config, registry=CollectorRegistry(), plugins=plugins or [])
        collector.start()
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.stop(grace=2)


@pytest.fixture
def collector(start_collector: Callable[..., Collector]) -> Collector:
    return start_collector()


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    processes: list[CollectorProcess] = []

    def make(**sections: Any) -> CollectorProcess:
        process = CollectorProcess.from_config(tmp_path, base_config(tmp_path, **sections))
        processes.append(process)
        return process

    yield make
    for process in processes:
        process.stop()
