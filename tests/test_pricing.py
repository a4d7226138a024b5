"""The PriceBook's fast path must give exactly genai-prices' answer."""

import logging
import random
import warnings
from decimal import Decimal

import pytest
from genai_prices import calc_price
from genai_prices.data_snapshot import get_snapshot

from cognocient_otel.pricing import (
    PriceBook,
    PriceOverride,
    TokenUsage,
    consistent_counts,
    normalize_provider,
)


def _random_usage(rng: random.Random) -> TokenUsage:
    input_tokens = rng.randint(0, 400_000)
    output_tokens = rng.randint(0, 20_000)
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=rng.randint(0, input_tokens // 2),
        cache_write_tokens=rng.randint(0, input_tokens // 4),
        reasoning_tokens=rng.randint(0, output_tokens),
    )


def _usages_priced_by_calc_price(seed: int):
    """(provider id, model id, usage, genai-prices' price) for 3 random usages of every model in the
    snapshot priced by tokens (models priced by audio hours or pages are skipped)."""
    rng = random.Random(seed)
    for provider in get_snapshot().providers:
        for model in provider.models:
            for _ in range(3):
                usage = _random_usage(rng)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        expected = calc_price(
                            usage.as_genai_prices(), model_ref=model.id, provider_id=provider.id
                        )
                except (LookupError, ValueError):
                    continue
                yield provider.id, model.id, usage, expected.total_price


def test_fast_path_equals_calc_price_for_every_model_in_the_snapshot():
    book = PriceBook()
    compared = 0
    for provider, model, usage, expected in _usages_priced_by_calc_price(seed=7):
        got = book.cost(model=model, usage=usage, provider=provider)
        assert got.usd == expected, (provider, model, usage)
        assert got.source == "price_table"
        compared += 1
    assert compared > 5000


def test_rate_cost_of_equals_calc_price_for_every_model_in_the_snapshot():
    """The per-call path prices plain counts with `PriceBook.rate`: same answer, to the digit."""
    book = PriceBook()
    compared = 0
    for provider, model, usage, expected in _usages_priced_by_calc_price(seed=11):
        rate = book.rate(model=model, provider=provider)
        assert rate is not None, (provider, model)
        got = rate.cost_of(
            usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
            usage.cache_write_tokens, usage.reasoning_tokens,
        )
        assert got == expected, (provider, model, usage)
        compared += 1
    assert compared > 5000


def test_rate_of_an_unknown_model_is_none_and_warns_once(caplog):
    book = PriceBook()
    with caplog.at_level(logging.WARNING, logger="cognocient_otel.pricing"):
        assert book.rate(model="my-private-model") is None
        assert book.rate(model="my-private-model") is None
        unknown = book.cost(model="my-private-model", usage=TokenUsage(input_tokens=10))
        assert unknown.source == "unknown_model"
        assert book.rate(model=None) is None
    assert len([r for r in caplog.records if "my-private-model" in r.getMessage()]) == 1


def test_rate_follows_overrides_like_cost():
    book = PriceBook(
        [PriceOverride(model="my-finetune", input_per_mtok=Decimal("3"), output_per_mtok=Decimal("12"))]
    )
    rate = book.rate(model="My-Finetune", provider="openai")
    assert rate is not None
    assert rate.cost_of(10**6, 10**6) == Decimal("15")


@pytest.mark.parametrize(
    ("counts", "expected"),
    [((100, 10, 1000, 0, 0), (1100, 10)), ((1100, 10, 1000, 0, 0), (1100, 10)), ((5, 3, 0, 2, 7), (5, 7))],
)
def test_consistent_counts_match_token_usage_consistent(counts, expected):
    assert consistent_counts(*counts) == expected
    usage = TokenUsage(*counts).consistent()
    assert (usage.input_tokens, usage.output_tokens) == expected


def test_cache_reads_are_priced_at_the_cache_rate():
    book = PriceBook()
    plain = book.cost(model="gpt-4o-mini", usage=TokenUsage(input_tokens=1_000_000), provider="openai")
    cached = book.cost(
        model="gpt-4o-mini",
        usage=TokenUsage(input_tokens=1_000_000, cache_read_tokens=1_000_000),
        provider="openai",
    )
    assert plain.usd == Decimal("0.15")
    assert cached.usd == Decimal("0.075")


def test_unknown_model_costs_zero_and_warns_once(caplog):
    book = PriceBook()
    with caplog.at_level(logging.WARNING, logger="cognocient_otel.pricing"):
        first = book.cost(model="my-private-model", usage=TokenUsage(input_tokens=10))
        second = book.cost(model="my-private-model", usage=TokenUsage(input_tokens=10))
    assert first.usd == second.usd == 0
    assert first.source == "unknown_model"
    assert len([r for r in caplog.records if "my-private-model" in r.getMessage()]) == 1


def test_override_wins_over_the_price_table_and_prices_unknown_models():
    book = PriceBook([
        PriceOverride(model="gpt-4o-mini", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2")),
        PriceOverride(model="my-finetune", input_per_mtok=Decimal("3"), output_per_mtok=Decimal("12"),
                      cache_read_per_mtok=Decimal("0.3")),
    ])
    assert book.cost(model="GPT-4o-mini", usage=TokenUsage(input_tokens=10**6, output_tokens=10**6)).usd == 3
    finetune = book.cost(
        model="my-finetune",
        usage=TokenUsage(input_tokens=2 * 10**6, output_tokens=10**6, cache_read_tokens=10**6),
    )
    assert finetune.usd == Decimal("3") + Decimal("0.3") + Decimal("12")
    assert finetune.source == "price_table"


def test_negative_override_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match="input_per_mtok"):
        PriceOverride(model="m", input_per_mtok=Decimal("-1"), output_per_mtok=Decimal("1"))


def test_unknown_provider_falls_back_to_the_model_name():
    book = PriceBook()
    local = book.cost(model="gpt-4o-mini", usage=TokenUsage(input_tokens=1000), provider="vllm",
                      api_url="http://127.0.0.1:8000/v1")
    assert local.usd == book.cost(model="gpt-4o-mini", usage=TokenUsage(input_tokens=1000)).usd > 0


def test_exclusive_cache_counts_are_read_as_additional_input():
    book = PriceBook()
    exclusive = TokenUsage(input_tokens=100, cache_read_tokens=1000)
    inclusive = TokenUsage(input_tokens=1100, cache_read_tokens=1000)
    assert book.cost(model="claude-sonnet-4-6", usage=exclusive).usd == \
        book.cost(model="claude-sonnet-4-6", usage=inclusive).usd


@pytest.mark.parametrize(("semconv", "expected"), [("gcp.gemini", "google"), ("aws.bedrock", "aws"),
                                                   ("openai", "openai"), (None, None)])
def test_semconv_provider_names_map_to_genai_prices_ids(semconv, expected):
    assert normalize_provider(semconv) == expected
