"""Helpers for testing code that uses sessiontrace: capture stamped spans, surface errors.

Example:
    >>> from sessiontrace import using_session
    >>> from sessiontrace.testing import capture_spans
    >>> with capture_spans() as captured, using_session("chat-42"):
    ...     with captured.tracer.start_as_current_span("answer"):
    ...         pass
    >>> captured.spans()[0].attributes["session.id"]
    'chat-42'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from sessiontrace import _guard
from sessiontrace._processor import SessionSpanProcessor

__all__ = ["CapturedSpans", "capture_spans", "strict_errors"]


@dataclass(frozen=True)
class CapturedSpans:
    """A private provider stamping with a ``SessionSpanProcessor`` into memory."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    @property
    def tracer(self) -> Tracer:
        """A tracer of the capturing provider."""
        return self.provider.get_tracer("sessiontrace.testing")

    def spans(self) -> list[ReadableSpan]:
        """The spans ended so far, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        """Forget the spans captured so far."""
        self.exporter.clear()


@contextmanager
def capture_spans(*, dialects: str | Iterable[str] | None = None) -> Iterator[CapturedSpans]:
    """Capture spans of a fresh, non-global provider that stamps sessions in ``dialects``.

    Internal errors raise instead of being logged while the block runs.
    """
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SessionSpanProcessor(dialects=dialects))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with strict_errors():
            yield CapturedSpans(provider, exporter)
    finally:
        provider.shutdown()


@contextmanager
def strict_errors(strict: bool = True) -> Iterator[None]:
    """Make sessiontrace's internal errors raise (``strict=True``) or only log, in this block."""
    previous = _guard.set_strict(strict)
    try:
        yield
    finally:
        _guard.set_strict(previous)
        _guard.reset_reported()
