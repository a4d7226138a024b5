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


def test_the_whole_suite_collects_from_outside_the_repository(tmp_path: Path) -> None:
    launchers = {"pytest": [_bare_pytest()], "python -m pytest": [sys.executable, "-m", "pytest"]}
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    # Both at once: collecting imports every SDK the tests use, seconds of CPU each.
    running = {
        command: subprocess.Popen(
            [*launcher, "--collect-only", "-q", "-p", "no:cacheprovider", str(REPO / "tests")],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for command, launcher in launchers.items()
    }
    for command, process in running.items():
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"{command} --collect-only did not finish in 120 s: {output[-3000:]}")
        assert process.returncode == 0, f"{command}: {output[-3000:]}"
        assert "error" not in output.splitlines()[-1], f"{command}: {output[-3000:]}"
        assert "tests/collector/test_collector_ingest.py::" in output, command
        assert "tests/grafana/test_grafana_dashboards.py::" in output, command
