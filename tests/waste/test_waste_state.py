"""The per-run state: arrival order, restarts, once per run and kind, compaction, bad rows."""

import json
import random
from decimal import Decimal

import pytest
from waste_spans import growing, llm, tool

from collector.waste import WasteConfig, WasteDetector, load_waste_config
from collector.waste.state import RunWasteState, StateDecodeError

BLOAT_INPUTS = [1000, 1100, 1200, 2500, 5000, 10000, 20000]
EXPECTED = [("context_bloat", 6), ("loop", 9), ("retry_storm", 14)]


def _feed(detector: WasteDetector, state: RunWasteState, records) -> list:
    for record in records:
        detector.record(state, record)
    return detector.evaluate(state)


def _mixed_run():
    """A run with all three kinds of waste: bloat at step 6, a loop at step 9, a storm at step 14."""
    records = growing(BLOAT_INPUTS)  # steps 1..7, bloat at 6
    records += [llm(8, fingerprint="fp7", input_tokens=20000), llm(9, fingerprint="fp7", input_tokens=20000)]
    records += [llm(step, error_type="429") for step in range(10, 15)]
    return records


@pytest.mark.parametrize("seed", range(8))
def test_flags_do_not_depend_on_the_order_spans_arrive_in(seed):
    records = _mixed_run()
    rng = random.Random(seed)
    rng.shuffle(records)
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    for record in records:
        detector.record(state, record)
    flags = detector.evaluate(state)
    assert [(flag.kind, flag.step) for flag in flags] == EXPECTED


def test_each_kind_is_raised_once_per_run_over_many_batches():
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    raised = []
    for record in _mixed_run() + [llm(step, fingerprint="fp7") for step in range(15, 20)]:
        raised += _feed(detector, state, [record])
    assert [(flag.kind, flag.step) for flag in raised] == EXPECTED
    assert not detector.wants(state)
    assert state.calls == [] and state.tools == []  # nothing left to watch for: nothing kept


def _rows(state: RunWasteState) -> list[tuple[str, str]]:
    return [RunWasteState.entry_row(entry) for entry in (*state.calls, *state.tools)]


def test_state_survives_a_restart_through_its_stored_rows():
    records = [*_mixed_run(), tool("search", "h", at=1.0)]
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    before = _feed(detector, state, records[:5] + records[-1:])
    assert before == []
    stored = _rows(state)
    restarted = WasteDetector(WasteConfig())  # a fresh process: nothing in memory
    revived = RunWasteState.from_rows(stored)
    assert revived == state
    after = _feed(restarted, revived, records[5:-1])
    assert [(flag.kind, flag.step) for flag in after] == EXPECTED


def test_raised_kinds_come_from_the_rollup_on_reload():
    state = RunWasteState.from_rows([], raised=["loop"])
    detector = WasteDetector(WasteConfig())
    assert _feed(detector, state, [llm(step, fingerprint="same") for step in range(1, 5)]) == []


def test_money_in_the_stored_state_is_decimal_text_and_input_is_priced_only_when_flagged():
    state = RunWasteState()
    entry = WasteDetector(WasteConfig()).record(state, llm(1, cost="0.000123", input_tokens=5000))
    kind, text = RunWasteState.entry_row(entry)
    row = json.loads(text)
    assert kind == "c"
    assert row[3] == "0.000123"
    # no price per span: the call names its model, priced by genai-prices when a flag needs it
    assert row[6:8] == ["gpt-4o-mini", "openai"]
    batch_kind, batch_text = RunWasteState.batch_row([entry])
    assert batch_kind == "b" and json.loads(batch_text) == [["c", *row]]
    one_row = RunWasteState.from_rows([(kind, text)])
    assert one_row == RunWasteState.from_rows([(batch_kind, batch_text)]) == state


def test_rows_of_the_earlier_format_still_load_with_their_input_cost():
    # [step, start_ns, input_tokens, input_usd, cost_usd, error_type, fingerprint, context_window]
    row = json.dumps([1, 5, 4000, "0.0006", "0.001", None, "fp", 128000])
    state = RunWasteState.from_rows([("c", row)])
    [call] = state.calls
    assert (call.step, call.input_tokens, call.cost, call.fingerprint) == (1, 4000, Decimal("0.001"), "fp")
    assert WasteDetector(WasteConfig()).input_cost(call) == Decimal("0.0006")


def test_without_cognocient_step_calls_are_ordered_by_start_time_and_numbered_by_position():
    # another instrumentation: no step, no fingerprint; spans arrive newest first
    records = [llm(None, input_tokens=tokens, at=float(index)) for index, tokens in enumerate(BLOAT_INPUTS)]
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    [flag] = _feed(detector, state, reversed(records))
    assert (flag.kind, flag.step, flag.details["started_after_step"]) == ("context_bloat", 6, 3)


def test_one_call_without_a_step_switches_the_run_to_start_time_order():
    # the run's calls come from two sources; the uninstrumented one sets no step
    steps = [1, 2, 3, None, 4, 5]
    records = [llm(step, input_tokens=tokens, at=float(index))
               for index, (step, tokens) in enumerate(zip(steps, BLOAT_INPUTS, strict=False))]
    records.append(llm(6, input_tokens=20000, at=6.0))
    [flag] = _feed(WasteDetector(WasteConfig()), RunWasteState(), records)
    assert flag.step == 6  # position 6 by start time (that call's own step is 5)


def test_steps_that_collide_mean_several_processes_and_start_time_order():
    # process A: steps 1..3, then a sub-agent in process B numbers its calls 1..4
    records = [llm(step, fingerprint=f"a{step}", at=float(step)) for step in (1, 2, 3)]
    records += [llm(step, fingerprint="same", at=10.0 + step) for step in (1, 2, 3, 4)]
    [flag] = _feed(WasteDetector(WasteConfig()), RunWasteState(), records)
    assert (flag.kind, flag.step) == ("loop", 6)  # the 6th call of the run, B's step 3
    assert flag.details["first_step"] == 4


def test_late_arrivals_are_placed_by_their_step_before_the_checks_run():
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    records = growing(BLOAT_INPUTS)
    assert _feed(detector, state, records[3:]) == []  # steps 4..7 alone: no baseline yet
    [flag] = _feed(detector, state, records[:3])  # steps 1..3 arrive late
    assert flag.step == 6


def test_a_step_that_never_arrives_is_waited_for_only_late_arrival_seconds_of_run_time():
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    records = [record for record in growing(BLOAT_INPUTS) if record.step != 2]  # step 2 is lost
    assert _feed(detector, state, records) == []  # steps 3..7 might still be preceded by step 2
    later = llm(8, input_tokens=40000, fingerprint="fp8", at=2.0 + 30.0)  # 30 s after step 1
    [flag] = _feed(detector, state, [later])
    assert (flag.step, flag.details["started_after_step"]) == (6, 3)


def test_a_budget_refused_call_keeps_its_step_so_no_gap_is_waited_for():
    records = growing(BLOAT_INPUTS[:3])
    records.append(llm(4, budget_decision="blocked", error_type="BudgetExceeded"))
    records += [llm(step, input_tokens=tokens, fingerprint=f"fp{step}")
                for step, tokens in zip(range(5, 9), [2500, 5000, 10000, 20000], strict=True)]
    [flag] = _feed(WasteDetector(WasteConfig()), RunWasteState(), records)
    assert flag.step == 7


def test_calls_beyond_the_cap_are_not_kept_and_the_state_says_so():
    config = load_waste_config({"max_tracked_calls": 10})
    detector = WasteDetector(config)
    state = RunWasteState()
    _feed(detector, state, [llm(step, fingerprint=f"f{step}") for step in range(1, 15)])
    _feed(detector, state, [tool("t", f"h{index}", at=float(index)) for index in range(15)])
    assert len(state.calls) == 10 and len(state.tools) == 10
    assert state.truncated


def test_a_raised_loop_stops_keeping_fingerprints_and_tools():
    detector = WasteDetector(WasteConfig())
    state = RunWasteState()
    _feed(detector, state, [llm(step, fingerprint="x") for step in range(1, 4)])
    assert state.raised == {"loop"}
    assert detector.record(state, tool("t", "h", at=9.0)) is None
    assert detector.record(state, llm(4, fingerprint="y")).fingerprint is None


def test_nothing_is_kept_when_every_detector_is_off():
    detector = WasteDetector(load_waste_config({"enabled": False}))
    state = RunWasteState()
    assert _feed(detector, state, _mixed_run()) == []
    assert state.calls == []


@pytest.mark.parametrize("rows", [
    [("c", "not json")],
    [("c", "[1, 2]")],
    [("c", '[1, 2, 3, null, "x", null, null, null]')],
    [("t", "[1]")],
    [("x", "[]")],
])
def test_unreadable_state_raises_a_clear_error(rows):
    with pytest.raises(StateDecodeError, match="waste state"):
        RunWasteState.from_rows(rows)
