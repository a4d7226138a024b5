"""Fixtures for the dashboard and rule tests (paths and loaders: `dashboard_files.py`)."""

from __future__ import annotations

import pytest
from dashboard_files import load_dashboards


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict]:
    return load_dashboards()
