"""Writing spans at chosen times into a real SQLite store, for the store and CLI tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from sessiontrace.store import SQLiteSpanExporter

T0 = 1_700_000_000_000_000_000  # ns; spans start at T0 + an offset in ms
MS = 1_000_000


@contextmanager
def store_tracer(db: Path, name: str = "store-tests") -> Iterator[trace.Tracer]:
    """A tracer whose spans are written to ``db`` as each ends."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    try:
        yield provider.get_tracer(name)
    finally:
        provider.shutdown()


@contextmanager
def stamping_tracer(db: Path, name: str = "store-tests") -> Iterator[trace.Tracer]:
    """A tracer whose spans sessiontrace stamps (in every dialect) and ``db`` stores."""
    from sessiontrace import SessionSpanProcessor

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SessionSpanProcessor(dialects="all"))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    try:
        yield provider.get_tracer(name)
    finally:
        provider.shutdown()


@contextmanager
def timed(tracer, name, start_ms, end_ms, *, root=False, error=None, **attributes):
    """A span from T0 + start_ms to T0 + end_ms; a root of a new trace when ``root``; ERROR
    with ``error`` as its description when one is given."""
    with tracer.start_as_current_span(
        name,
        context=Context() if root else None,
        attributes=attributes,
        start_time=T0 + start_ms * MS,
        end_on_exit=False,
    ) as span:
        try:
            yield span
        finally:
            if error:
                span.set_status(Status(StatusCode.ERROR, error))
            span.end(end_time=T0 + end_ms * MS)
