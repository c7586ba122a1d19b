"""Hand one batch to an exporter: text repaired, instrumentation suppressed, failures counted.

Both export processors use it: :class:`~sessiontrace.export._queue.ExportQueue` from its
worker thread, and :class:`ExportEach` on the thread that ends each span
(``configure(batch=False)``). An exporter that raises is contained and its batch counted as
lost; ``LOSS_MESSAGES`` holds the one sentence (cause and fix) logged for each kind of loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from opentelemetry.context import (
    _SUPPRESS_INSTRUMENTATION_KEY,
    Context,
    attach,
    detach,
    set_value,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sessiontrace._guard import guarded, internal_error
from sessiontrace.export._losses import LEDGER
from sessiontrace.export._repair import repair_batch

logger = logging.getLogger("sessiontrace")

Prepare = Callable[[Sequence[ReadableSpan]], Sequence[ReadableSpan]]


def deliver(
    exporter: SpanExporter,
    spans: Sequence[ReadableSpan],
    destination: str,
    prepare: Prepare | None = None,
    count_failure: Callable[[], bool] | None = None,
) -> bool:
    """Export ``spans`` with instrumentation suppressed; count them as lost if that fails.

    A failure is not counted when the exporter counts its own (``counts_losses = True``, as
    the durable spool does) or ``count_failure()`` says it was counted already.

    Text that no encoder accepts (lone surrogates: OTLP's protobuf encoder drops such an
    attribute, SQLite fails the batch) is repaired first and counted, unless the exporter
    repairs text itself (``repairs_text = True``, as the store exporter does).
    """
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        if prepare is not None:
            spans = prepare(spans)
        def failed(detail: str = "") -> bool:
            counted_elsewhere = getattr(exporter, "counts_losses", False)
            if not counted_elsewhere and (count_failure is None or count_failure()):
                _record_failure(destination, len(spans), detail)
            return False

        try:
            if not getattr(exporter, "repairs_text", False):
                spans = _repaired(spans, destination)
            if exporter.export(spans) is SpanExportResult.SUCCESS:
                return True
        except Exception as error:
            # The exporter's own failure (a third-party exporter may raise): counted and
            # logged, never a reason for the worker to stop.
            logger.debug("sessiontrace: the exporter to %s raised", destination, exc_info=True)
            return failed(f" It raised {type(error).__name__}.")
        return failed()
    except Exception:
        _record_failure(destination, len(spans))
        internal_error(f"exporting to {destination}")
        return False
    finally:
        detach(token)


def _repaired(spans: Sequence[ReadableSpan], destination: str) -> Sequence[ReadableSpan]:
    spans, count = repair_batch(spans)
    if count:
        LEDGER.record(
            "unencodable-text",
            destination,
            count,
            "span text held lone surrogates; they were sent as U+FFFD. Decode such text with "
            "errors='replace' at the source to keep it readable.",
            kind="repaired",
        )
    return spans


def _record_failure(destination: str, count: int, detail: str = "") -> None:
    message = LOSS_MESSAGES["export-failed"].format(destination=destination) + detail
    LEDGER.record("export-failed", destination, count, message)


class ExportEach(SpanProcessor):
    """Export each span as it ends, on the thread that ends it (``configure(batch=False)``),
    counting failures like :class:`ExportQueue`.

    Example:
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter)
        >>> processor = ExportEach(InMemorySpanExporter(), destination="memory")
    """

    def __init__(
        self, exporter: SpanExporter, *, destination: str, prepare: Prepare | None = None
    ) -> None:
        self.exporter = exporter
        self.destination = destination
        self._prepare = prepare

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            deliver(self.exporter, [span], self.destination, self._prepare)

    def shutdown(self) -> None:
        with guarded(f"shutting down the exporter to {self.destination}"):
            self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))


LOSS_MESSAGES = {
    "queue-full": (
        "the export queue ({destination}) was full: spans were made faster than they "
        "could be sent. Raise SESSIONTRACE_QUEUE_SIZE, or use configure(durable=True) for a "
        "remote backend."
    ),
    "export-failed": (
        "the exporter to {destination} failed the batch (its own log says why). Check "
        "that the backend is up and reachable; configure(durable=True) keeps spans through "
        "outages."
    ),
    "shutdown-timeout": (
        "the process was ending and {destination} did not take the last spans within "
        "the shutdown timeout. Raise SESSIONTRACE_SHUTDOWN_TIMEOUT, or use "
        "configure(durable=True) to keep them for the next start."
    ),
    "after-shutdown": (
        "spans ended after the export to {destination} was shut down. Call "
        "configure() again, or end spans before the provider shuts down."
    ),
}
