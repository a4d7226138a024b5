"""Streams read partly or not at all, provider errors, broken bodies and our own bugs: the
application's request and response stay exactly as without instrumentation."""

from __future__ import annotations

import gzip
import json

import httpx
import httpx2
import openai
import pytest

import cognocient_otel
from cognocient_otel import _failures
from cognocient_otel.llm import usage as usage_module
from cognocient_otel.llm.sse import SseReader
from cognocient_otel.llm.usage import ResponseSummary
from cognocient_otel.testing import LLMServer, ScriptedResponse

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 50}


def client_for(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)


def test_stream_closed_early_records_what_was_seen(llm_server: LLMServer, traced) -> None:
    llm_server.script([ScriptedResponse(output_tokens=40, text="a long answer that keeps going")])
    with cognocient_otel.run("impatient", budget_usd=1) as run:
        stream = client_for(llm_server).chat.completions.create(
            model="gpt-4o-mini",
            messages=CHAT["messages"],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=40,
        )
        first = next(iter(stream))
        stream.close()
    assert first.model == "gpt-4o-mini"
    span = traced.one_llm_span()
    assert span.end_time is not None
    assert span.attributes["cognocient.usage.complete"] is False
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    # Usage unknown: the reservation is kept as the call's cost, never less.
    assert run.cost_usd > 0 and run.ledger.reserved == 0


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_stream_never_read_still_ends_its_span(module, llm_server: LLMServer, traced) -> None:
    with (
        module.Client(base_url=llm_server.base_url) as client,
        client.stream("POST", "/v1/chat/completions", json=dict(CHAT, stream=True)) as response,
    ):
        assert response.status_code == 200
    span = traced.one_llm_span()
    assert span.attributes["cognocient.usage.complete"] is False


def test_stream_without_usage_option_says_usage_is_incomplete(llm_server: LLMServer, traced) -> None:
    chunks = list(
        client_for(llm_server).chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], stream=True
        )
    )
    assert chunks
    attributes = traced.one_llm_span().attributes
    assert attributes["cognocient.usage.complete"] is False
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.parametrize("status,error", [(429, openai.RateLimitError), (500, openai.InternalServerError)])
@pytest.mark.parametrize("stream", [False, True])
def test_provider_errors_are_recorded_and_raised_unchanged(
    status: int, error: type, stream: bool, llm_server: LLMServer, traced
) -> None:
    llm_server.script([ScriptedResponse(status=status, retry_after=1)])
    with cognocient_otel.run("unlucky", budget_usd=1) as run, pytest.raises(error) as raised:
        client_for(llm_server).chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], stream=stream
        )
    assert raised.value.status_code == status
    assert raised.value.body["message"] == f"scripted error {status}"
    span = traced.one_llm_span()
    assert span.attributes["error.type"] == str(status)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["cognocient.cost.usd"] == 0.0
    assert run.cost_usd == 0 and run.ledger.reserved == 0


def test_connection_error_ends_the_span_and_releases_the_reservation(traced) -> None:
    server = LLMServer().start()
    base_url = server.base_url
    server.stop()
    with (
        cognocient_otel.run("offline", budget_usd=1) as run,
        httpx.Client(base_url=base_url) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.post("/v1/chat/completions", json=CHAT)
    span = traced.one_llm_span()
    assert span.attributes["error.type"] == "ConnectError"
    assert run.ledger.reserved == 0 and run.cost_usd == 0


def _mock_client(body: bytes, headers: dict[str, str]) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers=headers)

    return httpx.Client(transport=httpx.MockTransport(answer), base_url="https://api.openai.com")


def test_unparseable_answer_reaches_the_application_untouched(traced) -> None:
    with _mock_client(b"<html>gateway says hi</html>", {"content-type": "text/html"}) as client:
        reply = client.post("/v1/chat/completions", json=CHAT)
    assert reply.text == "<html>gateway says hi</html>"
    span = traced.one_llm_span()
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert span.attributes["cognocient.usage.complete"] is False


def test_gzip_encoded_stream_is_read(traced) -> None:
    events = [
        {"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
        {
            "id": "c1",
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        },
    ]
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    with (
        _mock_client(gzip.compress(sse), headers) as client,
        client.stream("POST", "/v1/chat/completions", json=dict(CHAT, stream=True)) as response,
    ):
        assert b"".join(response.iter_bytes()) == sse
    attributes = traced.one_llm_span().attributes
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["cognocient.usage.complete"] is True


def test_provider_reported_cost_is_used(traced) -> None:
    body = {
        "id": "x",
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.0125},
    }
    with _mock_client(json.dumps(body).encode(), {"content-type": "application/json"}) as client:
        client.post("/v1/chat/completions", json=CHAT)
    attributes = traced.one_llm_span().attributes
    assert attributes["cognocient.cost.source"] == "provider"
    assert attributes["cognocient.cost.usd"] == 0.0125


def test_a_bug_of_ours_never_breaks_the_call(llm_server: LLMServer, traced, monkeypatch, caplog) -> None:
    def broken(self, api, body):
        raise KeyError("our bug")

    monkeypatch.setattr(usage_module.ResponseSummary, "read_body", broken)
    monkeypatch.setattr(_failures, "_logged_failures", set())
    reply = client_for(llm_server).chat.completions.create(model="gpt-4o-mini", messages=CHAT["messages"])
    assert reply.choices[0].message.content == "ok"
    span = traced.spans()[0]
    assert span.end_time is not None
    assert "reading an LLM answer failed" in caplog.text


def test_usage_parsing_handles_anthropic_exclusive_cache_counts() -> None:
    summary = usage_module.ResponseSummary()
    summary.read_body(
        "anthropic.messages",
        {"model": "claude", "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 5}},
    )
    assert (summary.input_tokens, summary.cache_read_tokens, summary.output_tokens) == (100, 90, 5)
    assert summary.usage_complete


def test_sse_reader_handles_split_chunks_and_crlf() -> None:
    summary = usage_module.ResponseSummary()
    reader = SseReader("anthropic.messages", summary)
    raw = (
        b'event: message_start\r\ndata: {"type":"message_start","message":{"model":"claude-x","id":"m1",'
        b'"usage":{"input_tokens":7,"output_tokens":1}}}\r\n\r\n'
        b'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":12}}\r\n\r\n'
    )
    for i in range(0, len(raw), 7):
        reader.feed(raw[i : i + 7])
    reader.finish()
    assert (summary.response_model, summary.input_tokens, summary.output_tokens) == ("claude-x", 7, 12)
    assert summary.usage_complete and summary.finish_reasons == ["end_turn"]


class _RecordingCall:
    """Stands in for an LLMCall: the observer hands it the summary it read."""

    class request:
        api = "openai.chat"

    def __init__(self) -> None:
        self.finished: list[tuple[object, bool]] = []

    def finish(self, summary, *, status_code: int, streamed: bool) -> None:
        self.finished.append((summary, streamed))


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("encoding", ["", "gzip"])
@pytest.mark.parametrize("keep_bytes", [None, 3_000])
def test_long_streams_read_in_batches_give_the_chunk_by_chunk_answer(
    module, encoding, keep_bytes, monkeypatch
) -> None:
    from cognocient_otel.llm import sse as sse_module
    from cognocient_otel.llm.streams import FLUSH_EVERY, StreamObserver, stream_classes

    if keep_bytes is not None:  # past it, only the head and a bounded tail are kept
        monkeypatch.setattr(sse_module, "_KEEP_BYTES", keep_bytes)
        monkeypatch.setattr(sse_module, "_TAIL_BYTES", 1_000)
    events = [
        {"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": f"w{i}"}}]}
        for i in range(5 * FLUSH_EVERY)
    ]
    last = {"id": "c1", "model": "gpt-4o-mini"}
    events.append(dict(last, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(dict(last, choices=[], usage={"prompt_tokens": 9, "completion_tokens": 4}))
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    expected = ResponseSummary()
    reader = SseReader("openai.chat", expected)
    for i in range(0, len(raw), 50):
        reader.feed(raw[i : i + 50])
    reader.finish()

    body = gzip.compress(raw) if encoding else raw
    chunks = [body[i : i + 50] for i in range(0, len(body), 50)]
    call = _RecordingCall()
    observer = StreamObserver(
        call, content_type="text/event-stream", content_encoding=encoding, status_code=200  # type: ignore[arg-type]
    )
    traced_stream, _ = stream_classes(module)
    assert b"".join(traced_stream(iter(chunks), observer)) == body
    [(summary, streamed)] = call.finished
    assert streamed
    compared = ("response_model", "response_id", "finish_reasons", "input_tokens", "output_tokens")
    for name in compared:
        assert getattr(summary, name) == getattr(expected, name), name
    assert summary.usage_complete and expected.usage_complete and summary.finish_reasons == ["stop"]


def test_a_stream_closed_between_batches_reads_what_was_pending() -> None:
    from cognocient_otel.llm.streams import FLUSH_EVERY, StreamObserver, stream_classes

    first = {"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "a"}}]}
    chunks = [b"data: " + json.dumps(first).encode() + b"\n\n"] * (FLUSH_EVERY + 3)
    call = _RecordingCall()
    observer = StreamObserver(
        call, content_type="text/event-stream", content_encoding="", status_code=200  # type: ignore[arg-type]
    )
    stream = stream_classes(httpx2)[0]((chunk for chunk in chunks), observer)
    iterator = iter(stream)
    for _ in range(FLUSH_EVERY + 2):
        next(iterator)
    stream.close()
    [(summary, _)] = call.finished
    assert summary.response_model == "gpt-4o-mini" and not summary.usage_complete
