"""Evaluating after every batch (what the collector does) finds exactly the flags that one
evaluation of the whole run finds, when the spans arrive in order: the shortcuts that skip
detectors a batch cannot affect never miss a flag or move it."""

from __future__ import annotations

import random

import pytest
from waste_spans import llm, tool

from collector.waste import WasteConfig, WasteDetector
from collector.waste.state import RunWasteState


def _random_run(rng: random.Random) -> list:
    records = []
    tokens = rng.randint(500, 3000)
    fingerprints = [f"fp{index}" for index in range(rng.randint(2, 12))]
    at = 0.0
    for step in range(1, rng.randint(3, 40)):
        at += rng.choice([0.5, 2.0, 5.0, 20.0])
        kind = rng.random()
        if kind < 0.15:
            records.append(llm(step, error_type=rng.choice(["429", "503", "APITimeoutError"]), at=at))
            continue
        tokens = int(tokens * rng.choice([0.9, 1.05, 1.1, 1.3, 1.6, 2.0]))
        records.append(llm(step, input_tokens=tokens, fingerprint=rng.choice(fingerprints), at=at,
                           cost=str(rng.randint(1, 900) / 100_000)))
        if rng.random() < 0.3:
            records.append(tool(rng.choice(["search", "fetch"]), rng.choice(["h1", "h2", "h3"]), at=at + 0.2))
    return records


def _all_at_once(records) -> list:
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    for record in records:
        detector.record(state, record)
    return detector.evaluate(state)


def _batch_by_batch(records, rng: random.Random) -> list:
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    flags = []
    position = 0
    while position < len(records):
        size = rng.randint(1, 4)
        batch = records[position:position + size]
        added = [entry for entry in (detector.record(state, record) for record in batch) if entry]
        position += size
        flags += detector.evaluate(state, added=added)
    return flags


@pytest.mark.parametrize("seed", range(300))
def test_batch_by_batch_equals_all_at_once(seed):
    rng = random.Random(seed)
    records = _random_run(rng)
    whole = {flag.kind: (flag.step, flag.message, flag.wasted_usd) for flag in _all_at_once(records)}
    incremental = {flag.kind: (flag.step, flag.message, flag.wasted_usd)
                   for flag in _batch_by_batch(records, rng)}
    assert incremental == whole


def test_the_random_runs_do_raise_every_kind_of_flag():
    # guards the test above against comparing nothing with nothing
    kinds = set()
    for seed in range(300):
        kinds.update(flag.kind for flag in _all_at_once(_random_run(random.Random(seed))))
    assert kinds == {"context_bloat", "loop", "retry_storm"}


def _with_and_without_scan_marks(records, rng: random.Random) -> tuple[list, list]:
    """The same batches, in an order with late arrivals, evaluated with and without the marks of
    what earlier batches found clean."""
    batches = []
    pending = list(records)
    while pending:
        size = min(len(pending), rng.randint(1, 5))
        # mostly in order, now and then a span from further ahead (its predecessors arrive late)
        picks = [pending.pop(rng.randrange(len(pending)) if rng.random() < 0.3 else 0) for _ in range(size)]
        batches.append(picks)
    results = []
    for forget_marks in (False, True):
        detector = WasteDetector(WasteConfig())
        state = RunWasteState()
        flags = []
        for batch in batches:
            added = [entry for entry in (detector.record(state, record) for record in batch) if entry]
            if forget_marks:
                state.forget_scan_marks()
            flags += detector.evaluate(state, added=added)
        results.append([(flag.kind, flag.step, flag.message, flag.wasted_usd) for flag in flags])
    return results[0], results[1]


@pytest.mark.parametrize("seed", range(300))
def test_skipping_calls_found_clean_before_changes_nothing_even_with_late_arrivals(seed):
    rng = random.Random(1000 + seed)
    with_marks, without_marks = _with_and_without_scan_marks(_random_run(rng), rng)
    assert with_marks == without_marks


@pytest.mark.parametrize("seed", range(50))
def test_recording_a_batch_at_once_keeps_what_recording_span_by_span_keeps(seed):
    # the stage records each run's spans of a batch with record_all()
    records = _random_run(random.Random(seed))
    detector = WasteDetector(WasteConfig())
    one_by_one, all_at_once = RunWasteState(), RunWasteState()
    added = [entry for entry in (detector.record(one_by_one, record) for record in records) if entry]
    assert detector.record_all(all_at_once, records) == added
    assert all_at_once == one_by_one
