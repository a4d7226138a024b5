"""Paths and loaders of the dashboard and rule tests.

Test modules import them from here (`from dashboard_files import ...`), not from `conftest`:
every test folder has a `conftest` module, and which one that name means depends on the
folders pytest was given.

`grafana/` is content plus its generator, run from the repository root
(`python -m grafana.dashboards.build`), not an installed package: put the root on the path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

GRAFANA_DIR = REPO_ROOT / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
RULES_DIR = GRAFANA_DIR / "prometheus"


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels_with_queries(board: dict) -> list[dict]:
    """Every panel that queries data (rows hold no targets), nested rows included."""
    found = []
    for panel in board["panels"]:
        found.extend(p for p in panel.get("panels", []) if p.get("targets"))
        if panel.get("targets"):
            found.append(panel)
    return found
