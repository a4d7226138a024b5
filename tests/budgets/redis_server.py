"""A real redis-server for the tests of the Redis ledger: free port, no persistence, stopped on exit.

The budget tests (tests/budgets/conftest.py) and the waste stage's budget tests use it; the waste
tests import it as `tests.budgets.redis_server` (the repository root is on sys.path: pyproject's
pytest `pythonpath`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from collector.process import free_port, stop_process, wait_until_ready


@contextmanager
def running_redis(folder: Path) -> Iterator[str]:
    """Start redis-server with its files in `folder`; yields its `redis://127.0.0.1:PORT/0` URL."""
    server = shutil.which("redis-server")
    assert server, "redis-server is required (Debian package redis-server; scripts/test installs it)"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        wait_until_ready(process, listening, timeout_seconds=10, name="redis-server", log_tail=lambda: "")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process, grace_seconds=10)
