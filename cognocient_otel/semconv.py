"""Names on the wire: span attributes, events, headers, baggage keys (DESIGN.md's contract).

Plain module-level string constants so that the instrumentation, the collector and the budget
client all spell them the same way. OpenTelemetry GenAI semantic conventions first; the
`cognocient.*` namespace only for what they lack.
"""

from __future__ import annotations

# --- OpenTelemetry GenAI semantic conventions ---------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
# Older instrumentations write the provider here; readers accept both.
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
# Spelling used by some instrumentations for cache creation; readers accept it too.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
# Cost reported by other instrumentations (read by the collector, never written by us).
GEN_AI_USAGE_COST_AMOUNT = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY = "gen_ai.usage.cost.currency"
GEN_AI_USAGE_COST = "gen_ai.usage.cost"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"

ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

# --- gen_ai.operation.name values ---------------------------------------------------------
OPERATION_CHAT = "chat"
OPERATION_TEXT_COMPLETION = "text_completion"
OPERATION_GENERATE_CONTENT = "generate_content"
OPERATION_EMBEDDINGS = "embeddings"
OPERATION_INVOKE_AGENT = "invoke_agent"
OPERATION_EXECUTE_TOOL = "execute_tool"
LLM_OPERATIONS = frozenset(
    {OPERATION_CHAT, OPERATION_TEXT_COMPLETION, OPERATION_GENERATE_CONTENT, OPERATION_EMBEDDINGS}
)

# --- gen_ai.provider.name values we write ---------------------------------------------------
PROVIDER_OPENAI = "openai"
PROVIDER_ANTHROPIC = "anthropic"

# --- cognocient.* attributes ----------------------------------------------------------------
COGNOCIENT_RUN_ID = "cognocient.run.id"
COGNOCIENT_FEATURE = "cognocient.feature"
COGNOCIENT_COST_USD = "cognocient.cost.usd"
COGNOCIENT_COST_SOURCE = "cognocient.cost.source"
COGNOCIENT_STEP = "cognocient.step"
COGNOCIENT_REQUEST_FINGERPRINT = "cognocient.request.fingerprint"
COGNOCIENT_BUDGET_DECISION = "cognocient.budget.decision"
# False when a stream ended (closed, abandoned, broken) before the provider reported its usage.
COGNOCIENT_USAGE_COMPLETE = "cognocient.usage.complete"
# Cost the budget guard reserved for the call before it left (estimate, USD).
COGNOCIENT_COST_ESTIMATE_USD = "cognocient.cost.estimate_usd"

# --- cognocient.cost.source values ----------------------------------------------------------
COST_SOURCE_PROVIDER = "provider"
COST_SOURCE_PRICE_TABLE = "price_table"
COST_SOURCE_UNKNOWN_MODEL = "unknown_model"

# --- cognocient.budget.decision values and the event -----------------------------------------
BUDGET_DECISION_BLOCKED = "blocked"
BUDGET_DECISION_WARNED = "warned"
BUDGET_EXCEEDED_EVENT = "cognocient.budget.exceeded"
# Attributes of the cognocient.budget.exceeded event.
BUDGET_EVENT_LIMIT_USD = "cognocient.budget.limit_usd"
BUDGET_EVENT_SPENT_USD = "cognocient.budget.spent_usd"
BUDGET_EVENT_ESTIMATE_USD = "cognocient.budget.estimate_usd"
BUDGET_EVENT_GUARD = "cognocient.budget.guard"

# --- W3C baggage keys -------------------------------------------------------------------------
BAGGAGE_RUN_ID = "cognocient.run.id"
BAGGAGE_FEATURE = "cognocient.feature"

# --- HTTP headers on outgoing LLM requests (as sent; HTTP header names are case-insensitive) ----
HEADER_RUN_ID = "X-Cost-Run-ID"
HEADER_FEATURE = "X-Cost-Feature"
HEADER_RUN_ID_LOWER = HEADER_RUN_ID.lower()
HEADER_FEATURE_LOWER = HEADER_FEATURE.lower()

# --- Bounds of one LLM call on the wire ---------------------------------------------------------
# Counts and costs past these are no real call's. The instrumentation does not take them from an
# answer (nor puts them on a span), and the collector refuses a span's count past the bound and
# ignores its reported cost past the other, so what one sends the other accepts.
MAX_CALL_TOKENS = 10**12
MAX_CALL_COST_USD = 1_000_000

# Span names: "{operation} {model}" for LLM calls, "invoke_agent {agent}" for a run's root.
AGENT_SPAN_NAME_PREFIX = OPERATION_INVOKE_AGENT
