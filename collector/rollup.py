"""A run's rollup (DESIGN.md "What a run rolls up to") and the in-memory state of recent runs.

Extension point (issues 4 and 5): `RunRollup` is what the runs API returns and what stages read
and change through the batch's unit of work (`collector/store.py`):

* `uow.run(key)` / `uow.run_for(record)`: the run, as a private copy staged for this transaction;
* `uow.add_waste_flag(key, kind=, step=, message=, wasted_cost_usd=)`: once per run and kind;
* `uow.mark_blocked(key, budget=, step=, feature=, agent=)`: status becomes `blocked` and stays.

Committed rollups are never mutated: a transaction works on copies and publishes them to
`RunState` when its commit succeeds, so a reader (a scrape, the runs API) never sees a half-applied
batch and a failed commit leaves nothing behind.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from collector.model import RunKey, SpanRecord

ACTIVE = "active"
FINISHED = "finished"
BLOCKED = "blocked"
EXPIRED = "expired"
ENDED_STATUSES = frozenset({FINISHED, BLOCKED, EXPIRED})

_ZERO = Decimal(0)
# One encoder for every row written: `json.dumps(..., separators=...)` builds a new one per call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
TOKEN_TYPES = ("input", "output", "cache_read", "cache_creation", "reasoning")


@dataclass(slots=True)
class ModelTotals:
    calls: int = 0
    cost_usd: Decimal = _ZERO
    input_tokens: int = 0
    output_tokens: int = 0
    provider: str | None = None

    def copy(self) -> ModelTotals:
        return ModelTotals(self.calls, self.cost_usd, self.input_tokens, self.output_tokens, self.provider)


class RunRollup:
    """One run's totals. Money is Decimal; times are unix nanoseconds (calls) or seconds (arrival).

    The per-model breakdown is kept as its JSON text until someone reads `models` (committed runs
    are stored that way: 100k tracked runs cost a fraction of the memory, and loading them at start
    parses no JSON). Construct with keyword arguments beyond tenant and run id.
    """

    __slots__ = (
        "_models", "_models_json", "agent", "blocked_by", "cache_creation_tokens", "cache_read_tokens",
        "cost_usd", "ended_at", "feature", "first_call_ns", "input_tokens", "last_call_ns", "last_seen",
        "output_tokens", "reasoning_tokens", "run_id", "status", "steps", "tenant", "unpriced_calls",
        "waste_flags",
    )

    def __init__(
        self,
        tenant: str,
        run_id: str,
        *,
        feature: str | None = None,
        agent: str | None = None,
        status: str = ACTIVE,
        cost_usd: Decimal = _ZERO,
        steps: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_creation_tokens: int = 0,
        reasoning_tokens: int = 0,
        models: dict[str, ModelTotals] | None = None,
        models_json: str = "{}",
        first_call_ns: int | None = None,
        last_call_ns: int | None = None,
        last_seen: float = 0.0,
        ended_at: float | None = None,
        waste_flags: list[dict[str, Any]] | None = None,
        blocked_by: dict[str, Any] | None = None,
        unpriced_calls: int = 0,
    ) -> None:
        self.tenant = tenant
        self.run_id = run_id
        self.feature = feature
        self.agent = agent
        self.status = status
        self.cost_usd = cost_usd
        self.steps = steps
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cache_read_tokens = cache_read_tokens
        self.cache_creation_tokens = cache_creation_tokens
        self.reasoning_tokens = reasoning_tokens
        self._models = models
        self._models_json = models_json if models is None else None
        self.first_call_ns = first_call_ns  # start of the first LLM call
        self.last_call_ns = last_call_ns  # end of the last LLM call
        self.last_seen = last_seen  # wall-clock seconds when a span of the run last arrived
        self.ended_at = ended_at  # wall-clock seconds when the status left `active`
        self.waste_flags = waste_flags if waste_flags is not None else []
        self.blocked_by = blocked_by
        self.unpriced_calls = unpriced_calls

    def __repr__(self) -> str:
        return f"RunRollup({self.tenant!r}, {self.run_id!r}, {self.status}, cost_usd={self.cost_usd})"

    @property
    def key(self) -> RunKey:
        return (self.tenant, self.run_id)

    @property
    def models(self) -> dict[str, ModelTotals]:
        """Per answering model: calls, cost, tokens (parsed on first use)."""
        if self._models is None:
            if not self._models_json or self._models_json == "{}":  # a new run: nothing to parse
                self._models = {}
                self._models_json = None
                return self._models
            parsed = json.loads(self._models_json)
            self._models = {
                name: ModelTotals(calls, Decimal(cost_text), input_t, output_t, provider)
                for name, (calls, cost_text, input_t, output_t, provider) in parsed.items()
            }
            self._models_json = None
        return self._models

    def models_json(self) -> str:
        if self._models is None:
            return self._models_json or "{}"
        return _compact_json(
            {name: [t.calls, str(t.cost_usd), t.input_tokens, t.output_tokens, t.provider]
             for name, t in self._models.items()}
        )

    def compact(self, models_json: str | None = None) -> None:
        """Drop the parsed per-model breakdown, keeping its JSON text (for runs at rest in memory)."""
        if self._models is not None:
            self._models_json = models_json if models_json is not None else self.models_json()
            self._models = None

    @property
    def duration_seconds(self) -> float:
        if self.first_call_ns is None or self.last_call_ns is None:
            return 0.0
        return max(0, self.last_call_ns - self.first_call_ns) / 1e9

    def copy(self) -> RunRollup:
        clone = RunRollup.__new__(RunRollup)
        for name in RunRollup.__slots__:
            setattr(clone, name, getattr(self, name))
        if self._models is not None:
            clone._models = {name: totals.copy() for name, totals in self._models.items()}
        clone.waste_flags = list(self.waste_flags)
        return clone

    def add_call(self, record: SpanRecord) -> None:
        """Count one inference span (already deduplicated and costed) into the run."""
        cost = record.cost_usd or _ZERO
        self.cost_usd += cost
        self.steps += 1
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.cache_read_tokens += record.cache_read_tokens
        self.cache_creation_tokens += record.cache_creation_tokens
        self.reasoning_tokens += record.reasoning_tokens
        if record.cost_source == "unknown_model":
            self.unpriced_calls += 1
        model = record.response_model or record.request_model or "unknown"
        models = self._models if self._models is not None else self.models
        totals = models.get(model)
        if totals is None:
            totals = models[sys.intern(model)] = ModelTotals(provider=record.provider)
        totals.calls += 1
        totals.cost_usd += cost
        totals.input_tokens += record.input_tokens
        totals.output_tokens += record.output_tokens
        start, end = record.start_ns, record.end_ns
        if self.first_call_ns is None or start < self.first_call_ns:
            self.first_call_ns = start
        if self.last_call_ns is None or end > self.last_call_ns:
            self.last_call_ns = end

    def has_flag(self, kind: str) -> bool:
        return any(flag.get("kind") == kind for flag in self.waste_flags)

    # -- persistence --------------------------------------------------------------------------

    def to_row(self) -> tuple[Any, ...]:
        flag_kinds = "," + ",".join(f["kind"] for f in self.waste_flags) + "," if self.waste_flags else ""
        return (
            self.tenant, self.run_id, self.feature, self.agent, self.status, str(self.cost_usd),
            float(self.cost_usd), self.steps, self.input_tokens, self.output_tokens, self.cache_read_tokens,
            self.cache_creation_tokens, self.reasoning_tokens, self.models_json(),
            self.first_call_ns, self.last_call_ns, self.last_seen, self.ended_at,
            _compact_json(self.waste_flags) if self.waste_flags else None, flag_kinds,
            _compact_json(self.blocked_by) if self.blocked_by else None,
            self.unpriced_calls,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> RunRollup:
        (tenant, run_id, feature, agent, status, cost, _cost_float, steps, input_tokens, output_tokens,
         cache_read, cache_creation, reasoning, models_json, first_call_ns, last_call_ns, last_seen,
         ended_at, flags_json, _flag_kinds, blocked_json, unpriced) = row
        intern = sys.intern
        return cls(
            intern(tenant), run_id, feature=feature and intern(feature), agent=agent and intern(agent),
            status=intern(status), cost_usd=Decimal(cost), steps=steps, input_tokens=input_tokens,
            output_tokens=output_tokens, cache_read_tokens=cache_read, cache_creation_tokens=cache_creation,
            reasoning_tokens=reasoning, models_json=models_json, first_call_ns=first_call_ns,
            last_call_ns=last_call_ns, last_seen=last_seen, ended_at=ended_at,
            waste_flags=json.loads(flags_json) if flags_json else None,
            blocked_by=json.loads(blocked_json) if blocked_json else None, unpriced_calls=unpriced,
        )


ROW_COLUMNS = (
    "tenant", "run_id", "feature", "agent", "status", "cost_usd", "cost_float", "steps", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_creation_tokens", "reasoning_tokens", "models",
    "first_call_ns", "last_call_ns", "last_seen", "ended_at", "waste_flags", "flag_kinds", "blocked_by",
    "unpriced_calls",
)


class RunState:
    """Committed rollups of the runs kept in memory (active, and ended within `keep_ended_seconds`).

    Written only by the ingest writer thread (`publish`, `evict`); read by any thread. Older runs
    live in the store only and are loaded back when a late span arrives for them.
    """

    def __init__(self) -> None:
        self._runs: dict[RunKey, RunRollup] = {}
        self._lock = threading.Lock()

    def get(self, key: RunKey) -> RunRollup | None:
        return self._runs.get(key)

    def publish(self, runs: dict[RunKey, RunRollup]) -> None:
        with self._lock:
            self._runs.update(runs)

    def evict(self, keys: list[RunKey]) -> None:
        with self._lock:
            for key in keys:
                self._runs.pop(key, None)

    def snapshot(self) -> list[RunRollup]:
        with self._lock:
            return list(self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[RunRollup]:
        return iter(self.snapshot())
