"""No-code setup: what ``opentelemetry-instrument`` runs, through OpenTelemetry's entry points.

Three entry points, declared in pyproject.toml:

* ``opentelemetry_pre_instrument``: :func:`before_instrumentation`. ``opentelemetry-instrument``
  runs every function in that group once its distro and its configurator have run, before the
  instrumentors (so an instrumentor that fails, which stops OpenTelemetry's start, does not
  cost the sessions). It stamps sessions on the global provider, whichever way that was
  made: an SDK provider made by a configurator (``opentelemetry-distro``'s, or any vendor's)
  gets the session processor and keeps its own exporters; with no configurator installed (no
  SDK provider yet), sessiontrace builds the provider itself from ``OTEL_TRACES_EXPORTER`` and
  the ``OTEL_EXPORTER_OTLP_*`` variables, as ``configure()`` does. A distro or a configurator
  would not compose: ``opentelemetry-instrument`` loads one of each per process and skips the
  rest, so sessiontrace takes neither.
* ``opentelemetry_post_instrument``: :func:`after_instrumentation`, run after every
  instrumentor: it warns about a library that several packages instrument (each call would
  make a span per package).
* ``opentelemetry_traces_exporter``: ``sessiontrace``, the class :class:`StoreFromEnvironment`,
  so ``OTEL_TRACES_EXPORTER=sessiontrace`` (or ``otlp,sessiontrace``) writes the local store
  named by ``SESSIONTRACE_STORE_PATH``.

``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=sessiontrace`` turns the first off; with
``OTEL_SDK_DISABLED=true`` it does nothing either.

Example:
    >>> from sessiontrace._zero_code import exporter_settings
    >>> exporter_settings({"OTEL_TRACES_EXPORTER": "otlp,sessiontrace"})["store"]
    True
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sessiontrace._auto_instrument import disabled_names, instrumented_twice
from sessiontrace._guard import guarded
from sessiontrace._settings import resolve
from sessiontrace.store import SQLiteSpanExporter

logger = logging.getLogger("sessiontrace")

NAME = "sessiontrace"
_OTLP_NAMES = {"otlp": None, "otlp_proto_grpc": "grpc", "otlp_proto_http": "http/protobuf"}
_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


def exporter_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``configure()``'s arguments for the exporters ``OTEL_TRACES_EXPORTER`` names.

    Unset: ``configure()``'s own choice (OTLP when an endpoint is set, else the store).
    ``none``: stamping only. ``sessiontrace``: the store. ``otlp``, ``otlp_proto_grpc``,
    ``otlp_proto_http``: OTLP, to ``OTEL_EXPORTER_OTLP_*`` or OpenTelemetry's default
    endpoint for the protocol. Any other name: that exporter entry point, built with no
    arguments, as OpenTelemetry's configurator builds it.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not text:
        return {}
    names = [name.strip() for name in text.split(",") if name.strip()]
    arguments: dict[str, Any] = {"store": False}
    if names == ["none"]:
        return arguments
    exporters: list[SpanExporter] = []
    for name in names:
        if name == NAME:
            arguments["store"] = True
        elif name in _OTLP_NAMES:
            arguments.update(_otlp_arguments(_OTLP_NAMES[name], environ))
        else:
            exporters.append(_entry_point_exporter(name))
    arguments["exporters"] = exporters
    return arguments


def _otlp_arguments(protocol: str | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """The protocol (the name's, else the environment's, else gRPC as OpenTelemetry's ``otlp``)
    and, when no ``OTEL_EXPORTER_OTLP_*ENDPOINT`` is set, the protocol's default endpoint."""
    chosen = (
        protocol
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    arguments: dict[str, Any] = {"protocol": chosen}
    endpoint_set = any(
        environ.get(variable, "").strip()
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    if not endpoint_set and chosen in _DEFAULT_ENDPOINTS:
        arguments["endpoint"] = _DEFAULT_ENDPOINTS[chosen]
    return arguments


def _entry_point_exporter(name: str) -> SpanExporter:
    for entry_point in entry_points(group="opentelemetry_traces_exporter", name=name):
        exporter = entry_point.load()()
        if not isinstance(exporter, SpanExporter):
            raise TypeError(f"OTEL_TRACES_EXPORTER names {name!r}, which is not a span exporter")
        return exporter  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(
        f"OTEL_TRACES_EXPORTER names {name!r}, but no installed package offers that exporter; "
        "install it or remove it from the variable"
    )


def _wanted(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if NAME in disabled_names(environ):
        logger.debug("sessiontrace: disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
        return False
    return True


def after_instrumentation() -> None:
    """Warn about libraries instrumented twice (see the module doc); never raises."""
    if _wanted(os.environ):
        with guarded("opentelemetry-instrument's end"):
            _warn_instrumented_twice()


def before_instrumentation() -> None:
    """Stamp sessions on every span ``opentelemetry-instrument`` makes (see the module doc).

    Never raises into the application's start: a problem is logged with its fix and the
    application runs without sessions.
    """
    environ = os.environ
    if not _wanted(environ):
        return
    from sessiontrace._config import configure

    with guarded("opentelemetry-instrument's start"):
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            configure()  # a configurator made the provider: stamp, keep its exporters
            return
        try:
            arguments = exporter_settings(environ)
        except Exception as error:  # reported; the application runs on
            warnings.warn(
                f"sessiontrace: {error}; spans go to the local store instead",
                RuntimeWarning,
                stacklevel=1,
            )
            arguments = {"store": True}
        configure(**arguments)


def _warn_instrumented_twice() -> None:
    # A warning, not a log record: this runs before the application sets up logging.
    for library, packages in instrumented_twice().items():
        warnings.warn(
            f"sessiontrace: {library} is instrumented by {len(packages)} packages "
            f"({', '.join(packages)}), so each call makes {len(packages)} spans. Uninstall all "
            "but one, or run without opentelemetry-instrument and call "
            "sessiontrace.configure(auto_instrument=True), which picks one per library",
            RuntimeWarning,
            stacklevel=1,
        )


class StoreFromEnvironment(SQLiteSpanExporter):
    """The store exporter ``OTEL_TRACES_EXPORTER=sessiontrace`` selects, built with no arguments.

    The file is ``SESSIONTRACE_STORE_PATH`` (default ``./.sessiontrace/sessions.db``), and
    ``SESSIONTRACE_STORE_MAX_AGE`` / ``_MAX_BYTES`` / ``SESSIONTRACE_REDACT`` apply as with
    ``configure()``. OpenTelemetry's configurator puts it behind the SDK's
    ``BatchSpanProcessor``, whose queue (``OTEL_BSP_MAX_QUEUE_SIZE``, default 2048) drops what
    does not fit and logs it; ``configure()``'s own export path counts every loss in the store.

    Example:
        >>> import os
        >>> os.environ["SESSIONTRACE_STORE_PATH"] = "/tmp/sessiontrace-doc-env.db"
        >>> StoreFromEnvironment().path.name
        'sessiontrace-doc-env.db'
        >>> del os.environ["SESSIONTRACE_STORE_PATH"]
    """

    def __init__(self) -> None:
        from sessiontrace.export._destinations import batch_steps, store_path

        settings = resolve({})
        super().__init__(
            store_path(settings),
            max_age=settings["store_max_age"],
            max_bytes=settings["store_max_bytes"],
        )
        self._prepare = batch_steps(settings)("store")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans`` after the export path's batch step (late binding, redaction)."""
        prepared: Sequence[ReadableSpan] | None = None
        with guarded("preparing spans for the store"):
            prepared = self._prepare(spans)
        if prepared is None:
            return SpanExportResult.FAILURE  # the guard logged why; never stored unmasked
        return super().export(prepared)
