"""The export path that configure() owns, for people who build their own pipeline.

``ExportQueue`` batches spans to any exporter and counts what it cannot deliver;
``SpoolingExporter`` keeps spans through backend outages; :func:`loss_totals` tells what this
process has dropped or repaired so far (the local store keeps the records for
``sessiontrace doctor``).

Example:
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter)
    >>> from sessiontrace.export import ExportQueue, loss_totals
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(ExportQueue(InMemorySpanExporter(), destination="memory"))
    >>> isinstance(loss_totals(), dict)
    True
"""

from __future__ import annotations

from sessiontrace.export._losses import LEDGER, Loss
from sessiontrace.export._queue import ExportQueue
from sessiontrace.export._senders import GrpcSender, HttpSender
from sessiontrace.export._spool import SpoolingExporter


def loss_totals() -> dict[tuple[str, str, str], int]:
    """``{(kind, reason, destination): count}`` of spans dropped and values repaired in this
    process since it started (kind is ``"dropped"`` or ``"repaired"``).

    Example:
        >>> from sessiontrace.export import loss_totals
        >>> all(kind in ("dropped", "repaired") for kind, _, _ in loss_totals())
        True
    """
    return LEDGER.totals()


__all__ = ["ExportQueue", "GrpcSender", "HttpSender", "Loss", "SpoolingExporter", "loss_totals"]
