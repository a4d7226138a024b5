"""The suite collects with the bare `pytest` command as well as with `python -m pytest`, from any
working directory.

`python -m pytest` puts the working directory on sys.path, `pytest` does not; and pytest itself puts
`tests/` there (the test folders share helpers with `from conftest import ...`), where
`tests/collector/` and `tests/grafana/` would pass for the `collector` and `grafana` packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bare_pytest() -> str:
    beside_python = Path(sys.executable).with_name("pytest")
    found = str(beside_python) if beside_python.exists() else shutil.which("pytest")
    assert found, "the pytest console script is not installed next to this Python"
    return found


@pytest.mark.parametrize("command", ["pytest", "python -m pytest"])
def test_the_whole_suite_collects_from_outside_the_repository(command: str, tmp_path: Path) -> None:
    launcher = [_bare_pytest()] if command == "pytest" else [sys.executable, "-m", "pytest"]
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(
        [*launcher, "--collect-only", "-q", "-p", "no:cacheprovider", str(REPO / "tests")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "error" not in output.splitlines()[-1], output[-3000:]
    assert "tests/collector/test_collector_ingest.py::" in output
    assert "tests/grafana/test_grafana_dashboards.py::" in output
