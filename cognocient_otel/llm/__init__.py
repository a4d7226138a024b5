"""Recognising LLM API calls in HTTP traffic, reading their usage, and tracing them."""
