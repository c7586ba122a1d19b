"""The destinations configure() exports to: each exporter built and put behind its queue."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from sessiontrace import _reservation
from sessiontrace._late_binding import BindAtExport
from sessiontrace._processor import normalize_dialects
from sessiontrace._redaction import Redaction, as_redaction, redact_all
from sessiontrace._redaction_env import hidden_key_rule
from sessiontrace.export._deliver import ExportEach, Prepare
from sessiontrace.export._queue import ExportQueue, OnFull


def _restore_stamped(spans: Sequence[ReadableSpan]) -> Sequence[ReadableSpan]:
    return [_reservation.restore_stamped(span) for span in spans]


def stamped_keys_restorer() -> Prepare | None:
    """What the export path applies to each batch: on an SDK where stamped keys cannot be
    reserved on the span itself, put back those its attribute limit evicted."""
    return None if _reservation.SCOPED else _restore_stamped


def traces_url(settings: Mapping[str, Any]) -> str | None:
    """The OTLP traces target: the full traces URL, or the base URL with ``/v1/traces``
    (HTTP), or the base as given (gRPC); None when no endpoint is set."""
    endpoint, traces_endpoint = settings["endpoint"], settings["traces_endpoint"]
    if traces_endpoint:
        return str(traces_endpoint)
    if not endpoint:
        return None
    if settings["protocol"] == "grpc":
        return str(endpoint)
    base = str(endpoint).rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def otlp_exporter(settings: Mapping[str, Any], target: str) -> SpanExporter:
    """The OTLP exporter for ``target``, durable (spooled) when ``settings['durable']``."""
    headers = dict(settings["headers"] or {})
    grpc = settings["protocol"] == "grpc"
    if settings["durable"]:
        from sessiontrace.export._senders import GrpcSender, HttpSender
        from sessiontrace.export._spool import SpoolingExporter

        insecure = urllib.parse.urlparse(target).scheme in ("http", "")
        sender = (
            GrpcSender(target, headers=headers, insecure=insecure)
            if grpc
            else HttpSender(target, headers=headers)
        )
        return SpoolingExporter(
            sender,
            path=spool_path(settings),
            shutdown_timeout_s=settings["shutdown_timeout"],
        )
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        insecure = urllib.parse.urlparse(target).scheme in ("http", "")
        return GrpcExporter(endpoint=target, headers=headers, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=target, headers=headers)


def store_path(settings: Mapping[str, Any]) -> Path:
    from sessiontrace.store import DEFAULT_STORE_PATH

    return Path(settings["store_path"] or DEFAULT_STORE_PATH)


def spool_path(settings: Mapping[str, Any]) -> Path:
    if settings["spool_path"]:
        return Path(settings["spool_path"])
    return store_path(settings).with_name("spool.db")


def build_destinations(
    settings: Mapping[str, Any],
    exporters: Sequence[SpanExporter],
    *,
    export: bool,
    batch: bool,
) -> list[SpanProcessor]:
    """One processor per destination: the OTLP backend, the store, each given exporter.

    Local destinations (the store, the durable spool) make the producer wait for room when
    their queue is full; remote ones drop, counted (see ``ExportQueue``).
    """
    if not export:
        return []
    built: list[tuple[SpanExporter, str, OnFull]] = []
    target = traces_url(settings)
    if target is not None:
        kind = "grpc" if settings["protocol"] == "grpc" else "http"
        on_full: OnFull = "block" if settings["durable"] else "drop"
        built.append((otlp_exporter(settings, target), f"otlp {kind} {target}", on_full))
    if settings["store"] or (settings["store"] is None and target is None):
        from sessiontrace.store import SQLiteSpanExporter

        store = SQLiteSpanExporter(
            store_path(settings),
            max_age=settings["store_max_age"],
            max_bytes=settings["store_max_bytes"],
        )
        built.append((store, "store", "block"))
    for exporter in exporters:
        built.append((exporter, type(exporter).__name__, "drop"))
    prepare = batch_steps(settings)
    if not batch:
        return [
            ExportEach(exporter, destination=name, prepare=prepare(name))
            for exporter, name, _ in built
        ]
    return [
        ExportQueue(
            exporter,
            destination=name,
            on_full=on_full,
            max_queue_size=settings["queue_size"],
            shutdown_timeout_s=settings["shutdown_timeout"],
            prepare=prepare(name),
        )
        for exporter, name, on_full in built
    ]


def batch_steps(settings: Mapping[str, Any]) -> Callable[[str], Prepare]:
    """Each destination's batch step, by destination name, for these settings (see below)."""
    dialects = normalize_dialects(settings["dialects"])
    return _preparer(stamped_keys_restorer(), redaction_of(settings), dialects)


def redaction_of(settings: Mapping[str, Any]) -> Redaction | None:
    """The rules ``redact`` asks for, or just the content switches the environment sets."""
    redaction = as_redaction(settings["redact"])
    if redaction is None and hidden_key_rule() is not None:
        redaction = Redaction(defaults=False)
    return redaction


def _preparer(
    restore: Prepare | None, redaction: Redaction | None, dialects: tuple[str, ...]
) -> Callable[[str], Prepare]:
    """Each destination's batch step: the stamped keys put back, the keys of traces bound
    after their spans ended added (``update_current_trace``), then the redaction (in the
    export thread, before any exporter, the durable spool included, sees the spans)."""

    def for_destination(destination: str) -> Prepare:
        if redaction is None:
            return BindAtExport(dialects, before=restore)

        def redact(spans: Sequence[ReadableSpan]) -> Sequence[ReadableSpan]:
            return redact_all(redaction, spans, destination)

        return BindAtExport(dialects, before=restore, after=redact)

    return for_destination
