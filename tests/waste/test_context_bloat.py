"""context_bloat: compounding input is flagged at the step it took hold; normal growth never is."""

from decimal import Decimal

import pytest
from waste_spans import flags_of, geometric, growing, llm

from cognocient_otel.pricing import PriceBook, TokenUsage
from collector.waste import load_waste_config


@pytest.mark.parametrize("rate", [0.10, 0.15, 0.20])
@pytest.mark.parametrize("steps", [10, 11, 30])
def test_no_flag_for_an_agent_whose_context_grows_modestly(rate, steps):
    # the 30-step run starts small enough to stay under 80 % of the model's context window
    records = growing(geometric(2000 if steps < 30 else 500, rate, steps))
    assert flags_of(records) == []


def test_no_flag_for_history_that_grows_by_a_constant_amount_per_step():
    # system prompt 1,000 tokens, each step appends a 1,500-token tool result: linear, not compounding
    assert flags_of(growing([1000 + 1500 * step for step in range(25)])) == []


def test_no_flag_for_one_large_tool_output_that_then_stays():
    assert flags_of(growing([1000, 1100, 1200, 20000, 20100, 20200, 20300])) == []


def test_no_flag_for_small_prompts_however_fast_they_grow():
    assert flags_of(growing([50, 60, 70, 140, 280, 560, 900])) == []


def test_compounding_growth_is_flagged_where_it_took_hold():
    inputs = [1000, 1100, 1200, 2500, 5000, 10000, 20000]
    [flag] = flags_of(growing(inputs))
    assert flag.kind == "context_bloat"
    assert flag.step == 6  # 3 calls in a row grew >= 25 % and 10,000 > 3 x median(1000, 1100, 1200)
    assert flag.message.startswith(
        "Context bloat after step 3: input grew 8.3x over 3 steps (1,200 -> 10,000 input tokens at step 6)"
    )
    assert flag.details["started_after_step"] == 3
    assert flag.details["growth"] == 8.33
    # wasted: the input tokens above step 3's 1,200, at gpt-4o-mini's input rate, for steps 4..6
    rate = PriceBook().cost(model="gpt-4o-mini", usage=TokenUsage(input_tokens=1_000_000)).usd / 1_000_000
    expected = sum((rate * (tokens - 1200) for tokens in (2500, 5000, 10000)), Decimal(0))
    assert flag.wasted_usd == expected
    assert "the extra input cost $0.0020" in flag.message


def test_doubling_from_the_first_call_is_flagged_after_step_1():
    [flag] = flags_of(growing([1000, 2000, 4000, 8000, 16000]))
    assert flag.step == 4
    assert flag.details["started_after_step"] == 1


def test_unpriced_model_still_flags_without_a_wasted_cost():
    [flag] = flags_of(growing([1000, 1100, 1200, 2500, 5000, 10000], model="my-private-model"))
    assert flag.step == 6
    assert flag.wasted_usd is None
    assert "cost" not in flag.message


def test_failed_calls_without_usage_do_not_break_the_series_but_keep_their_step():
    records = [llm(1, input_tokens=1000), llm(2, input_tokens=1100), llm(3, input_tokens=1200),
               llm(4, input_tokens=2500), llm(5, error_type="429"), llm(6, input_tokens=5000),
               llm(7, input_tokens=10000)]
    [flag] = flags_of(records)
    assert flag.step == 7
    assert flag.details["started_after_step"] == 3
    assert "over 4 steps" in flag.message


def test_a_call_that_nearly_fills_the_context_window_is_flagged_at_its_step():
    # gpt-4o-mini has a 128,000-token window in genai-prices; 110,000 is 86 % of it
    records = growing([20000, 21000, 110000, 22000])
    [flag] = flags_of(records)
    assert flag.step == 3
    assert flag.message == (
        "Context bloat at step 3: the input of 110,000 tokens fills 86% of the model's 128,000-token "
        "context window"
    )
    assert flag.wasted_usd is None


def test_context_window_of_an_unknown_model_comes_from_the_config():
    config = load_waste_config({"context_windows": {"llama-3-70b-local": 8192}})
    assert flags_of(growing([3000, 7000, 3000], model="llama-3-70b-local"), config)[0].step == 2
    assert flags_of(growing([3000, 7000, 3000], model="llama-3-70b-local")) == []


def test_context_window_check_off():
    config = load_waste_config({"context_bloat": {"context_window_share": None}})
    assert flags_of(growing([20000, 21000, 110000, 22000]), config) == []


def test_embeddings_calls_are_not_context():
    records = growing([1000, 1100, 1200, 1300])
    records += [llm(step, input_tokens=tokens, operation="embeddings", fingerprint=f"e{step}")
                for step, tokens in ((5, 3000), (6, 7000), (7, 15000), (8, 30000))]
    assert flags_of(records) == []


def test_thresholds_come_from_the_config():
    inputs = [1000, 1100, 1200, 2500, 5000, 10000, 20000]
    strict = load_waste_config({"context_bloat": {"growth_factor": 10}})
    [flag] = flags_of(growing(inputs), strict)
    assert flag.step == 7
    disabled = load_waste_config({"context_bloat": {"enabled": False}})
    assert flags_of(growing(inputs), disabled) == []
