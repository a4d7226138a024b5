"""Attribute names the collector reads, as DESIGN.md's wire contract spells them.

Kept here, one name per constant, because the instrumentation's `cognocient_otel/semconv.py` did not
exist yet when the collector was written; the names are the same strings. Values of
`gen_ai.operation.name` that make a span an inference (LLM) span are in `INFERENCE_OPERATIONS`.
"""

from __future__ import annotations

# OpenTelemetry GenAI semantic conventions.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # pre-1.27 name, still sent by some
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"  # pre-1.27 name
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_USAGE_COST = "gen_ai.usage.cost"
GEN_AI_USAGE_COST_AMOUNT = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY = "gen_ai.usage.cost.currency"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
ERROR_TYPE = "error.type"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
SERVER_ADDRESS = "server.address"

# Our namespace (DESIGN.md).
COGNOCIENT_TENANT = "cognocient.tenant"
COGNOCIENT_RUN_ID = "cognocient.run.id"
COGNOCIENT_FEATURE = "cognocient.feature"
COGNOCIENT_COST_USD = "cognocient.cost.usd"
COGNOCIENT_COST_SOURCE = "cognocient.cost.source"
COGNOCIENT_STEP = "cognocient.step"
COGNOCIENT_REQUEST_FINGERPRINT = "cognocient.request.fingerprint"
COGNOCIENT_BUDGET_DECISION = "cognocient.budget.decision"

# The run id captured from the outgoing `X-Cost-Run-ID` header by HTTP instrumentations that record
# request headers (`http.request.header.<lower-case name>`, a string array).
HTTP_REQUEST_HEADER_RUN_ID = "http.request.header.x-cost-run-id"
HTTP_REQUEST_HEADER_FEATURE = "http.request.header.x-cost-feature"

OPERATION_INVOKE_AGENT = "invoke_agent"
OPERATION_EXECUTE_TOOL = "execute_tool"
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
