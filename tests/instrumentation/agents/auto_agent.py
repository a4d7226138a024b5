"""An agent script with no tracing code at all: `opentelemetry-instrument python auto_agent.py URL`."""

import sys

import anthropic
import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url + "/v1", api_key="test", max_retries=0)
reply = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "hi"}],
    max_tokens=11,
    extra_headers={"X-Cost-Run-ID": "auto-run-1", "X-Cost-Feature": "auto"},
)
anthropic.Anthropic(base_url=base_url, api_key="test", max_retries=0).messages.create(
    model="claude-3-5-haiku-latest", max_tokens=12, messages=[{"role": "user", "content": "hi"}]
)
print("answer:", reply.choices[0].message.content, file=sys.stderr)
