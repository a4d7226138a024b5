"""An agent run with the openai 2.x SDK (which sends through httpx), in its own interpreter.

Usage: python openai2_agent.py BASE_URL   -- prints one JSON object: versions, the HTTP client
modules instrumented, the spans produced (name, kind, attributes, parent) and call outcomes.
"""

from __future__ import annotations

import asyncio
import json
import sys

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cognocient_otel
from cognocient_otel import BudgetExceeded, httpx_patch

MESSAGES = [{"role": "user", "content": "what is the weather"}]


async def async_calls(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="test", max_retries=0)
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=15)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=16,
    )
    async for _ in stream:
        pass


def main(base_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cognocient_otel.instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="test", max_retries=2)
    outcome = {}
    with cognocient_otel.run("openai2-agent", feature="legacy") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=13)
        for _ in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=14,
        ):
            pass
        client.responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=12)
        client.embeddings.create(model="text-embedding-3-small", input="hello")
        asyncio.run(async_calls(base_url))
        outcome["run_id"] = run.id
        outcome["cost_usd"] = str(run.cost_usd)
    with cognocient_otel.run("openai2-runaway", budget_usd=0):
        try:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
            outcome["blocked"] = "no"
        except BudgetExceeded as refused:
            outcome["blocked"] = type(refused).__mro__[1].__name__
    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "attributes": dict(span.attributes),
            "parent": f"{span.parent.span_id:016x}" if span.parent else None,
            "span_id": f"{span.context.span_id:016x}",
        }
        for span in exporter.get_finished_spans()
    ]
    print(
        json.dumps(
            {
                "openai_version": openai.__version__,
                "patched_modules": httpx_patch.patched_modules(),
                "spans": spans,
                **outcome,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
