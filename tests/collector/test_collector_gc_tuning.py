"""The collector process's garbage-collector settings (`cognocient-collector` applies them once
started): what was loaded at start is frozen, and young collections wait for 20,000 objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from collector.main import YOUNG_GENERATION_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_objects_loaded_at_start_are_frozen_and_young_collections_are_rarer() -> None:
    loaded_at_start = [[index] for index in range(1000)]  # containers the GC tracks
    _, middle, old = gc.get_threshold()
    tune_garbage_collector()

    assert gc.get_freeze_count() >= len(loaded_at_start)
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, middle, old)
    collections_before = gc.get_stats()[0]["collections"]
    kept = [[index] for index in range(5000)]  # over CPython's default of 700: no collection now
    assert gc.get_stats()[0]["collections"] == collections_before
    assert len(kept) == 5000
