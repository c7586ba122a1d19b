"""Stands in for an instrumentation library sessiontrace knows nothing about.

It makes its spans from the global provider under its own tracer name, as real
instrumentation libraries do.
"""

from __future__ import annotations

from opentelemetry import trace

_tracer = trace.get_tracer("acme.llm.instrumentation", "9.9.9")


def call_model(prompt: str) -> str:
    with _tracer.start_as_current_span(
        "acme.chat", attributes={"acme.prompt": prompt, "llm.token_count.prompt": 3}
    ) as span:
        span.set_attribute("acme.answer", "hi")
        return "hi"
