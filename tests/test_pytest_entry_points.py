"""The suite collects with the bare `pytest` command as well as with `python -m pytest`, from any
working directory, and with any choice of test folders or files.

`python -m pytest` puts the working directory on sys.path, `pytest` does not; and pytest itself puts
each test folder without `__init__.py` (and `tests/`) there, where `tests/collector/` and
`tests/grafana/` would pass for the `collector` and `grafana` packages. Every such folder has a
`conftest` module, so the helpers that test modules share live in uniquely named modules
(`collector_harness`, `dashboard_files`, ...): `from conftest import` would pick whichever
folder's conftest pytest loaded last.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def _bare_pytest() -> str:
    beside_python = Path(sys.executable).with_name("pytest")
    found = str(beside_python) if beside_python.exists() else shutil.which("pytest")
    assert found, "the pytest console script is not installed next to this Python"
    return found


def test_the_suite_collects_from_outside_the_repository_whatever_the_selection(tmp_path: Path) -> None:
    python_m = [sys.executable, "-m", "pytest"]
    # Several folders at once, each with its own conftest.py, the collector's not loaded last.
    folders = [str(TESTS / "collector" / "test_collector_process.py"),
               str(TESTS / "grafana" / "test_grafana_rules.py"),
               str(TESTS / "instrumentation" / "test_run_end_hook.py")]
    commands = {
        "pytest tests": ([_bare_pytest()], [str(TESTS)]),
        "python -m pytest tests": (python_m, [str(TESTS)]),
        "python -m pytest <files of three folders>": (python_m, folders),
    }
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    # All at once: collecting imports every SDK the tests use, seconds of CPU each.
    running = {
        name: subprocess.Popen(
            [*launcher, "--collect-only", "-q", "-p", "no:cacheprovider", *paths],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for name, (launcher, paths) in commands.items()
    }
    for name, process in running.items():
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"{name} --collect-only did not finish in 120 s: {output[-3000:]}")
        assert process.returncode == 0, f"{name}: {output[-3000:]}"
        assert "error" not in output.splitlines()[-1], f"{name}: {output[-3000:]}"
        assert "tests/collector/test_collector_process.py::" in output, name
        assert "tests/grafana/test_grafana_rules.py::" in output, name
