"""The demo's agents: instrumented runs through the real `openai` SDK against a local LLM server.

Three kinds of run, enough to fill every dashboard:
* normal runs of a support bot (gpt-4o-mini) and a researcher (gpt-4o), a few steps each;
* a runaway research run that keeps asking for long answers until the collector's
  "research per run" budget (per_run_limit_usd 0.05) blocks it: the SDK call raises
  `BudgetExceeded` and the request never reaches the LLM server;
* a summarizer that sends the same request again and again: the collector flags it `loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cognocient_otel
from cognocient_otel import BudgetExceeded

OpenAIClientFactory = Callable[[], object]

# The local server answers input tokens = characters // 4, output tokens = max_tokens.
RUNAWAY_PROMPT = "Summarize every paper on agent cost control, with quotes. " * 140  # ~2,000 tokens
MAX_RUNAWAY_STEPS = 40


@dataclass
class RunOutcome:
    """What the demo saw of one run in its own process (the collector has the authoritative view)."""

    run_id: str
    feature: str
    agent: str
    steps_sent: int
    blocked: bool = False
    note: str = ""


def _ask(client: object, *, model: str, prompt: str, max_tokens: int) -> None:
    client.chat.completions.create(  # type: ignore[attr-defined]
        model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}])


def support_run(client: object, *, round_index: int) -> RunOutcome:
    with cognocient_otel.run("support-bot", feature="support") as run:
        steps = 2 + round_index % 2
        for step in range(steps):
            _ask(client, model="gpt-4o-mini", max_tokens=150,
                 prompt=f"Customer ticket {round_index}, turn {step}: my invoice looks wrong.")
        return RunOutcome(run.id, "support", "support-bot", steps)


def research_run(client: object, *, round_index: int) -> RunOutcome:
    with cognocient_otel.run("researcher", feature="research") as run:
        for step in range(2):
            _ask(client, model="gpt-4o", max_tokens=300,
                 prompt=f"Research question {round_index}, step {step}: compare two vector stores.")
        return RunOutcome(run.id, "research", "researcher", 2)


def runaway_research_run(client: object) -> RunOutcome:
    """Asks for long gpt-4o answers (~0.02 USD a call) until the per-run budget refuses."""
    with cognocient_otel.run("researcher", feature="research") as run:
        for step in range(MAX_RUNAWAY_STEPS):
            try:
                _ask(client, model="gpt-4o", max_tokens=1500, prompt=f"{RUNAWAY_PROMPT} Part {step}.")
            except BudgetExceeded as error:
                return RunOutcome(run.id, "research", "researcher", step, blocked=True, note=str(error))
        return RunOutcome(run.id, "research", "researcher", MAX_RUNAWAY_STEPS,
                          note=f"not blocked after {MAX_RUNAWAY_STEPS} calls")


def looping_run(client: object, *, repeats: int = 5) -> RunOutcome:
    with cognocient_otel.run("summarizer", feature="document-processor") as run:
        for _ in range(repeats):
            _ask(client, model="gpt-4o-mini", max_tokens=200,
                 prompt="Summarize the attached contract in three bullet points.")
        return RunOutcome(run.id, "document-processor", "summarizer", repeats)


def normal_round(client: object, *, round_index: int) -> list[RunOutcome]:
    return [support_run(client, round_index=round_index), research_run(client, round_index=round_index)]


def incident_round(client: object) -> list[RunOutcome]:
    return [runaway_research_run(client), looping_run(client)]
