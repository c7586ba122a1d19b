"""Helpers for testing code that uses sessiontrace: capture stamped spans, surface errors.

``capture_spans()`` captures the spans of a private provider; with ``global_provider=True``
also those of the global one, which ``trace.get_tracer(...)`` and instrumentation libraries
use (the pytest fixture ``sessiontrace_spans`` is that, per test).

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

import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Tracer

from sessiontrace import _guard, _keys
from sessiontrace._guard import internal_error
from sessiontrace._processor import SessionSpanProcessor

__all__ = ["CapturedSpans", "capture_spans", "strict_errors"]


@dataclass(frozen=True)
class CapturedSpans:
    """The spans a :func:`capture_spans` block captured, stamped with sessions, in memory.

    Attributes:
        provider: the private provider whose spans are captured (see :attr:`tracer`).
        exporter: the in-memory exporter every captured span ends in, in the order spans end.
    """

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

    def by_name(self, name: str) -> list[ReadableSpan]:
        """The spans named ``name``, in the order they ended (an empty list if none).

        Raises:
            TypeError: ``name`` is not a str.

        Example:
            >>> with capture_spans() as captured:
            ...     for _ in range(2):
            ...         captured.tracer.start_span("retry").end()
            >>> len(captured.by_name("retry")), captured.by_name("answer")
            (2, [])
        """
        _check_name(name, "by_name")
        return [span for span in self.spans() if span.name == name]

    def attributes(self, name: str) -> dict[str, Any]:
        """The attributes of the one span named ``name``, as a plain dict.

        Raises:
            TypeError: ``name`` is not a str.
            AssertionError: no span, or more than one, is named ``name``; the message lists
                the names of the spans captured.

        Example:
            >>> from sessiontrace import using_attributes
            >>> with capture_spans() as captured:
            ...     with using_attributes(session_id="chat-42", user_id="ada"):
            ...         captured.tracer.start_span("answer").end()
            >>> captured.attributes("answer")["user.id"]
            'ada'
        """
        _check_name(name, "attributes")
        spans = self.spans()
        found = [span for span in spans if span.name == name]
        if len(found) != 1:
            raise AssertionError(
                f"expected one span named {name!r}, found {len(found)}; the spans captured "
                f"are named {[span.name for span in spans]}"
            )
        return dict(found[0].attributes or {})

    def sessions(self) -> dict[str | None, list[ReadableSpan]]:
        """The spans grouped by session id, sessions in the order their first span ended.

        A span's session id is read from the first of ``session.id``,
        ``gen_ai.conversation.id``, ``langfuse.session.id`` and
        ``traceloop.association.properties.session_id`` it has (the order the store and the
        CLI read them in); spans with none are under ``None``, present only if there are any.

        Example:
            >>> from sessiontrace import using_session
            >>> with capture_spans() as captured:
            ...     for session in ("chat-1", "chat-2", "chat-1"):
            ...         with using_session(session):
            ...             captured.tracer.start_span("turn").end()
            ...     captured.tracer.start_span("startup").end()
            >>> {key: len(spans) for key, spans in captured.sessions().items()}
            {'chat-1': 2, 'chat-2': 1, None: 1}
        """
        grouped: dict[str | None, list[ReadableSpan]] = {}
        for span in self.spans():
            grouped.setdefault(_session_of(span), []).append(span)
        return grouped


def _check_name(name: object, method: str) -> None:
    if not isinstance(name, str):
        raise TypeError(
            f"CapturedSpans.{method}() takes a span name as a str, got {type(name).__name__}"
        )


def _session_of(span: ReadableSpan) -> str | None:
    attributes = span.attributes or {}
    for key in _keys.SESSION_ID_KEYS:
        value = attributes.get(key)
        if isinstance(value, str):
            return value
    return None


class _Route:
    """One capture's share of the global provider's spans: those started while it is on."""

    def __init__(self, stamper: SessionSpanProcessor, export: SimpleSpanProcessor) -> None:
        self._stamper = stamper
        self._export = export
        # The span ids started while this route was on: a span started in one test and
        # ended in the next (a thread left running) is not the next test's.
        self._started: set[int] = set()

    def on_start(self, span: Span, parent_context: otel_context.Context | None) -> None:
        try:
            self._started.add(span.get_span_context().span_id)
        except Exception:
            internal_error("capture_spans: a span of the global provider started")
        self._stamper.on_start(span, parent_context)  # guarded within

    def on_end(self, span: ReadableSpan) -> None:
        try:
            context = span.context
            if context is None or context.span_id not in self._started:
                return
            self._started.discard(context.span_id)
        except Exception:
            internal_error("capture_spans: a span of the global provider ended")
            return
        self._export.on_end(span)  # SimpleSpanProcessor logs an export failure itself


class _Router(SpanProcessor):
    """The processor put once on the global provider; hands its spans to the capture on.

    With no capture on it does nothing: it stays on the provider (the SDK cannot take a
    processor off) for the rest of the process.
    """

    def __init__(self) -> None:
        self.route: _Route | None = None

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        route = self.route
        if route is not None:
            route.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        route = self.route
        if route is not None:
            route.on_end(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is queued: a captured span is in memory when it ends


_ROUTER = _Router()
_routed: weakref.WeakSet[TracerProvider] = weakref.WeakSet()
_route_lock = threading.Lock()


def _route_global_provider(route: _Route) -> None:
    """Turn ``route`` on for the global provider, installing a provider if there is none.

    Raises:
        RuntimeError: the global provider is not an SDK ``TracerProvider``, or another
            global capture is on.
    """
    with _route_lock:
        if _ROUTER.route is not None:
            raise RuntimeError(
                "capture_spans(global_provider=True) is already capturing the global "
                "provider's spans in another block (or the sessiontrace_spans fixture is); "
                "run them one after the other, or use the one already open"
            )
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            # None is set yet: set one for the process (OpenTelemetry allows one per process).
            # ALWAYS_ON: a capture sees every span, whatever OTEL_TRACES_SAMPLER says.
            trace.set_tracer_provider(TracerProvider(sampler=ALWAYS_ON))
            provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            raise RuntimeError(
                f"capture_spans(global_provider=True): the global tracer provider is a "
                f"{type(provider).__module__}.{type(provider).__qualname__}, not an "
                "OpenTelemetry SDK TracerProvider, so its spans cannot be captured. Install "
                "an SDK one before the test (trace.set_tracer_provider(opentelemetry.sdk."
                "trace.TracerProvider()), or leave it unset and the capture installs one), "
                "or make the spans with the capture's own tracer"
            )
        if isinstance(provider.get_tracer("sessiontrace.testing"), trace.NoOpTracer):
            raise RuntimeError(
                "capture_spans(global_provider=True): the global TracerProvider makes no "
                "spans, as OTEL_SDK_DISABLED=true tells it; unset OTEL_SDK_DISABLED for the "
                "tests, or there is nothing to capture"
            )
        if provider not in _routed:
            provider.add_span_processor(_ROUTER)
            _routed.add(provider)
        _ROUTER.route = route


def _unroute(route: _Route) -> None:
    with _route_lock:
        if _ROUTER.route is route:
            _ROUTER.route = None


@contextmanager
def capture_spans(
    *,
    dialects: str | Iterable[str] | None = None,
    global_provider: bool = False,
    strict: bool = True,
) -> Iterator[CapturedSpans]:
    """Capture spans, stamped with the sessions in force in ``dialects``, while the block runs.

    Args:
        dialects: the dialects to stamp, as ``SessionSpanProcessor`` takes them.
        global_provider: also capture the spans of the global tracer provider, started
            while the block runs. If none is set, an SDK ``TracerProvider`` is set globally
            (for the rest of the process: OpenTelemetry allows one); if the application set
            an SDK one, a processor is added to it once, which does nothing outside a capture.
            One such block may be open at a time.
        strict: sessiontrace's internal errors raise instead of being logged in the block.

    Raises:
        TypeError: ``global_provider`` or ``strict`` is not a bool.
        RuntimeError: ``global_provider=True`` and the global provider is not an SDK one
            (or makes no spans: ``OTEL_SDK_DISABLED=true``), or another global capture is
            open.

    Example:
        >>> with capture_spans() as captured:
        ...     captured.tracer.start_span("answer").end()
        >>> [span.name for span in captured.spans()]
        ['answer']
    """
    for argument, value in (("global_provider", global_provider), ("strict", strict)):
        if not isinstance(value, bool):
            raise TypeError(
                f"capture_spans() takes {argument}=True or False, got {type(value).__name__}"
            )
    stamper = SessionSpanProcessor(dialects=dialects)
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    export = SimpleSpanProcessor(exporter)
    provider.add_span_processor(stamper)
    provider.add_span_processor(export)
    route = _Route(stamper, export)
    try:
        if global_provider:
            _route_global_provider(route)
        with strict_errors(strict):
            yield CapturedSpans(provider, exporter)
    finally:
        _unroute(route)
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
