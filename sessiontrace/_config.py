"""configure(): one call to a ready TracerProvider that stamps sessions and exports them.

Each setting is read from the argument, else its environment variable, else its default, as
declared once in ``SETTINGS``. A second call never adds a second processor: sessiontrace
installs one pipeline per provider and later calls reconfigure it.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from sessiontrace._guard import internal_error
from sessiontrace._processor import SessionSpanProcessor, normalize_dialects
from sessiontrace._propagation import install_propagator

logger = logging.getLogger("sessiontrace")

PROTOCOLS = ("http/protobuf", "grpc")


@dataclass(frozen=True)
class Setting:
    """One configure() setting: argument name, environment variables (first set wins), default."""

    name: str
    env: tuple[str, ...]
    default: Any
    parse: Callable[[str], Any] = str


def _parse_headers(text: str) -> dict[str, str]:
    """Parse ``k1=v1,k2=v2`` (values URL-encoded) as in OTEL_EXPORTER_OTLP_HEADERS."""
    headers: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair.strip()!r} is not key=value")
        headers[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(value.strip())
    return headers


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


SETTINGS: tuple[Setting, ...] = (
    Setting("service_name", ("OTEL_SERVICE_NAME",), "unknown_service"),
    Setting("traces_endpoint", ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",), None),
    Setting("endpoint", ("OTEL_EXPORTER_OTLP_ENDPOINT",), None),
    Setting(
        "protocol",
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        "http/protobuf",
    ),
    Setting(
        "headers",
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        None,
        _parse_headers,
    ),
    Setting("dialects", ("SESSIONTRACE_DIALECTS",), None, normalize_dialects),
    Setting("store", ("SESSIONTRACE_STORE",), None, _parse_bool),
    Setting("propagate", ("SESSIONTRACE_PROPAGATE",), True, _parse_bool),
    Setting("store_path", ("SESSIONTRACE_STORE_PATH",), None),
)


def resolve(
    arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Each setting's value: the argument if given, else its environment variable, else default.

    An environment variable that does not parse is warned about and its default used.
    """
    environ = os.environ if environ is None else environ
    resolved: dict[str, Any] = {}
    for setting in SETTINGS:
        value = arguments.get(setting.name)
        if value is None:
            value = setting.default
            for variable in setting.env:
                text = environ.get(variable)
                if text is None or not text.strip():
                    continue
                try:
                    value = setting.parse(text)
                except (TypeError, ValueError) as error:
                    warnings.warn(
                        f"sessiontrace: ignoring {variable}={text!r} ({error}); using the "
                        f"default for {setting.name}. Fix or unset the variable.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                break
        resolved[setting.name] = value
    return resolved


def _otlp_exporter(settings: Mapping[str, Any]) -> SpanExporter | None:
    protocol = settings["protocol"]
    endpoint, traces_endpoint = settings["endpoint"], settings["traces_endpoint"]
    if not endpoint and not traces_endpoint:
        return None
    headers = settings["headers"] or {}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        target = traces_endpoint or endpoint
        insecure = urllib.parse.urlparse(target).scheme in ("http", "")
        return GrpcExporter(endpoint=target, headers=headers, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    if not traces_endpoint:
        base = endpoint.rstrip("/")
        traces_endpoint = base if base.endswith("/v1/traces") else base + "/v1/traces"
    return HttpExporter(endpoint=traces_endpoint, headers=headers)


class _Pipeline(SpanProcessor):
    """The one processor sessiontrace adds to a provider: stamping, then export.

    Reconfiguring swaps its parts, so a provider never holds two of them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stamper = SessionSpanProcessor()
        self.exporters: tuple[SpanProcessor, ...] = ()

    def replace(self, stamper: SessionSpanProcessor, exporters: Sequence[SpanProcessor]) -> None:
        with self._lock:
            old = self.exporters
            self.stamper, self.exporters = stamper, tuple(exporters)
        for processor in old:
            processor.shutdown()

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.stamper.on_start(span, parent_context)
        for processor in self.exporters:
            processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.stamper.on_end(span)
        for processor in self.exporters:
            try:
                processor.on_end(span)
            except Exception:
                internal_error("export processor on_end")

    def shutdown(self) -> None:
        for processor in self.exporters:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self.exporters)


_PIPELINE_ATTRIBUTE = "_sessiontrace_pipeline"
_configure_lock = threading.Lock()


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    traces_endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    dialects: str | Iterable[str] | None = None,
    store: bool | None = None,
    store_path: str | os.PathLike[str] | None = None,
    exporters: Sequence[SpanExporter] = (),
    tracer_provider: TracerProvider | None = None,
    batch: bool = True,
    propagate: bool | None = None,
) -> TracerProvider:
    """Set up tracing with sessions in one call and return the ready ``TracerProvider``.

    With no endpoint anywhere, spans go to the local SQLite store (read it with the
    ``sessiontrace`` command). If an SDK ``TracerProvider`` is already installed globally, the
    session processor is added to it instead of replacing it (exporters are then added only
    when an endpoint, ``store=True`` or ``exporters`` is passed as an argument). Calling it
    again reconfigures; it never adds a second processor.

    Args:
        service_name: the ``service.name`` resource attribute. Env: ``OTEL_SERVICE_NAME``.
        endpoint: OTLP base URL, e.g. ``http://localhost:6006`` (``/v1/traces`` is added for
            HTTP). Env: ``OTEL_EXPORTER_OTLP_ENDPOINT``.
        traces_endpoint: full OTLP traces URL, used as is.
            Env: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``.
        protocol: ``"http/protobuf"`` (default) or ``"grpc"``.
            Env: ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``.
        headers: headers for the OTLP exporter, e.g. an API key.
            Env: ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``, ``OTEL_EXPORTER_OTLP_HEADERS``.
        dialects: attribute key families to stamp (see ``SessionSpanProcessor``).
            Env: ``SESSIONTRACE_DIALECTS``.
        store: write the local store: None means only when no endpoint is set.
            Env: ``SESSIONTRACE_STORE``.
        store_path: the store's SQLite file. Env: ``SESSIONTRACE_STORE_PATH``; default
            ``./.sessiontrace/sessions.db``.
        exporters: further span exporters to send to.
        tracer_provider: configure this provider instead of the global one.
        batch: export in a background thread (default); False exports as each span ends.
        propagate: add the session and user to the W3C ``baggage`` of outgoing calls made
            by instrumented HTTP clients (default True). Env: ``SESSIONTRACE_PROPAGATE``.

    Returns:
        The provider, with the session processor and the exporters installed.

    Raises:
        ValueError: a setting has a value that is not allowed; the message says which.

    Example:
        >>> import sessiontrace
        >>> provider = sessiontrace.configure(
        ...     endpoint="http://localhost:6006", tracer_provider=TracerProvider()
        ... )
        >>> provider.shutdown()
    """
    if headers is not None:
        headers = {str(key).lower(): str(value) for key, value in headers.items()}
    explicit_export = bool(endpoint or traces_endpoint or store or exporters)
    settings = resolve(
        {
            "service_name": service_name,
            "endpoint": endpoint,
            "traces_endpoint": traces_endpoint,
            "protocol": protocol,
            "headers": headers,
            "dialects": normalize_dialects(dialects) if dialects is not None else None,
            "store": store,
            "store_path": os.fspath(store_path) if store_path is not None else None,
            "propagate": propagate,
        }
    )
    if settings["protocol"] not in PROTOCOLS:
        raise ValueError(
            f"protocol {settings['protocol']!r} is not supported; choose from {list(PROTOCOLS)}"
        )
    stamper = SessionSpanProcessor(dialects=settings["dialects"])
    with _configure_lock:
        provider, adopted = _target_provider(tracer_provider, settings["service_name"])
        span_exporters: list[SpanExporter] = []
        if not adopted or explicit_export:
            otlp = _otlp_exporter(settings)
            if otlp is not None:
                span_exporters.append(otlp)
            if settings["store"] or (settings["store"] is None and otlp is None):
                span_exporters.append(_store_exporter(settings["store_path"]))
            span_exporters.extend(exporters)
        wrapper = BatchSpanProcessor if batch else SimpleSpanProcessor
        pipeline: _Pipeline | None = getattr(provider, _PIPELINE_ATTRIBUTE, None)
        if pipeline is None:
            pipeline = _Pipeline()
            setattr(provider, _PIPELINE_ATTRIBUTE, pipeline)
            provider.add_span_processor(pipeline)
        pipeline.replace(stamper, [wrapper(exporter) for exporter in span_exporters])
        if settings["propagate"]:
            install_propagator()
    return provider


def _target_provider(
    given: TracerProvider | None, service_name: str
) -> tuple[TracerProvider, bool]:
    """The provider to configure, and whether it was made by someone else (adopted)."""
    if given is not None:
        return given, False
    installed = trace.get_tracer_provider()
    if isinstance(installed, TracerProvider):
        return installed, getattr(installed, _PIPELINE_ATTRIBUTE, None) is None
    if not isinstance(installed, trace.ProxyTracerProvider):
        logger.warning(
            "sessiontrace: the global tracer provider is a %s, not an SDK TracerProvider; "
            "configure() returns its own provider without installing it globally",
            type(installed).__name__,
        )
        return TracerProvider(resource=Resource.create({SERVICE_NAME: service_name})), False
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    trace.set_tracer_provider(provider)
    return provider, False


def _store_exporter(path: str | None) -> SpanExporter:
    from sessiontrace.store import DEFAULT_STORE_PATH, SQLiteSpanExporter

    return SQLiteSpanExporter(path or DEFAULT_STORE_PATH)
