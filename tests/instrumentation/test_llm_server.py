"""The fake LLM server answers the real SDKs the way the providers do."""

from __future__ import annotations

import concurrent.futures

import anthropic
import openai
import pytest

from cognocient_otel.testing import LLMServer, ScriptedResponse


@pytest.fixture
def server():
    with LLMServer() as running:
        yield running


def test_openai_chat_default_answer_estimates_usage(server: LLMServer) -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 400}], max_tokens=7
    )
    assert reply.model == "gpt-4o-mini"
    assert reply.usage.prompt_tokens == 100
    assert reply.usage.completion_tokens == 7
    assert server.request_count("/v1/chat/completions") == 1
    assert server.requests[0].json["model"] == "gpt-4o-mini"
    assert server.requests[0].headers["authorization"] == "Bearer test"


def test_openai_chat_stream_reports_usage_last(server: LLMServer) -> None:
    server.script([ScriptedResponse(input_tokens=11, output_tokens=5, cached_tokens=3, text="hello world")])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello world"
    assert chunks[-1].usage.prompt_tokens == 11
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 3


def test_openai_responses_and_embeddings(server: LLMServer) -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
    response = client.responses.create(model="gpt-4o-mini", input="tell me", max_output_tokens=9)
    assert response.output_text == "ok"
    assert response.usage.output_tokens == 9
    with client.responses.stream(model="gpt-4o-mini", input="tell me") as stream:
        final = stream.get_final_response()
    assert final.usage.output_tokens == 20
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["a" * 40, "b"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    assert embedding.usage.prompt_tokens == 10


def test_anthropic_messages_and_stream(server: LLMServer) -> None:
    client = anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)
    server.script(
        [ScriptedResponse(input_tokens=100, cached_tokens=60, cache_creation_tokens=10, output_tokens=4)]
    )
    message = client.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.usage.input_tokens == 30
    assert message.usage.cache_read_input_tokens == 60
    assert message.usage.cache_creation_input_tokens == 10
    with client.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=12, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "ok"
    assert final.usage.output_tokens == 12


def test_scripted_errors_use_the_provider_shapes(server: LLMServer) -> None:
    server.script([ScriptedResponse(status=429, retry_after=2), ScriptedResponse(status=500)])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers["retry-after"] == "2"
    anthropic_client = anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as caught_anthropic:
        anthropic_client.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught_anthropic.value.body["error"]["type"] == "api_error"


def test_model_override_and_concurrency() -> None:
    with LLMServer(model_override="gpt-4o-2024-08-06") as server:
        server.script([ScriptedResponse(delay_seconds=0.3) for _ in range(8)])
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)

        def call(_: int) -> str:
            return client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            ).model

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            models = list(pool.map(call, range(8)))
        assert models == ["gpt-4o-2024-08-06"] * 8
        assert server.request_count() == 8
