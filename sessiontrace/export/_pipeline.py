"""The one processor configure() adds to a provider: stamping, then one export queue per
destination, shut down together within one deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from sessiontrace._guard import guarded, internal_error
from sessiontrace._processor import SessionSpanProcessor
from sessiontrace._suppress import is_suppressed
from sessiontrace.export._queue import ExportQueue


class Pipeline(SpanProcessor):
    """Stamping, then export. Reconfiguring swaps its parts, so a provider never holds two.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(Pipeline(shutdown_timeout_s=1.0))
    """

    def __init__(self, shutdown_timeout_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self.stamper = SessionSpanProcessor()
        self.exporters: tuple[SpanProcessor, ...] = ()
        self.shutdown_timeout_s = shutdown_timeout_s
        # Whether configure() found this provider installed by the application (it then
        # exports only where an argument asks it to).
        self.adopted = False
        # The (trace, span) ids of spans started inside suppress_tracing() that have not ended
        # (on_end gets another object than on_start: the SDK hands over a ReadableSpan copy).
        self._suppressed: set[tuple[int, int]] = set()

    def replace(
        self,
        stamper: SessionSpanProcessor,
        exporters: Sequence[SpanProcessor],
        shutdown_timeout_s: float,
    ) -> None:
        """Put in new parts; the old exporters are shut down (bounded) after the swap."""
        with self._lock:
            old = self.exporters
            self.stamper, self.exporters = stamper, tuple(exporters)
            self.shutdown_timeout_s = shutdown_timeout_s
        _shut_down_all(old, shutdown_timeout_s)

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if is_suppressed(parent_context):  # inside suppress_tracing(): neither kept nor counted
            if len(self._suppressed) < _MAX_SUPPRESSED_OPEN:
                self._suppressed.add(_span_key(span))
            return
        self.stamper.on_start(span, parent_context)
        for processor in self.exporters:
            try:
                processor.on_start(span, parent_context)
            except Exception:
                internal_error("export processor on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if self._suppressed:
            key = _span_key(span)
            if key in self._suppressed:
                self._suppressed.discard(key)
                return
        self.stamper.on_end(span)
        for processor in self.exporters:
            try:
                processor.on_end(span)
            except Exception:
                internal_error("export processor on_end")

    def shutdown(self) -> None:
        _shut_down_all(self.exporters, self.shutdown_timeout_s)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        flushed = True
        for processor in self.exporters:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            done = False
            with guarded("export processor force_flush"):
                done = bool(processor.force_flush(remaining))
            flushed = done and flushed
        return flushed


# Open suppressed spans remembered at most: past that (spans that never end), one more such
# span is exported like any other rather than memory growing without bound.
_MAX_SUPPRESSED_OPEN = 100_000


def _span_key(span: ReadableSpan) -> tuple[int, int]:
    context = span.context
    return (context.trace_id, context.span_id) if context is not None else (0, 0)


def _shut_down_all(processors: Sequence[SpanProcessor], timeout_s: float) -> None:
    # One deadline for all: each queue starts draining at once, so a hanging backend costs
    # the timeout once, not once per destination.
    deadline = time.monotonic() + timeout_s
    for processor in processors:
        if isinstance(processor, ExportQueue):
            processor.begin_close()
    for processor in processors:
        with guarded("shutting down an export processor"):
            if isinstance(processor, ExportQueue):
                processor.close_within(deadline)
            else:
                processor.shutdown()
