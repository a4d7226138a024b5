"""LLM calls made with plain httpx and httpx2 clients (what openai 2.x and agent frameworks do),
sync and async, streaming and not; the HTTP span of opentelemetry-instrumentation-httpx is a child
of ours; hand-tagged X-Cost-Run-ID calls are attributed without run()."""

from __future__ import annotations

import json

import httpx
import httpx2
import pytest
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

import cognocient_otel
from cognocient_otel.testing import LLMServer, ScriptedResponse

MODULES = {"httpx": httpx, "httpx2": httpx2}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 30}
STREAM_CHAT = dict(CHAT, stream=True, stream_options={"include_usage": True})
ANTHROPIC = {
    "model": "claude-3-5-haiku-latest",
    "max_tokens": 40,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize("module_name", MODULES)
def test_sync_post_and_stream(module_name: str, llm_server: LLMServer, traced) -> None:
    module = MODULES[module_name]
    llm_server.script(
        [
            ScriptedResponse(input_tokens=21, output_tokens=7),
            ScriptedResponse(input_tokens=5, output_tokens=3),
        ]
    )
    with (
        cognocient_otel.run("raw-agent", feature="raw") as run,
        module.Client(base_url=llm_server.base_url) as client,
    ):
        reply = client.post("/v1/chat/completions", json=CHAT)
        assert reply.json()["choices"][0]["message"]["content"] == "ok"
        with client.stream("POST", "/v1/messages", json=dict(ANTHROPIC, stream=True)) as streamed:
            lines = [line for line in streamed.iter_lines() if line.startswith("data:")]
    assert any('"message_stop"' in line for line in lines)
    chat, messages = sorted(traced.llm_spans(), key=lambda s: s.start_time)
    assert chat.attributes["gen_ai.usage.input_tokens"] == 21
    assert chat.attributes["gen_ai.usage.output_tokens"] == 7
    assert messages.attributes["gen_ai.provider.name"] == "anthropic"
    assert messages.attributes["gen_ai.usage.input_tokens"] == 5
    assert messages.attributes["gen_ai.usage.output_tokens"] == 3
    assert messages.attributes["cognocient.usage.complete"] is True
    for span in (chat, messages):
        assert span.attributes["cognocient.run.id"] == run.id
    first, second = llm_server.requests
    assert first.headers["x-cost-run-id"] == run.id and first.headers["x-cost-feature"] == "raw"
    assert second.headers["x-cost-run-id"] == run.id


@pytest.mark.parametrize("module_name", MODULES)
async def test_async_post_and_stream(module_name: str, llm_server: LLMServer, traced) -> None:
    module = MODULES[module_name]
    llm_server.script(
        [
            ScriptedResponse(input_tokens=11, output_tokens=4),
            ScriptedResponse(input_tokens=8, output_tokens=6),
        ]
    )
    async with (
        cognocient_otel.run("raw-async") as run,
        module.AsyncClient(base_url=llm_server.base_url) as client,
    ):
        reply = await client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": "q"})
        assert reply.json()["usage"]["input_tokens"] == 11
        async with client.stream("POST", "/v1/chat/completions", json=STREAM_CHAT) as streamed:
            body = b"".join([chunk async for chunk in streamed.aiter_bytes()])
    assert body.rstrip().endswith(b"data: [DONE]")
    responses, chat = sorted(traced.llm_spans(), key=lambda s: s.start_time)
    assert responses.attributes["gen_ai.usage.input_tokens"] == 11
    assert chat.attributes["gen_ai.usage.output_tokens"] == 6
    assert chat.attributes["cognocient.usage.complete"] is True
    assert {responses.attributes["cognocient.run.id"], chat.attributes["cognocient.run.id"]} == {run.id}


@pytest.mark.parametrize("module_name", MODULES)
@pytest.mark.parametrize("order", ["http-first", "ours-first"])
def test_http_client_span_is_a_child_of_the_llm_span(
    module_name: str, order: str, llm_server: LLMServer, instrument, make_traced
) -> None:
    http_instrumentor = HTTPXClientInstrumentor() if module_name == "httpx" else HTTPX2ClientInstrumentor()
    traced = make_traced()
    if order == "ours-first":
        instrument(traced)
    http_instrumentor.instrument(tracer_provider=traced.provider)
    try:
        if order == "http-first":
            instrument(traced)
        with (
            cognocient_otel.run("nesting"),
            MODULES[module_name].Client(base_url=llm_server.base_url) as client,
        ):
            client.post("/v1/chat/completions", json=CHAT)
    finally:
        http_instrumentor.uninstrument()
    finished = traced.spans()
    llm = next(s for s in finished if s.name == "chat gpt-4o-mini")
    http = next(s for s in finished if s.name == "POST")
    assert http.parent.span_id == llm.context.span_id
    assert http.attributes["cognocient.run.id"] == llm.attributes["cognocient.run.id"]
    # The request carries the HTTP span's trace context, as opentelemetry-instrumentation-httpx sets it.
    assert f"{http.context.span_id:016x}" in llm_server.requests[0].headers["traceparent"]


def test_hand_tagged_calls_are_attributed_without_run(llm_server: LLMServer, traced) -> None:
    headers = {"X-Cost-Run-ID": "run-by-hand-1", "X-Cost-Feature": "invoices"}
    with httpx.Client(base_url=llm_server.base_url, headers=headers) as client:
        client.post("/v1/chat/completions", json=CHAT)
        client.post("/v1/chat/completions", json=CHAT)
    spans = sorted(traced.llm_spans(), key=lambda s: s.start_time)
    assert [s.attributes["cognocient.run.id"] for s in spans] == ["run-by-hand-1"] * 2
    assert [s.attributes["cognocient.feature"] for s in spans] == ["invoices"] * 2
    assert [s.attributes["cognocient.step"] for s in spans] == [1, 2]
    assert llm_server.requests[0].headers["x-cost-run-id"] == "run-by-hand-1"


def test_headers_can_be_turned_off(llm_server: LLMServer, instrument) -> None:
    traced = instrument(headers=False)
    with cognocient_otel.run("quiet") as run, httpx.Client(base_url=llm_server.base_url) as client:
        client.post("/v1/chat/completions", json=CHAT)
    assert "x-cost-run-id" not in llm_server.requests[0].headers
    assert traced.one_llm_span().attributes["cognocient.run.id"] == run.id


def test_non_llm_requests_are_not_llm_spans_but_carry_the_run(llm_server: LLMServer, traced) -> None:
    with (
        cognocient_otel.run("caller", feature="ops") as run,
        httpx.Client(base_url=llm_server.base_url) as client,
    ):
        client.post("/v1/chat/completions", content=b"not json", headers={"content-type": "application/json"})
        client.post("/v1/threads/t1/messages", json={"role": "user", "content": "no model here"})
        client.get("/v1/models")
    assert traced.llm_spans() == []
    for request in llm_server.requests:
        assert f"cognocient.run.id={run.id}" in request.headers["baggage"]
        assert "cognocient.feature=ops" in request.headers["baggage"]


def test_self_hosted_path_prefix_is_recognised(traced) -> None:
    with LLMServer() as server, httpx.Client(base_url=server.base_url) as client:
        # vLLM / LiteLLM style mount points are recognised by the path suffix.
        reply = client.post(
            "/proxy/openai/v1/chat/completions", json=dict(CHAT, model="llama-3.1-8b-instruct")
        )
        assert json.loads(reply.content)["model"] == "llama-3.1-8b-instruct"
    span = traced.one_llm_span()
    assert span.name == "chat llama-3.1-8b-instruct"
    assert span.attributes["gen_ai.provider.name"] == "openai"


def test_configured_provider_by_host(llm_server: LLMServer, instrument) -> None:
    port = int(llm_server.base_url.rsplit(":", 1)[1])
    traced = instrument(providers={f"127.0.0.1:{port}": "anthropic"})
    with httpx.Client(base_url=llm_server.base_url) as client:
        client.post("/v1/chat/completions", json=dict(CHAT, model="claude-3-5-haiku-latest"))
    assert traced.one_llm_span().attributes["gen_ai.provider.name"] == "anthropic"


def test_uninstrument_stops_tracing(llm_server: LLMServer, instrument) -> None:
    traced = instrument()
    cognocient_otel.uninstrument()
    with httpx.Client(base_url=llm_server.base_url) as client:
        client.post("/v1/chat/completions", json=CHAT)
    assert traced.spans() == []
    assert "x-cost-run-id" not in llm_server.requests[0].headers
