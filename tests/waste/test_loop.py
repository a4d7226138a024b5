"""loop: the same request, or the same tool call, repeated; flagged at the repeat that made it a loop."""

from decimal import Decimal

from waste_spans import flags_of, llm, tool

from collector.waste import load_waste_config


def test_the_third_identical_request_is_a_loop_and_the_message_says_what_the_repeats_cost():
    fingerprints = ["a", "b", "c", "a", "d", "a", "a"]
    costs = ["0.010", "0.011", "0.012", "0.013", "0.014", "0.015", "0.016"]
    records = [llm(step, fingerprint=fp, cost=cost)
               for step, (fp, cost) in enumerate(zip(fingerprints, costs, strict=True), start=1)]
    [flag] = flags_of(records)
    assert flag.kind == "loop"
    assert flag.step == 6
    assert flag.wasted_usd == Decimal("0.028")  # the repeats at steps 4 and 6
    assert flag.message == (
        "Loop at step 6: the same request was sent 3 times (first at step 1); the 2 repeats cost $0.03"
    )
    assert flag.details == {"check": "request", "fingerprint": "a", "repeats": 3, "first_step": 1}


def test_distinct_requests_and_a_single_repeat_are_no_loop():
    records = [llm(step, fingerprint=fp) for step, fp in enumerate(["a", "b", "a", "c", "d", "e"], start=1)]
    assert flags_of(records) == []


def test_failed_attempts_of_the_same_request_are_retries_not_a_loop():
    records = [llm(1, fingerprint="a", error_type="429"), llm(2, fingerprint="a", error_type="503"),
               llm(3, fingerprint="a"), llm(4, fingerprint="b")]
    assert flags_of(records) == []


def test_budget_refused_calls_are_not_repeats():
    records = [llm(1, fingerprint="a"), llm(2, fingerprint="a"),
               llm(3, fingerprint="a", budget_decision="blocked", error_type="BudgetExceeded")]
    assert flags_of(records) == []


def test_repeats_threshold_from_config():
    records = [llm(step, fingerprint="same") for step in range(1, 6)]
    config = load_waste_config({"loop": {"repeats": 5}})
    assert flags_of(records[:4], config) == []
    assert flags_of(records, config)[0].step == 5
    assert flags_of(records, load_waste_config({"loop": {"enabled": False}})) == []


def test_same_tool_with_same_arguments_is_a_loop_after_the_step_that_asked_for_it():
    records = [llm(1, fingerprint="p1"), tool("search", "h-cats", at=3.0),
               llm(2, fingerprint="p2"), tool("search", "h-cats", at=5.0),
               llm(3, fingerprint="p3"), tool("search", "h-dogs", at=7.0),
               llm(4, fingerprint="p4"), tool("search", "h-cats", at=9.0)]
    [flag] = flags_of(records)
    assert flag.step == 4
    assert flag.message == "Loop after step 4: tool 'search' was called 3 times with the same arguments"
    assert flag.wasted_usd is None


def test_tool_calls_without_recorded_arguments_or_with_different_ones_are_no_loop():
    records = [llm(1, fingerprint="p1")]
    records += [tool("search", None, at=3.0 + step) for step in range(5)]
    records += [tool("fetch", f"h{step}", at=10.0 + step) for step in range(5)]
    assert flags_of(records) == []


def test_tool_check_can_be_off():
    records = [llm(1, fingerprint="p1")] + [tool("search", "h", at=3.0 + step) for step in range(3)]
    assert flags_of(records, load_waste_config({"loop": {"tools": False}})) == []


def test_when_both_checks_hold_the_earlier_one_is_the_flag():
    records = [tool("search", "h", at=0.5 + step) for step in range(3)]  # 3rd at 2.5 s, before step 1's LLM
    records += [llm(step, fingerprint="same") for step in range(1, 4)]
    [flag] = flags_of(records)
    assert flag.details["check"] == "tool"
    assert flag.step == 1  # the tool loop held after step 1 started (at 2 s)
