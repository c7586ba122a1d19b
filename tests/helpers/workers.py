"""Functions that tests run in other processes (they must be importable there)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sessiontrace


def describe(label: str) -> dict[str, object]:
    """What is in force in this process, and what a span made here is stamped with."""
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(sessiontrace.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("worker").start_as_current_span(label):
        pass
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    now = sessiontrace.current()
    return {
        "session_id": now.session_id,
        "user_id": now.user_id,
        "metadata": dict(now.metadata),
        "tags": list(now.tags),
        "span_attributes": dict(span.attributes or {}),
        "span_trace_id": span.context.trace_id,
        "span_parent_id": span.parent.span_id if span.parent else None,
        "current_span_valid": trace.get_current_span().get_span_context().is_valid,
    }
