"""The run's own limit, enforced in-process before a request leaves."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from opentelemetry import context

import cognocient_otel
from cognocient_otel import BudgetExceeded, BudgetGuard, GuardDecision, PlannedCall
from cognocient_otel.budget import RunLedger
from cognocient_otel.llm.headers import header_value
from cognocient_otel.pricing import PriceBook, TokenUsage
from cognocient_otel.testing import LLMServer, ScriptedResponse

MESSAGES = [{"role": "user", "content": "summarise this"}]


def client_for(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)


def test_refusal_passes_through_sdk_wrappers_unretried(llm_server: LLMServer, traced) -> None:
    client = anthropic.Anthropic(base_url=llm_server.base_url, api_key="test", max_retries=2)
    with cognocient_otel.run("anthropic-runaway", budget_usd=0), pytest.raises(BudgetExceeded) as refused:
        client.messages.create(model="claude-3-5-haiku-latest", max_tokens=100, messages=MESSAGES)
    assert isinstance(refused.value, anthropic.AnthropicError) and isinstance(
        refused.value, openai.OpenAIError
    )
    assert len(traced.llm_spans()) == 1  # not retried
    assert llm_server.request_count() == 0


def test_call_over_the_limit_is_blocked_and_never_sent(llm_server: LLMServer, traced) -> None:
    client = client_for(llm_server)
    # gpt-4o: $10 per million output tokens -> 1000 tokens may cost $0.01 > $0.001.
    with cognocient_otel.run("runaway", budget_usd="0.001") as run, pytest.raises(BudgetExceeded) as refused:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    assert llm_server.request_count() == 0
    assert refused.value.run_id == run.id
    assert refused.value.limit_usd == Decimal("0.001")
    assert refused.value.spent_usd == 0
    span = traced.one_llm_span()
    assert span.attributes["cognocient.budget.decision"] == "blocked"
    assert span.attributes["error.type"] == "BudgetExceeded"
    assert span.status.status_code.name == "ERROR"
    event = next(e for e in span.events if e.name == "cognocient.budget.exceeded")
    assert event.attributes["cognocient.budget.limit_usd"] == pytest.approx(0.001)
    assert run.cost_usd == 0 and run.blocked


@pytest.mark.parametrize(("feature", "run_id", "sent"), [
    ("caf\u00e9", None, "caf%C3%A9"), ("a\nb", "r\x00n", "a%0Ab"), (" padded ", None, "%20padded%20")])
def test_run_ids_and_features_that_are_no_header_values_are_guarded_and_sent_encoded(
    llm_server: LLMServer, traced, feature: str, run_id: str | None, sent: str
) -> None:
    # Such a value made the HTTP library refuse the call, or skipped the guard and left the
    # span open (an ASCII-only header encoding raised after the span started).
    client = client_for(llm_server)
    with cognocient_otel.run("a", feature=feature, run_id=run_id, budget_usd="0.005") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
        with pytest.raises(BudgetExceeded):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    [request] = llm_server.requests
    assert request.headers["x-cost-feature"] == sent
    assert request.headers["x-cost-run-id"] == header_value(run.id)
    assert run.cost_usd > 0
    spans = traced.llm_spans()
    assert len(spans) == 2 and all(span.end_time is not None for span in spans)
    assert spans[0].attributes["cognocient.feature"] == feature  # the span keeps the value itself


def test_a_failure_of_ours_while_guarding_lets_the_call_out_and_leaves_nothing_open(
    llm_server: LLMServer, traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(llm_server)

    def broken_headers(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr("cognocient_otel.llm.call.add_cost_headers", broken_headers)
    with cognocient_otel.run("h", budget_usd="1") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    [request] = llm_server.requests
    assert "x-cost-run-id" not in request.headers  # sent without our headers, traced and costed
    assert run.cost_usd > 0 and traced.one_llm_span().end_time is not None

    monkeypatch.setattr(PriceBook, "rate", broken_headers)  # the guard's pricing fails
    traced.exporter.clear()
    with cognocient_otel.run("p", budget_usd="1") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    assert llm_server.request_count() == 2  # the call went out, untraced
    assert len(traced.llm_spans()) == 1  # the span started for it was ended, not left open
    assert run.remaining_usd == Decimal(1)  # nothing left reserved


def test_every_answer_asked_for_is_in_the_estimate(llm_server: LLMServer, traced) -> None:
    client = client_for(llm_server)
    # Room for one answer of 200 tokens (and its prompt), not for eight.
    limit = PriceBook().cost(model="gpt-4o-mini", usage=TokenUsage(input_tokens=100, output_tokens=600)).usd
    with cognocient_otel.run("n", budget_usd=str(limit)), pytest.raises(BudgetExceeded):
        # eight answers of up to 200 tokens each
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200, n=8)
    with cognocient_otel.run("one", budget_usd=str(limit)):  # a refusal blocks its run for good
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=200)
    assert llm_server.request_count() == 1


def test_a_prompt_marked_for_caching_is_estimated_at_the_cache_write_rate(llm_server: LLMServer, traced):
    client = anthropic.Anthropic(base_url=llm_server.base_url, api_key="test", max_retries=0)
    model = "claude-3-5-haiku-latest"
    system = [{"type": "text", "text": "x" * 4000}]
    cached = [{**system[0], "cache_control": {"type": "ephemeral"}}]
    # A limit between the two estimates: the plain prompt fits, the same one marked for caching not.
    body_size = 4000 + 200
    plain = PriceBook().cost(model=model, usage=TokenUsage(input_tokens=body_size // 4, output_tokens=10)).usd
    one_hour = [{**system[0], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    # 5-minute cache writes cost 1.25x the input rate, 1-hour ones 2x.
    cases = [(system, "1.1", True), (cached, "1.1", False), (cached, "1.5", True), (one_hour, "1.5", False)]
    for system_blocks, room, allowed in cases:
        with cognocient_otel.run("c", budget_usd=str(plain * Decimal(room))):
            try:
                client.messages.create(model=model, max_tokens=10, system=system_blocks, messages=MESSAGES)
                sent = True
            except BudgetExceeded:
                sent = False
        assert sent is allowed, (system_blocks[0].get("cache_control"), room)


def test_spend_accumulates_until_the_estimate_no_longer_fits(llm_server: LLMServer, traced) -> None:
    client = client_for(llm_server)
    price = PriceBook()
    one_call = price.cost(model="gpt-4o-mini", usage=TokenUsage(input_tokens=10, output_tokens=100)).usd
    with cognocient_otel.run("bounded", budget_usd=one_call * 3) as run:
        sent = 0
        with pytest.raises(BudgetExceeded):
            for _ in range(10):
                llm_server.script([ScriptedResponse(input_tokens=10, output_tokens=100)])
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
                sent += 1
        # A blocked run stays blocked (DESIGN.md), even for a call that would still fit.
        with pytest.raises(BudgetExceeded):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=1)
    # Each reservation (body bytes // 4 input + 100 output) exceeds the real cost a little.
    assert 1 <= sent <= 3
    assert llm_server.request_count() == sent
    assert run.cost_usd == one_call * sent
    assert run.cost_usd <= one_call * 3


def test_warn_mode_sends_and_records(llm_server: LLMServer, traced) -> None:
    client = client_for(llm_server)
    with cognocient_otel.run("lenient", budget_usd=0, enforcement="warn") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    assert llm_server.request_count() == 1
    span = traced.one_llm_span()
    assert span.attributes["cognocient.budget.decision"] == "warned"
    assert [e.name for e in span.events] == ["cognocient.budget.exceeded"]
    assert span.status.status_code.name == "UNSET"
    assert run.cost_usd > 0


def test_other_runs_are_unaffected(llm_server: LLMServer, traced) -> None:
    client = client_for(llm_server)
    with cognocient_otel.run("poor", budget_usd=0), pytest.raises(BudgetExceeded):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    with cognocient_otel.run("rich", budget_usd=1):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    assert llm_server.request_count() == 2


def test_twenty_threads_never_spend_over_the_limit(llm_server: LLMServer, traced) -> None:
    client = client_for(llm_server)
    max_tokens = 200
    # The server answers max_tokens output tokens and estimates the input from the messages
    # (a few tokens here): 40 input tokens is more than any of these calls can use.
    worst_case = PriceBook().cost(
        model="gpt-4o-mini", usage=TokenUsage(input_tokens=40, output_tokens=max_tokens)
    )
    limit = worst_case.usd * 5
    # Slow answers keep every call in flight at once: only reservations can stop the overspend.
    llm_server.script([ScriptedResponse(output_tokens=max_tokens, delay_seconds=0.2)] * 20)
    barrier = threading.Barrier(20)
    with cognocient_otel.run("swarm", budget_usd=limit) as run:
        run_context = context.get_current()

        def call_in_run(_: int) -> str:
            token = context.attach(run_context)
            try:
                barrier.wait()
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=max_tokens)
                return "sent"
            except BudgetExceeded:
                return "blocked"
            finally:
                context.detach(token)

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            outcomes = list(pool.map(call_in_run, range(20)))
    assert outcomes.count("sent") == llm_server.request_count()
    assert 1 <= outcomes.count("sent") <= 5
    assert run.cost_usd <= limit
    assert run.ledger.reserved == 0


async def test_twenty_tasks_never_spend_over_the_limit(llm_server: LLMServer, traced) -> None:
    client = anthropic.AsyncAnthropic(base_url=llm_server.base_url, api_key="test", max_retries=0)
    price = PriceBook()
    worst_case = price.cost(
        model="claude-3-5-haiku-latest",
        usage=TokenUsage(input_tokens=100, output_tokens=500),
        provider="anthropic",
    ).usd
    limit = worst_case * 4
    llm_server.script([ScriptedResponse(output_tokens=500, delay_seconds=0.2)] * 20)
    async with cognocient_otel.run("async-swarm", budget_usd=limit) as run:

        async def call() -> str:
            try:
                await client.messages.create(
                    model="claude-3-5-haiku-latest", max_tokens=500, messages=MESSAGES
                )
                return "sent"
            except BudgetExceeded:
                return "blocked"

        outcomes = await asyncio.gather(*(call() for _ in range(20)))
    assert outcomes.count("sent") == llm_server.request_count()
    assert 1 <= outcomes.count("sent") <= 4
    assert run.cost_usd <= limit
    assert run.ledger.reserved == 0


def test_nested_sub_run_limit_and_shared_spend(llm_server: LLMServer, traced) -> None:
    client = client_for(llm_server)
    with cognocient_otel.run("planner", feature="research", budget_usd=1) as outer:
        with cognocient_otel.run("worker", budget_usd=0) as inner, pytest.raises(BudgetExceeded):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
        with cognocient_otel.run("worker-2") as inner2:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
        assert inner.id == inner2.id == outer.id
        assert inner2.feature == "research"
        assert outer.cost_usd == inner2.cost_usd > 0
        assert outer.steps == 2
    spans = {s.name: s for s in traced.spans()}
    assert spans["invoke_agent worker-2"].parent.span_id == spans["invoke_agent planner"].context.span_id


def test_a_failing_guard_never_breaks_the_call(llm_server: LLMServer, instrument) -> None:
    class BrokenGuard(BudgetGuard):
        def before_call(self, call: PlannedCall) -> GuardDecision:
            raise RuntimeError("guard bug")

    instrument(guards=[BrokenGuard()])
    with cognocient_otel.run("robust"):
        client_for(llm_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert llm_server.request_count() == 1


def test_extra_guard_sees_planned_call_and_settlement(llm_server: LLMServer, instrument) -> None:
    seen: list[tuple[str, object]] = []

    class RecordingGuard(BudgetGuard):
        def before_call(self, call: PlannedCall) -> GuardDecision:
            seen.append(("before", call))
            return GuardDecision()

        def after_call(self, call: PlannedCall, actual_cost_usd: Decimal) -> None:
            seen.append(("after", actual_cost_usd))

    traced = instrument(guards=[RecordingGuard()])
    with (
        cognocient_otel.run("observed", feature="f1") as run,
        httpx.Client(base_url=llm_server.base_url) as raw,
    ):
        raw.post(
            "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 50}
        )
    (_, planned), (_, actual) = seen
    span = traced.one_llm_span()
    assert planned.run_id == run.id and planned.feature == "f1" and planned.agent == "observed"
    assert planned.span_id == f"{span.context.span_id:016x}"
    assert planned.model == "gpt-4o-mini" and planned.provider == "openai"
    assert planned.estimated_output_tokens == 50
    assert planned.estimated_cost_usd > actual > 0
    assert float(actual) == pytest.approx(span.attributes["cognocient.cost.usd"])


def test_blocking_extra_guard_releases_earlier_reservations(llm_server: LLMServer, instrument) -> None:
    class NoGuard(BudgetGuard):
        def before_call(self, call: PlannedCall) -> GuardDecision:
            raise BudgetExceeded(
                run_id=call.run_id, limit_usd=Decimal(5), spent_usd=Decimal(5), reason="remote"
            )

    instrument(guards=[NoGuard()])
    with cognocient_otel.run("remote-blocked", budget_usd=1) as run, pytest.raises(BudgetExceeded) as refused:
        client_for(llm_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert refused.value.reason == "remote"
    assert run.ledger.reserved == 0 and run.cost_usd == 0
    assert llm_server.request_count() == 0


def test_ledger_decision_is_atomic_across_levels() -> None:
    outer = RunLedger(Decimal("1.0"))
    inner = RunLedger(None, parent=outer)
    assert not inner.reserve(Decimal("0.6")).over_limit
    decision = inner.reserve(Decimal("0.6"))
    assert decision.blocked and decision.limit == Decimal("1.0") and decision.committed == Decimal("0.6")
    inner.settle(Decimal("0.6"), Decimal("0.5"))
    assert outer.settled == inner.settled == Decimal("0.5") and outer.reserved == 0


@pytest.mark.parametrize("blocks", [True, False])
@pytest.mark.parametrize("nested", [False, True])
def test_try_reserve_decides_and_reserves_as_reserve_does(blocks: bool, nested: bool) -> None:
    """`try_reserve` (the per-call path) is `reserve` without the decision object when nothing
    is crossed: same outcomes, same ledger state, for a top-level run and a sub-run."""

    def ledgers() -> RunLedger:
        limited = RunLedger(Decimal("1.0"), blocks=blocks)
        return RunLedger(None, parent=limited) if nested else limited

    def state(ledger: RunLedger | None) -> list[tuple[Decimal, Decimal, bool]]:
        seen = []
        while ledger is not None:
            seen.append((ledger.reserved, ledger.settled, ledger.blocked))
            ledger = ledger.parent
        return seen

    plain, fast = ledgers(), ledgers()
    for estimate in ("0.3", "0.3", "0.5", "0.1", "0.3", "0"):
        expected = plain.reserve(Decimal(estimate))
        got = fast.try_reserve(Decimal(estimate))
        if expected.over_limit:
            assert got is not None
            assert (got.over_limit, got.blocked, got.committed, got.limit) == (
                expected.over_limit, expected.blocked, expected.committed, expected.limit
            )
        else:
            assert got is None
        assert state(fast) == state(plain)


def test_run_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="budget"):
        cognocient_otel.run("a", budget_usd=-1)
    with pytest.raises(ValueError, match="enforcement"):
        cognocient_otel.run("a", enforcement="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="agent"):
        cognocient_otel.run("")
    with pytest.raises(ValueError, match="budget"):
        cognocient_otel.run("a", budget_usd="lots")
