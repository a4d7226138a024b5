"""Attribute names the collector reads: those of the wire contract come from
`cognocient_otel/semconv.py`; the few the instrumentation never writes but other GenAI
instrumentations do are declared here.
"""

from __future__ import annotations

from cognocient_otel.semconv import (  # noqa: F401  (re-exported for the decoder)
    COGNOCIENT_BUDGET_DECISION,
    COGNOCIENT_COST_SOURCE,
    COGNOCIENT_COST_USD,
    COGNOCIENT_FEATURE,
    COGNOCIENT_REQUEST_FINGERPRINT,
    COGNOCIENT_RUN_ID,
    COGNOCIENT_STEP,
    ERROR_TYPE,
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    GEN_AI_USAGE_COST,
    GEN_AI_USAGE_COST_AMOUNT,
    GEN_AI_USAGE_COST_CURRENCY,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    HEADER_FEATURE_LOWER,
    HEADER_RUN_ID_LOWER,
    LLM_OPERATIONS,
    OPERATION_EXECUTE_TOOL,
    OPERATION_INVOKE_AGENT,
    SERVER_ADDRESS,
)

INFERENCE_OPERATIONS = LLM_OPERATIONS

# Multi-tenant deployments put the tenant on the resource (or the span).
COGNOCIENT_TENANT = "cognocient.tenant"
# Pre-1.27 GenAI names, still sent by some instrumentations (OpenLLMetry, OpenLIT versions).
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
# The run id captured from the outgoing `X-Cost-Run-ID` header by HTTP instrumentations that record
# request headers (OpenTelemetry's `http.request.header.<lower-case name>`, a string array).
HTTP_REQUEST_HEADER_RUN_ID = f"http.request.header.{HEADER_RUN_ID_LOWER}"
HTTP_REQUEST_HEADER_FEATURE = f"http.request.header.{HEADER_FEATURE_LOWER}"
