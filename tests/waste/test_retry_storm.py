"""retry_storm: failed LLM calls piling up within a window."""

from decimal import Decimal

from waste_spans import flags_of, llm

from collector.waste import load_waste_config


def test_five_failures_within_a_minute_are_a_storm_at_the_fifth():
    records = [llm(1, fingerprint="a")]
    errors = ["429", "429", "503", "429", "APITimeoutError"]
    records += [llm(step, error_type=error, fingerprint="b", cost="0")
                for step, error in enumerate(errors, start=2)]
    records.append(llm(7, fingerprint="b"))
    [flag] = flags_of(records)
    assert flag.kind == "retry_storm"
    assert flag.step == 6
    assert flag.wasted_usd == Decimal(0)
    assert flag.message == (
        "Retry storm at step 6: 5 failed LLM calls in 8.0s (429 x3, 503 x1, APITimeoutError x1), "
        "the first at step 2"
    )
    assert flag.details["error_types"] == {"429": 3, "503": 1, "APITimeoutError": 1}


def test_error_status_without_an_error_type_counts_and_billed_failures_are_priced():
    records = [llm(step, status_code=2, cost="0.002") for step in range(1, 6)]
    [flag] = flags_of(records)
    assert flag.details["error_types"] == {"error": 5}
    assert flag.wasted_usd == Decimal("0.010")
    assert flag.message.endswith("; they cost $0.01")


def test_failures_spread_over_more_than_the_window_are_no_storm():
    records = [llm(step, error_type="429", at=20.0 * step) for step in range(1, 8)]  # 4 in any 60 s
    assert flags_of(records) == []
    assert flags_of(records, load_waste_config({"retry_storm": {"window_seconds": 80}}))[0].step == 5


def test_four_failures_are_no_storm_and_budget_refusals_never_count():
    records = [llm(step, error_type="429") for step in range(1, 5)]
    records += [llm(step, error_type="BudgetExceeded", budget_decision="blocked") for step in range(5, 9)]
    assert flags_of(records) == []


def test_threshold_from_config_and_disabled():
    records = [llm(step, error_type="500") for step in range(1, 4)]
    assert flags_of(records, load_waste_config({"retry_storm": {"failures": 3}}))[0].step == 3
    records = [llm(step, error_type="500") for step in range(1, 9)]
    assert flags_of(records, load_waste_config({"retry_storm": {"enabled": False}})) == []
