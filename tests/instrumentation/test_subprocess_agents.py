"""Agents in their own interpreter: openai 2.x over httpx, and `opentelemetry-instrument`
auto-instrumentation of a script with no tracing code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from cognocient_otel.testing import LLMServer

AGENTS = Path(__file__).with_name("agents")


def openai2_python() -> str:
    python = os.environ.get("COGNOCIENT_OPENAI2_PYTHON")
    if not python or not Path(python).exists():
        pytest.fail(
            "COGNOCIENT_OPENAI2_PYTHON is not set to an interpreter with openai 2.x: run the suite with "
            "scripts/test, which creates .venvs/openai2 and exports it"
        )
    return python


def test_openai2_sdk_over_httpx_is_traced_costed_and_guarded(llm_server: LLMServer) -> None:
    result = subprocess.run(
        [openai2_python(), str(AGENTS / "openai2_agent.py"), llm_server.base_url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["openai_version"].startswith("2.")
    assert "httpx" in report["patched_modules"]
    assert report["blocked"] == "BudgetExceeded"
    spans = report["spans"]
    llm = [s for s in spans if s["kind"] == "CLIENT"]
    by_name = {}
    for span in llm:
        by_name.setdefault(span["name"], []).append(span)
    assert len(by_name["chat gpt-4o-mini"]) == 5  # 4 chat completions + 1 responses call
    assert len(by_name["embeddings text-embedding-3-small"]) == 1
    assert len(by_name["chat gpt-4o"]) == 1  # the blocked call, not retried
    assert by_name["chat gpt-4o"][0]["attributes"]["cognocient.budget.decision"] == "blocked"
    root = next(s for s in spans if s["name"] == "invoke_agent openai2-agent")
    in_run = [s for s in llm if s["attributes"].get("cognocient.run.id") == report["run_id"]]
    assert len(in_run) == 6
    assert all(s["parent"] == root["span_id"] for s in in_run)
    chats = sorted(by_name["chat gpt-4o-mini"], key=lambda s: s["attributes"]["cognocient.step"])
    # Steps: chat, stream, responses, (embeddings = step 4), async chat, async stream.
    assert [s["attributes"]["cognocient.step"] for s in chats] == [1, 2, 3, 5, 6]
    assert [s["attributes"]["gen_ai.usage.output_tokens"] for s in chats] == [13, 14, 12, 15, 16]
    assert [s["attributes"].get("gen_ai.request.stream", False) for s in chats] == [
        False,
        True,
        False,
        False,
        True,
    ]
    for chat in chats:
        attributes = chat["attributes"]
        if attributes.get("gen_ai.request.stream"):
            assert attributes["cognocient.usage.complete"] is True
        else:  # a read body with its usage: nothing to flag
            assert "cognocient.usage.complete" not in attributes
        expected = calc_price(
            Usage(
                input_tokens=attributes["gen_ai.usage.input_tokens"],
                output_tokens=attributes["gen_ai.usage.output_tokens"],
            ),
            "gpt-4o-mini",
            provider_id="openai",
        ).total_price
        assert attributes["cognocient.cost.usd"] == pytest.approx(float(expected), rel=1e-12)
    # Every request of the run carried the run headers.
    assert {r.headers.get("x-cost-run-id") for r in llm_server.requests} == {report["run_id"]}
    assert {r.headers["user-agent"].split("/Python ")[1][:2] for r in llm_server.requests} == {"2."}


def test_opentelemetry_instrument_traces_a_script_without_code_changes(llm_server: LLMServer) -> None:
    bin_dir = Path(sys.executable).parent
    env = dict(
        os.environ,
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME="auto-agent",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    result = subprocess.run(
        [
            str(bin_dir / "opentelemetry-instrument"),
            sys.executable,
            str(AGENTS / "auto_agent.py"),
            llm_server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "answer: ok" in result.stderr
    spans = _console_spans(result.stdout)
    # anthropic 2.x also makes its own `anthropic.messages.create` span; ours carry the cost.
    llm = {s["name"]: s for s in spans if "cognocient.cost.source" in s["attributes"]}
    assert set(llm) == {"chat gpt-4o-mini", "chat claude-3-5-haiku-latest"}
    chat = llm["chat gpt-4o-mini"]["attributes"]
    assert chat["cognocient.run.id"] == "auto-run-1"
    assert chat["cognocient.feature"] == "auto"
    assert chat["gen_ai.usage.output_tokens"] == 11
    assert chat["cognocient.cost.source"] == "price_table"
    assert chat["cognocient.cost.usd"] > 0
    claude = llm["chat claude-3-5-haiku-latest"]["attributes"]
    assert claude["gen_ai.provider.name"] == "anthropic"
    assert claude["gen_ai.usage.output_tokens"] == 12
    assert llm["chat gpt-4o-mini"]["resource"]["attributes"]["service.name"] == "auto-agent"


def _console_spans(output: str) -> list[dict]:
    """The ConsoleSpanExporter writes one indented JSON object per span."""
    decoder = json.JSONDecoder()
    spans, index = [], 0
    while True:
        start = output.find("{", index)
        if start < 0:
            return spans
        span, index = decoder.raw_decode(output, start)
        spans.append(span)
