"""Fixtures for the budget tests: a real redis-server on a free port, and ledgers on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from collector.budgets.windows import ManualClock

from .redis_server import running_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 31, 23, 0, tzinfo=timezone.utc))


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path):
    """A factory of ledger stores on one backend; each test gets its own database / key prefix."""
    created = []
    prefix = f"test:{uuid.uuid4().hex}"

    def make():
        if request.param == "sqlite":
            from collector.budgets.sqlite_store import SqliteLedgerStore

            store = SqliteLedgerStore(tmp_path / "ledger.db")
        else:
            from collector.budgets.redis_store import RedisLedgerStore

            store = RedisLedgerStore(request.getfixturevalue("redis_url"), prefix=prefix)
        created.append(store)
        return store

    make.backend = request.param
    yield make
    for store in created:
        store.close()
