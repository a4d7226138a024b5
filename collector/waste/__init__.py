"""Waste detection (issue 5): context bloat, loops and retry storms in a run, at the step they start.

`WasteDetector` (detector.py) keeps a compact per-run `RunWasteState` (state.py) and raises
`WasteFlag`s (flags.py); the three checks are context_bloat.py, loop.py and retry_storm.py; the
thresholds are the `waste:` section of the collector's YAML (config.py). docs/waste.md explains
what each check needs from the spans and how the flags show in the runs API and in Prometheus.
"""

from collector.waste.config import WasteConfig, WasteConfigError, load_waste_config
from collector.waste.detector import WasteDetector
from collector.waste.flags import CONTEXT_BLOAT, KINDS, LOOP, RETRY_STORM, WasteFlag
from collector.waste.state import RunWasteState

__all__ = [
    "CONTEXT_BLOAT",
    "KINDS",
    "LOOP",
    "RETRY_STORM",
    "RunWasteState",
    "WasteConfig",
    "WasteConfigError",
    "WasteDetector",
    "WasteFlag",
    "load_waste_config",
]
