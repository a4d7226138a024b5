"""Fixtures for the budget tests: a real redis-server on a free port, and ledgers on both backends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from collector.budgets.windows import ManualClock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server, "redis-server is required (Debian package redis-server; scripts/test installs it)"
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not listen within 10 s"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


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
