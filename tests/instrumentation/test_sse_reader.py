"""The SSE reader finds model, finish reason and usage in streams cut at any byte."""

from __future__ import annotations

import json

from cognocient_otel.llm import sse
from cognocient_otel.llm.sse import SseReader
from cognocient_otel.llm.usage import ResponseSummary
from cognocient_otel.testing import llm_payloads
from cognocient_otel.testing.llm_payloads import Answer

ANSWER = Answer(
    "gpt-4o-mini",
    input_tokens=30,
    output_tokens=12,
    cached_tokens=10,
    reasoning_tokens=4,
    cache_creation_tokens=0,
    text="some streamed text",
)


def encode(events: list[tuple[str | None, object]]) -> bytes:
    frames = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        frames.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return "".join(frames).encode()


def read(api: str, raw: bytes, piece: int) -> ResponseSummary:
    summary = ResponseSummary()
    reader = SseReader(api, summary)
    for i in range(0, len(raw), piece):
        reader.feed(raw[i : i + piece])
    reader.finish()
    return summary


def test_chat_stream_in_any_pieces() -> None:
    raw = encode(llm_payloads.openai_chat_stream(ANSWER, include_usage=True))
    for piece in (1, 5, 64, len(raw)):
        summary = read("openai.chat", raw, piece)
        assert summary.response_model == "gpt-4o-mini"
        assert (summary.input_tokens, summary.output_tokens) == (30, 12)
        assert (summary.cache_read_tokens, summary.reasoning_tokens) == (10, 4)
        assert summary.finish_reasons == ["stop"] and summary.usage_complete


def test_chat_stream_cut_before_usage_is_incomplete() -> None:
    raw = encode(llm_payloads.openai_chat_stream(ANSWER, include_usage=True))
    cut = raw[: raw.find(b'"usage"') - 20]
    summary = read("openai.chat", cut, 7)
    assert summary.response_model == "gpt-4o-mini"
    assert not summary.usage_complete and summary.output_tokens == 0


def test_responses_stream() -> None:
    raw = encode(llm_payloads.openai_response_stream(ANSWER))
    summary = read("openai.responses", raw, 11)
    assert (summary.input_tokens, summary.output_tokens, summary.cache_read_tokens) == (30, 12, 10)
    assert summary.response_id.startswith("resp_") and summary.usage_complete


def test_error_event_is_recorded() -> None:
    raw = encode(
        [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {"model": "claude-x", "usage": {"input_tokens": 3, "output_tokens": 1}},
                },
            ),
            ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
        ]
    )
    summary = read("anthropic.messages", raw, 13)
    assert summary.error_type == "overloaded_error"
    assert summary.input_tokens == 3 and not summary.usage_complete


def test_long_stream_keeps_head_and_tail(monkeypatch) -> None:
    monkeypatch.setattr(sse, "_KEEP_BYTES", 2_000)
    monkeypatch.setattr(sse, "_TAIL_BYTES", 1_000)
    long_answer = Answer("gpt-4o-mini", 30, 12, 0, 0, 0, "x" * 20_000)
    raw = encode(llm_payloads.openai_chat_stream(long_answer, include_usage=True))
    summary = read("openai.chat", raw, 100)
    assert summary.response_model == "gpt-4o-mini" and summary.output_tokens == 12 and summary.usage_complete


def chat_chunk(
    choices: list[dict], *, model: str = "gpt-4o-mini", response_id: str = "chatcmpl-1", **extra: object
) -> dict:
    return {"id": response_id, "object": "chat.completion.chunk", "model": model, "choices": choices, **extra}


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_chat_identity_comes_from_the_first_event_when_the_usage_event_lacks_it() -> None:
    raw = encode([
        (None, chat_chunk([{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}])),
        (None, chat_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
        (None, {"choices": [], "usage": USAGE}),
        (None, "[DONE]"),
    ])
    summary = read("openai.chat", raw, len(raw))
    assert (summary.response_model, summary.response_id) == ("gpt-4o-mini", "chatcmpl-1")
    assert summary.usage_complete and summary.input_tokens == 7


def test_chat_identity_skips_an_anonymous_first_event() -> None:
    # Azure OpenAI opens with a prompt-filter chunk naming no model and no id.
    raw = encode([
        (None, chat_chunk([], model="", response_id="", prompt_filter_results=[])),
        (None, chat_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], model="gpt-4o-2024-08-06")),
        (None, chat_chunk([], model="gpt-4o-2024-08-06", usage=USAGE)),
    ])
    summary = read("openai.chat", raw, 9)
    assert (summary.response_model, summary.response_id) == ("gpt-4o-2024-08-06", "chatcmpl-1")


def test_chat_finish_reasons_read_without_parsing_equal_the_parsed_ones() -> None:
    cases = [
        ["stop", "length"],
        ["tool_calls"],
        # Not plain strings everywhere: the event is parsed instead.
        ["stop", None],
        ['odd "quoted" reason'],
        ["caf\u00e9"],
    ]
    for reasons in cases:
        choices = [{"index": i, "delta": {}, "finish_reason": reason} for i, reason in enumerate(reasons)]
        raw = encode([(None, chat_chunk(choices)), (None, chat_chunk([], usage=USAGE))])
        expected = [c["finish_reason"] for c in choices if isinstance(c["finish_reason"], str)]
        for piece in (3, len(raw)):
            assert read("openai.chat", raw, piece).finish_reasons == expected, choices
