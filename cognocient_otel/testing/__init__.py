"""Test helpers shipped with the package: a local server that speaks the OpenAI and Anthropic APIs."""

from cognocient_otel.testing.llm_server import LLMServer, RecordedRequest, ScriptedResponse

__all__ = ["LLMServer", "RecordedRequest", "ScriptedResponse"]
