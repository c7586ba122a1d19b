"""configure(): one call to a ready TracerProvider that stamps sessions and exports them.

Each setting is read from the argument, else its environment variable, else its default, as
declared once in ``_settings.SETTINGS``. A second call never adds a second processor: sessiontrace
installs one pipeline per provider and later calls reconfigure it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from sessiontrace._auto_instrument import instrument_installed
from sessiontrace._baggage import install_propagator
from sessiontrace._config_checks import check_settings
from sessiontrace._guard import guarded
from sessiontrace._processor import SessionSpanProcessor
from sessiontrace._redaction import Redaction
from sessiontrace._sampler import check_provider_sampler, env_sampler
from sessiontrace._settings import check_arguments, resolve
from sessiontrace.export._destinations import build_destinations
from sessiontrace.export._pipeline import Pipeline

logger = logging.getLogger("sessiontrace")

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
    durable: bool | None = None,
    spool_path: str | os.PathLike[str] | None = None,
    shutdown_timeout: float | None = None,
    queue_size: int | None = None,
    store_max_age: float | str | None = None,
    store_max_bytes: int | str | None = None,
    redact: bool | Redaction | None = None,
    auto_instrument: bool | Iterable[str] | None = None,
    instrumentation_choice: Mapping[str, str] | None = None,
) -> TracerProvider:
    """Set up tracing with sessions in one call and return the ready ``TracerProvider``.

    With no endpoint anywhere, spans go to the local SQLite store (read it with the
    ``sessiontrace`` command). If an SDK ``TracerProvider`` is already installed globally, the
    session processor is added to it instead of replacing it (exporters are then added only
    when an endpoint, ``store=True`` or ``exporters`` is passed as an argument). Calling it
    again reconfigures; it never adds a second processor. Every setting is checked before
    anything changes: after an error the process is as it was, and a corrected call works.

    Spans are exported off the application thread, one queue per destination; nothing is
    dropped without being counted (``sessiontrace doctor`` shows the counts). See
    docs/reliability.md for the policies.

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
        durable: keep spans the OTLP backend cannot take in a local spool and send them,
            in order, once it answers again, also after a restart (default False).
            Env: ``SESSIONTRACE_DURABLE``.
        spool_path: the spool's SQLite file. Env: ``SESSIONTRACE_SPOOL_PATH``; default
            ``spool.db`` beside the store.
        shutdown_timeout: seconds that exit may wait for the last spans to go (default 5);
            what is left is counted (or stays spooled when durable).
            Env: ``SESSIONTRACE_SHUTDOWN_TIMEOUT``.
        queue_size: spans each export queue holds before its full-queue policy applies
            (default 8192). Env: ``SESSIONTRACE_QUEUE_SIZE``.
        store_max_age: remove sessions from the local store once their last span is this
            old: seconds, or text such as ``"7d"`` (default: keep). Whole sessions go, with
            their sub-sessions, in a background thread. Env: ``SESSIONTRACE_STORE_MAX_AGE``.
        store_max_bytes: remove the oldest sessions while the store takes more than this:
            bytes, or text such as ``"500MB"`` (default: no limit).
            Env: ``SESSIONTRACE_STORE_MAX_BYTES``.
        redact: mask e-mail addresses, API keys, tokens and card numbers in every span
            before any destination gets it (``True``), or apply a ``sessiontrace.Redaction``
            rule set (default False; see docs/redaction.md). OpenInference's ``HIDE_*``
            switches and the GenAI message-content switch are honoured either way.
            Env: ``SESSIONTRACE_REDACT``.
        auto_instrument: turn on every installed instrumentation (OpenInference's and
            OpenTelemetry's entry points, and sessiontrace's own integrations), one package
            per library, honouring OpenTelemetry's disabled-instrumentations list; or only the
            libraries named, e.g. ``["openai", "langchain"]`` (default False; see
            docs/integrations.md). ``sessiontrace.auto_instrumented()`` says what was done.
            Env: ``SESSIONTRACE_AUTO_INSTRUMENT`` (``true`` or ``openai,langchain``).
        instrumentation_choice: which package instruments a library several offer, e.g.
            ``{"openai": "opentelemetry-instrumentation-openai-v2"}`` (default: OpenInference's,
            else OpenTelemetry's own, else the first by name).
            Env: ``SESSIONTRACE_INSTRUMENTATION_CHOICE`` (``openai=package,...``).

    Returns:
        The provider, with the session processor and the exporters installed.

    Raises:
        TypeError: a setting has the wrong type; the message says which and what is allowed.
        ValueError: a setting has a value that is not allowed; the message says which.

    Example:
        >>> import sessiontrace
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = sessiontrace.configure(
        ...     endpoint="http://localhost:6006", tracer_provider=TracerProvider()
        ... )
        >>> provider.shutdown()
    """
    given = dict(locals())  # every argument, by name
    arguments = check_arguments(given)
    explicit_export = bool(endpoint or traces_endpoint or store or exporters)
    settings = resolve(arguments)
    check_settings(settings)
    stamper = SessionSpanProcessor(dialects=settings["dialects"])
    with _configure_lock:
        installed = trace.get_tracer_provider()
        # A provider the application installed itself stays adopted on every later call: a
        # second configure() must not start exporting (to a store in the working directory).
        existing: Pipeline | None = getattr(installed, _PIPELINE_ATTRIBUTE, None)
        adopted = (
            tracer_provider is None
            and isinstance(installed, TracerProvider)
            and (existing is None or existing.adopted)
        )
        # Everything that can fail is built before anything global changes.
        destinations = build_destinations(
            settings, exporters, export=not adopted or explicit_export, batch=batch
        )
        provider = _target_provider(tracer_provider, settings["service_name"])
        pipeline: Pipeline | None = getattr(provider, _PIPELINE_ATTRIBUTE, None)
        if pipeline is None:
            pipeline = Pipeline(settings["shutdown_timeout"])
            pipeline.adopted = adopted
            setattr(provider, _PIPELINE_ATTRIBUTE, pipeline)
            provider.add_span_processor(pipeline)
        pipeline.replace(stamper, destinations, settings["shutdown_timeout"])
        if provider is tracer_provider or provider is installed:
            check_provider_sampler(provider)  # its sampler is the application's to choose
        if settings["propagate"]:
            install_propagator()
    if settings["auto_instrument"]:
        libraries = None if settings["auto_instrument"] is True else settings["auto_instrument"]
        with guarded("auto_instrument"):
            instrument_installed(provider, libraries, settings["instrumentation_choice"] or {})
    return provider


def _target_provider(given: TracerProvider | None, service_name: str) -> TracerProvider:
    """The provider to configure: the given one, the installed SDK one, or a new global one.

    A new one gets the sampler ``OTEL_TRACES_SAMPLER=sessiontrace`` selects; with any other
    value, TracerProvider reads the variables itself (it knows the SDK's own samplers only).
    """
    if given is not None:
        return given
    installed = trace.get_tracer_provider()
    if isinstance(installed, TracerProvider):
        return installed
    if not isinstance(installed, trace.ProxyTracerProvider):
        logger.warning(
            "sessiontrace: the global tracer provider is a %s, not an SDK TracerProvider; "
            "configure() returns its own provider without installing it globally",
            type(installed).__name__,
        )
        return _new_provider(service_name)
    provider = _new_provider(service_name)
    trace.set_tracer_provider(provider)
    return provider


def _new_provider(service_name: str) -> TracerProvider:
    resource = Resource.create({SERVICE_NAME: service_name})
    return TracerProvider(sampler=env_sampler(), resource=resource)
