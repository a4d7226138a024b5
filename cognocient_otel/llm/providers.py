"""`gen_ai.provider.name` of a call: from the host it goes to, the user's mapping, or the API shape."""

from __future__ import annotations

from collections.abc import Mapping

from cognocient_otel import semconv as sc

__all__ = ["ProviderResolver"]

# Exact hosts of hosted APIs, as OpenTelemetry GenAI provider names.
_KNOWN_HOSTS = {
    "api.openai.com": sc.PROVIDER_OPENAI,
    "api.anthropic.com": sc.PROVIDER_ANTHROPIC,
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.mistral.ai": "mistral_ai",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "api.perplexity.ai": "perplexity",
    "api.cohere.com": "cohere",
    "api.moonshot.ai": "moonshotai",
}
# Host suffixes of cloud deployments.
_KNOWN_SUFFIXES = (
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
)


class ProviderResolver:
    """Maps a request's host (and port) to a provider name; caches per host.

    `overrides` maps `host` or `host:port` to a provider name (self-hosted servers, proxies).
    Unknown hosts get the provider whose API shape the request has (`openai` for
    OpenAI-compatible paths, `anthropic` for `/messages`), as the official instrumentations do;
    `known` tells the caller whether the host identified the provider (then its prices apply
    first) or only the API shape did (then pricing goes by the model name).
    """

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._overrides = {key.lower(): value for key, value in (overrides or {}).items()}
        self._cache: dict[tuple[str, int | None], str | None] = {}

    def resolve(self, host: str, port: int | None) -> str | None:
        key = (host, port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        provider = self._lookup(host.lower(), port)
        if len(self._cache) < 4096:
            self._cache[key] = provider
        return provider

    def _lookup(self, host: str, port: int | None) -> str | None:
        if port is not None and f"{host}:{port}" in self._overrides:
            return self._overrides[f"{host}:{port}"]
        if host in self._overrides:
            return self._overrides[host]
        if host in _KNOWN_HOSTS:
            return _KNOWN_HOSTS[host]
        for suffix, provider in _KNOWN_SUFFIXES:
            if host.endswith(suffix):
                return provider
        return None
