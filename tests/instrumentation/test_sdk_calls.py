"""The current openai (3.x) and anthropic (2.x) SDKs, which send through httpx2: every call is a
costed GenAI span, sync and async, streaming and not."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest
from genai_prices import Usage, calc_price

import cognocient_otel
from cognocient_otel.testing import LLMServer, ScriptedResponse


def expected_cost(model: str, provider: str | None = None, **usage: int) -> float:
    return float(calc_price(Usage(**usage), model, provider_id=provider).total_price)


def openai_client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)


def test_chat_completion_span_has_usage_cost_and_run(llm_server: LLMServer, traced) -> None:
    llm_server.script(
        [ScriptedResponse(input_tokens=1200, cached_tokens=1000, output_tokens=80, reasoning_tokens=30)]
    )
    client = openai_client(llm_server)
    with cognocient_otel.run("support-bot", feature="support") as run:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], max_tokens=100
        )
    span = traced.one_llm_span()
    attributes = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind.name == "CLIENT"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.usage.input_tokens"] == 1200
    assert attributes["gen_ai.usage.output_tokens"] == 80
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 30
    assert attributes["cognocient.run.id"] == run.id
    assert attributes["cognocient.feature"] == "support"
    assert attributes["cognocient.step"] == 1
    assert attributes["cognocient.cost.source"] == "price_table"
    cost = expected_cost(
        "gpt-4o-mini",
        "openai",
        input_tokens=1200,
        cache_read_tokens=1000,
        output_tokens=80,
        output_reasoning_tokens=30,
    )
    assert attributes["cognocient.cost.usd"] == pytest.approx(cost, rel=1e-12)
    assert run.cost_usd == Decimal(str(cost)) or float(run.cost_usd) == pytest.approx(cost, rel=1e-12)
    assert len(attributes["cognocient.request.fingerprint"]) == 16
    assert "hello" not in str(dict(attributes))
    root = next(s for s in traced.spans() if s.name == "invoke_agent support-bot")
    assert span.parent.span_id == root.context.span_id
    assert root.attributes["gen_ai.agent.name"] == "support-bot"


def test_response_model_prices_the_call(traced) -> None:
    with LLMServer(model_override="gpt-4o-2024-08-06") as server:
        server.script([ScriptedResponse(input_tokens=1000, output_tokens=100)])
        openai_client(server).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    attributes = traced.one_llm_span().attributes
    assert attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attributes["cognocient.cost.usd"] == pytest.approx(
        expected_cost("gpt-4o-2024-08-06", "openai", input_tokens=1000, output_tokens=100), rel=1e-12
    )


async def test_async_chat_stream_captures_usage(llm_server: LLMServer, traced) -> None:
    llm_server.script([ScriptedResponse(input_tokens=40, output_tokens=12, text="streamed words")])
    client = openai.AsyncOpenAI(base_url=llm_server.base_url + "/v1", api_key="test", max_retries=0)
    async with cognocient_otel.run("streamer") as run:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == "streamed words"
    attributes = traced.one_llm_span().attributes
    assert attributes["gen_ai.usage.input_tokens"] == 40
    assert attributes["gen_ai.usage.output_tokens"] == 12
    assert attributes["cognocient.usage.complete"] is True
    assert attributes["cognocient.run.id"] == run.id
    assert attributes["cognocient.cost.usd"] == pytest.approx(
        expected_cost("gpt-4o-mini", "openai", input_tokens=40, output_tokens=12), rel=1e-12
    )


def test_responses_api_sync_and_stream(llm_server: LLMServer, traced) -> None:
    client = openai_client(llm_server)
    llm_server.script(
        [
            ScriptedResponse(input_tokens=300, cached_tokens=100, output_tokens=50, reasoning_tokens=20),
            ScriptedResponse(input_tokens=70, output_tokens=9),
        ]
    )
    client.responses.create(model="gpt-4o-mini", input="question")
    with client.responses.stream(model="gpt-4o-mini", input="question") as stream:
        assert stream.get_final_response().output_text == "ok"
    first, second = sorted(traced.llm_spans(), key=lambda s: s.start_time)
    assert first.attributes["gen_ai.usage.input_tokens"] == 300
    assert first.attributes["gen_ai.usage.cache_read.input_tokens"] == 100
    assert first.attributes["gen_ai.usage.reasoning.output_tokens"] == 20
    assert second.attributes["gen_ai.request.stream"] is True
    assert second.attributes["gen_ai.usage.output_tokens"] == 9
    assert second.attributes["cognocient.usage.complete"] is True
    assert second.attributes["cognocient.cost.usd"] == pytest.approx(
        expected_cost("gpt-4o-mini", "openai", input_tokens=70, output_tokens=9), rel=1e-12
    )


async def test_embeddings_async(llm_server: LLMServer, traced) -> None:
    client = openai.AsyncOpenAI(base_url=llm_server.base_url + "/v1", api_key="test", max_retries=0)
    llm_server.script([ScriptedResponse(input_tokens=64)])
    result = await client.embeddings.create(model="text-embedding-ada-002", input=["a", "b"])
    assert len(result.data) == 2
    span = traced.one_llm_span()
    assert span.name == "embeddings text-embedding-ada-002"
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.usage.input_tokens"] == 64
    assert span.attributes["cognocient.cost.usd"] == pytest.approx(
        expected_cost("text-embedding-ada-002", "openai", input_tokens=64), rel=1e-12
    )


def test_anthropic_messages_cache_tokens_are_priced(llm_server: LLMServer, traced) -> None:
    llm_server.script(
        [
            ScriptedResponse(
                input_tokens=5000, cached_tokens=3000, cache_creation_tokens=1000, output_tokens=200
            )
        ]
    )
    client = anthropic.Anthropic(base_url=llm_server.base_url, api_key="test", max_retries=0)
    client.messages.create(
        model="claude-sonnet-4-6", max_tokens=300, messages=[{"role": "user", "content": "hi"}]
    )
    attributes = traced.one_llm_span().attributes
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.usage.input_tokens"] == 5000
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 3000
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 1000
    assert attributes["gen_ai.usage.output_tokens"] == 200
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    cost = expected_cost(
        "claude-sonnet-4-6",
        "anthropic",
        input_tokens=5000,
        cache_read_tokens=3000,
        cache_write_tokens=1000,
        output_tokens=200,
    )
    assert attributes["cognocient.cost.usd"] == pytest.approx(cost, rel=1e-12)


async def test_anthropic_async_stream(llm_server: LLMServer, traced) -> None:
    llm_server.script([ScriptedResponse(input_tokens=900, cached_tokens=500, output_tokens=33)])
    client = anthropic.AsyncAnthropic(base_url=llm_server.base_url, api_key="test", max_retries=0)
    async with client.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
    assert text == "ok"
    attributes = traced.one_llm_span().attributes
    assert attributes["gen_ai.usage.input_tokens"] == 900
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 500
    assert attributes["gen_ai.usage.output_tokens"] == 33
    assert attributes["cognocient.usage.complete"] is True
    assert attributes["cognocient.cost.usd"] == pytest.approx(
        expected_cost(
            "claude-3-5-haiku-latest", "anthropic", input_tokens=900, cache_read_tokens=500, output_tokens=33
        ),
        rel=1e-12,
    )


def test_unknown_model_costs_zero_and_is_flagged(llm_server: LLMServer, traced) -> None:
    openai_client(llm_server).chat.completions.create(
        model="my-finetune-xyz-42", messages=[{"role": "user", "content": "x"}]
    )
    attributes = traced.one_llm_span().attributes
    assert attributes["cognocient.cost.usd"] == 0.0
    assert attributes["cognocient.cost.source"] == "unknown_model"


def test_price_overrides(llm_server: LLMServer, instrument) -> None:
    traced = instrument(price_overrides={"my-llama": {"input": 1, "output": 2}})
    llm_server.script([ScriptedResponse(input_tokens=1_000_000, output_tokens=500_000)])
    openai_client(llm_server).chat.completions.create(
        model="my-llama", messages=[{"role": "user", "content": "x"}]
    )
    attributes = traced.one_llm_span().attributes
    assert attributes["cognocient.cost.usd"] == pytest.approx(2.0)
    assert attributes["cognocient.cost.source"] == "price_table"


def test_steps_count_calls_within_the_run(llm_server: LLMServer, traced) -> None:
    client = openai_client(llm_server)
    with cognocient_otel.run("looper") as run:
        for _ in range(3):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "same"}]
            )
    assert run.steps == 3
    spans = sorted(traced.llm_spans(), key=lambda s: s.start_time)
    assert [s.attributes["cognocient.step"] for s in spans] == [1, 2, 3]
    assert len({s.attributes["cognocient.request.fingerprint"] for s in spans}) == 1
