"""Reading request and answer JSON on the per-call path: the same acceptance as `json.loads`,
a fingerprint that depends on the model and the prompt members only, and the SSE search for
the last finish reason however many chunks carry `"finish_reason": null`."""

from __future__ import annotations

import json

import pytest

from cognocient_otel.llm import requests as requests_module
from cognocient_otel.llm.jsonio import dumps_compact, loads_object
from cognocient_otel.llm.requests import read_request, recognise
from cognocient_otel.llm.sse import SseReader
from cognocient_otel.llm.usage import ResponseSummary

MESSAGES = [{"role": "user", "content": "Summarise the report, please — ünïcode too"}]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": NaN, "b": -Infinity}',
        b'{"a": 123456789012345678901234567890}',
        b'{"a": "\\ud800"}',  # a lone surrogate: pydantic-core refuses it, json.loads takes it
        b' {"a": [1, {"b": null}]} ',
        '{"a": "h\u00e9llo"}'.encode(),
    ],
)
def test_objects_parse_as_json_loads_parses_them(raw: bytes) -> None:
    assert repr(loads_object(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize(
    "raw", [b'{"a": 1} x', b'{"a": "x\x01"}', b"<html>", b"[1, 2]", b'"text"', b"", b"{"]
)
def test_non_objects_and_invalid_json_give_none(raw: bytes) -> None:
    assert loads_object(raw) is None


def test_compact_dumps_are_deterministic_and_survive_lone_surrogates() -> None:
    assert dumps_compact(MESSAGES) == dumps_compact(json.loads(json.dumps(MESSAGES)))
    assert json.loads(dumps_compact(MESSAGES)) == MESSAGES
    assert dumps_compact(["\ud800"]) == b'["\\ud800"]'


def body(**fields: object) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


def test_request_fields_are_read() -> None:
    request = recognise(
        "POST",
        "/v1/chat/completions",
        body(model="gpt-4o-mini", messages=MESSAGES, max_tokens=30, stream=True),
    )
    assert request is not None
    assert (request.api, request.operation, request.model) == ("openai.chat", "chat", "gpt-4o-mini")
    assert (request.stream, request.max_output_tokens, len(request.fingerprint)) == (True, 30, 16)
    # max_tokens that is a boolean or not positive is ignored; the next field is used
    request = read_request("openai.chat", "chat", body(model="m", max_tokens=True, max_completion_tokens=7))
    assert request is not None and request.max_output_tokens == 7
    request = read_request("openai.responses", "chat", body(model="m", max_output_tokens=0, input="hi"))
    assert request is not None and request.max_output_tokens is None and request.stream is False


@pytest.mark.parametrize(
    "raw",
    [b'{"messages": []}', b'{"model": ""}', b'{"model": 5}', b'{"model": "m"} trailing', b" {}", b"[]", b""],
)
def test_bodies_without_a_model_are_not_llm_calls(raw: bytes) -> None:
    assert read_request("openai.chat", "chat", raw) is None


def test_a_body_json_loads_accepts_is_recognised_even_where_pydantic_core_refuses_it() -> None:
    raw = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\udc00"}]}'
    request = read_request("openai.chat", "chat", raw)
    assert request is not None and request.model == "gpt-4o-mini"


def test_fingerprint_depends_on_model_and_prompt_members_only() -> None:
    def fingerprint(**fields: object) -> str:
        request = read_request("openai.chat", "chat", body(**fields))
        assert request is not None
        return request.fingerprint

    same = fingerprint(model="gpt-4o-mini", messages=MESSAGES)
    assert (
        fingerprint(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5, stream=True, temperature=0) == same
    )
    # whitespace as sent does not matter: the parsed values are hashed
    request = read_request(
        "openai.chat", "chat", json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode()
    )
    assert request is not None and request.fingerprint == same
    assert fingerprint(model="gpt-4o", messages=MESSAGES) != same
    assert (
        fingerprint(model="gpt-4o-mini", messages=[*MESSAGES, {"role": "user", "content": "again"}]) != same
    )
    assert fingerprint(model="gpt-4o-mini", messages=MESSAGES, system="be brief") != same
    # the same text under another prompt member is another request
    assert fingerprint(model="m", input="hello") != fingerprint(model="m", prompt="hello")


def sse(events: list[dict[str, object]]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"
    )


def chunk(finish_reason: str | None, **extra: object) -> dict[str, object]:
    return {
        "id": "c1",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
        **extra,
    }


@pytest.mark.parametrize("nulls_after", [0, 3, 40])
def test_the_last_finish_reason_is_found_behind_any_number_of_null_ones(nulls_after: int) -> None:
    # Some servers keep sending chunks (with "finish_reason": null) after the finishing one.
    events = [chunk(None), chunk(None), chunk("length")] + [chunk(None) for _ in range(nulls_after)]
    events.append(
        {
            "id": "c1",
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }
    )
    summary = ResponseSummary()
    reader = SseReader("openai.chat", summary)
    reader.feed(sse(events))
    reader.finish()
    assert summary.finish_reasons == ["length"]
    assert (summary.input_tokens, summary.output_tokens, summary.usage_complete) == (3, 4, True)


def test_a_body_too_large_to_read_is_said_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests_module, "_told_of_large_bodies", False)
    large = body(model="m", messages=[{"role": "user", "content": "x" * (64 * 1024 * 1024)}])
    assert read_request("openai.chat", "chat", large) is None
    assert read_request("openai.chat", "chat", large) is None
    told = [record for record in caplog.records if "not traced, costed or guarded" in record.getMessage()]
    assert len(told) == 1


def test_a_body_as_large_as_providers_take_is_read() -> None:
    request = read_request("openai.chat", "chat", body(model="m", messages=[{"content": "x" * (50 * 10**6)}]))
    assert request is not None and request.body_size > 50 * 10**6


def test_counts_and_choices_are_read_within_bounds() -> None:
    request = read_request("openai.chat", "chat", body(model="m", max_tokens=10**30, n=8))
    assert request is not None and request.max_output_tokens == 10**12 and request.choices == 8
    completions = body(model="m", prompt="p", n=2, best_of=5)
    request = read_request("openai.completions", "text_completion", completions)
    assert request is not None and request.choices == 5
    request = read_request("openai.chat", "chat", b'\n  {"model": "m", "n": true}')  # white space first
    assert request is not None and request.choices == 1 and not request.cache_writes
    anthropic_body = body(model="claude", max_tokens=5, n=9, system=[{"type": "text", "text": "s",
                          "cache_control": {"type": "ephemeral"}}])
    request = read_request("anthropic.messages", "chat", anthropic_body)
    assert request is not None and request.cache_writes == "5m" and request.choices == 1  # no n there
    one_hour = anthropic_body.replace(b'"ephemeral"', b'"ephemeral","ttl":"1h"')
    request = read_request("anthropic.messages", "chat", one_hour)
    assert request is not None and request.cache_writes == "1h"


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 10**30, "completion_tokens": 5, "cost": "1e400"},
    {"prompt_tokens": 10**12 + 1, "completion_tokens": 5, "cost": 10**420},
    {"prompt_tokens": -3, "completion_tokens": 5, "cost": 1_000_001},
])
def test_counts_and_costs_no_answer_could_have_are_not_taken(usage: dict[str, object]) -> None:
    summary = ResponseSummary()
    summary.read_body("openai.chat", {"id": "c", "model": "m", "choices": [], "usage": usage})
    assert (summary.input_tokens, summary.output_tokens, summary.provider_cost_usd) == (0, 5, None)


def test_a_long_stream_in_small_chunks_keeps_a_bounded_tail_and_its_usage() -> None:
    summary = ResponseSummary()
    reader = SseReader("openai.chat", summary)
    filler = sse([chunk(None)])
    reader.feed_all([filler] * (9 * 1024 * 1024 // len(filler)))  # past what is kept whole
    last = sse([chunk("stop"), {"id": "c1", "model": "m", "choices": [],
                                "usage": {"prompt_tokens": 3, "completion_tokens": 4}}])
    for index in range(0, len(last), 7):  # the end in 7-byte chunks
        reader.feed(last[index:index + 7])
    assert reader._tail_size == sum(map(len, reader._tail)) <= 256 * 1024 + len(filler)
    reader.finish()
    assert (summary.input_tokens, summary.output_tokens, summary.usage_complete) == (3, 4, True)


def test_usage_null_in_every_chunk_is_not_taken_for_the_usage() -> None:
    events = [chunk(None, usage=None), chunk("stop", usage=None)] + [
        chunk(None, usage=None) for _ in range(20)
    ]
    summary = ResponseSummary()
    reader = SseReader("openai.chat", summary)
    reader.feed(sse(events))
    reader.finish()
    assert summary.finish_reasons == ["stop"] and not summary.usage_complete


def test_content_headers_are_read_in_any_case_and_repeated_ones_joined() -> None:
    import httpx2

    from cognocient_otel.llm.headers import content_headers as _content_headers

    headers = httpx2.Headers(
        [(b"Content-Type", b"text/event-stream"), (b"x-request-id", b"1"), (b"CONTENT-ENCODING", b"gzip")]
    )
    assert _content_headers(headers) == ("text/event-stream", "gzip")
    headers = httpx2.Headers([(b"content-encoding", b"gzip"), (b"content-encoding", b"identity")])
    assert _content_headers(headers) == ("", headers.get("content-encoding"))
