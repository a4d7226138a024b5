"""The span model every pipeline stage works on: one `SpanRecord` per decoded span, in a `SpanBatch`.

Extension point (issues 4 and 5 build on it). The receivers decode OTLP into `SpanRecord`s
(`collector/decode.py`) and hand a `SpanBatch` to the pipeline (`collector/pipeline.py`). Stages
read the typed fields below; anything else a span carried is available through
`SpanRecord.attributes()` (decoded lazily from the protobuf, so a stage that never asks pays nothing).

Identity, as DESIGN.md defines it:

* `tenant`: attribute `cognocient.tenant` on the span, else on its resource, else ``"default"``.
* `run_id`: attribute `cognocient.run.id`, else the captured `X-Cost-Run-ID` request header
  (`http.request.header.x-cost-run-id`), else the trace id as 32 lowercase hex characters.
* `run_key`: ``(tenant, run_id)``, the key of a run's rollup.

Classification:

* `is_llm`: an inference span: `gen_ai.operation.name` is chat / text_completion /
  generate_content / embeddings, or the span carries `gen_ai.usage.*` token counts and is not an
  `invoke_agent` / `execute_tool` span. Only these spans are costed and rolled up, so the usage
  totals an `invoke_agent` span may carry are never added to a run.
* `is_run_root`: the span that ends the run: an `invoke_agent` span with no parent or a remote
  parent (a run started in a process called by another), or the trace root of a run identified
  by its trace id. A run whose `invoke_agent` span has a local parent outside the run (a web
  request span, say) is not seen to end: it becomes `expired` after the idle timeout.

Money: `cost_usd` is a `Decimal` (None until the cost stage fills it for an LLM span that did not
carry a cost). Token counts are ints, 0 meaning "not reported"; `input_tokens` includes cached
tokens and `output_tokens` reasoning tokens (the GenAI convention).

Threading: records are created by a receiver thread and then owned by the single ingest writer
thread; stages may mutate them (the cost stage fills `cost_usd`), nobody else may.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.store import UnitOfWork

RunKey = tuple[str, str]
"""(tenant, run_id)."""

DEFAULT_TENANT = "default"


@dataclass(slots=True, eq=False)
class SpanRecord:
    tenant: str
    run_id: str
    trace_id: str  # 32 lowercase hex characters
    span_id: str  # 16 lowercase hex characters
    parent_span_id: str  # "" for a trace root
    name: str
    kind: int  # OTLP SpanKind number (1 internal, 2 server, 3 client, ...)
    start_ns: int  # unix nanoseconds
    end_ns: int
    status_code: int = 0  # OTLP status code: 0 unset, 1 ok, 2 error
    is_llm: bool = False
    is_run_root: bool = False
    operation: str | None = None  # gen_ai.operation.name
    provider: str | None = None  # gen_ai.provider.name, else gen_ai.system
    request_model: str | None = None
    response_model: str | None = None
    feature: str | None = None  # cognocient.feature
    agent: str | None = None  # gen_ai.agent.name
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0  # cache_creation, or cache_write from other instrumentations
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = None
    cost_source: str | None = None  # provider | price_table | unknown_model
    step: int | None = None  # cognocient.step, 1-based
    fingerprint: str | None = None  # cognocient.request.fingerprint
    error_type: str | None = None  # error.type, or the HTTP status when >= 400
    tool_name: str | None = None  # execute_tool spans
    tool_args_hash: str | None = None  # short hash of gen_ai.tool.call.arguments
    budget_decision: str | None = None  # cognocient.budget.decision
    server_address: str | None = None  # helps pick the provider's price list
    has_explicit_run: bool = False  # run id came from an attribute or header, not the trace id
    # Start time (8 bytes, big-endian) + trace id + span id: the start time in front keeps inserts
    # into the dedup index near its right edge (spans arrive roughly in time order), so a commit
    # dirties a few pages instead of one random page per span. A re-delivered span carries the
    # same start time, so it maps to the same key.
    dedup_key: bytes = b""
    # For attributes(): (resource attributes, the protobuf spans of the record's scope), shared by
    # the records of one scope, and the index of this record's span in them. A record decoded in
    # a decode worker process holds a `collector.decode_pool.LazyScope` that parses on demand.
    raw: Any = field(default=None, repr=False)
    raw_index: int = field(default=0, repr=False)

    @property
    def run_key(self) -> RunKey:
        return (self.tenant, self.run_id)

    @property
    def model(self) -> str | None:
        """The model to price and report by: the one that answered, else the one asked for."""
        return self.response_model or self.request_model

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def attributes(self) -> dict[str, Any]:
        """Every attribute of the span (resource attributes first, the span's own override them)."""
        raw = self.raw
        if raw is None:
            return {}
        from collector.decode import attributes_to_dict

        if raw.__class__ is not tuple:  # decoded in a worker process: `collector.decode_pool.LazyScope`
            raw = raw.resolve()
        resource_attributes, spans = raw
        merged = attributes_to_dict(resource_attributes)
        merged.update(attributes_to_dict(spans[self.raw_index].attributes))
        return merged


@dataclass(slots=True, eq=False)
class SpanBatch:
    """The spans of one export request, as they travel through the pipeline.

    `records` starts as every usable span of the request; the dedup stage replaces it with the
    spans not seen before, so the stages after it see each (trace id, span id) once, ever.
    `uow` is the open store transaction this batch is processed in (set by the ingest writer
    before the first stage runs): a stage makes its durable effects part of the batch's commit
    by writing through it (see `collector/store.py`). `rejected` / `reject_messages` are the
    spans the decoder could not use (reported in `partial_success`).
    """

    records: list[SpanRecord]
    transport: str = "grpc"  # grpc | http
    received: int = 0  # spans in the request, usable or not
    rejected: int = 0
    reject_messages: list[str] = field(default_factory=list)
    duplicates: int = 0
    uow: UnitOfWork | None = None

    def __len__(self) -> int:
        return len(self.records)
