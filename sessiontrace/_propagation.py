"""Carry what is in force to other processes and services.

Process pools, ``multiprocessing`` and task queues start their work in a fresh process with
no context. ``carrier()`` turns the session, user, metadata, tags and the current trace into a
dict of strings (picklable, JSON-able, fit for task headers); ``using_carrier()`` puts them
back in force on the other side, and ``carry(fn)`` does both around one function call.

Calls between services carry the session in W3C baggage (``_baggage.SessionBaggagePropagator``);
``outgoing_headers`` builds the headers ``SessionTracker.headers()`` hands out.

A carried call that runs in another process flushes that process's tracer provider when it
returns, because pool workers end with ``os._exit`` (``multiprocessing``) or are terminated,
and spans still queued in a ``BatchSpanProcessor`` would be lost with them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sessiontrace import _keys
from sessiontrace._context import get_current
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._late_binding import frame_in
from sessiontrace._using import using_attributes
from sessiontrace._validate import check_id, check_metadata, check_tags

R = TypeVar("R")
logger = logging.getLogger("sessiontrace")

# The carrier's keys: what sessiontrace puts in and reads back, nothing else.
SESSION_ID = "session_id"
USER_ID = "user_id"
METADATA = "metadata"
TAGS = "tags"
_TRACE_KEYS = ("traceparent", "tracestate")
_ALL_KEYS = (SESSION_ID, USER_ID, METADATA, TAGS, *_TRACE_KEYS)
_propagator = TraceContextTextMapPropagator()
# How long a carried call in a worker waits for its spans to be exported.
FLUSH_TIMEOUT_MILLIS = 5000


def carrier() -> dict[str, str]:
    """What is in force now, as a dict of strings to hand to another process.

    Holds ``session_id``, ``user_id``, ``metadata`` and ``tags`` (JSON), and the W3C
    ``traceparent`` of the current span, each only when there is one.

    Example:
        >>> from sessiontrace import carrier, using_attributes
        >>> with using_attributes(session_id="chat-42", tags=["batch"]):
        ...     carrier()
        {'session_id': 'chat-42', 'tags': '["batch"]'}
    """
    out: dict[str, str] = {}
    frame = frame_in(get_current())  # with the current trace's binding, if any
    if frame is not None:
        if frame.session_id is not None:
            out[SESSION_ID] = frame.session_id
        if frame.user_id is not None:
            out[USER_ID] = frame.user_id
        if frame.metadata:
            out[METADATA] = frame.metadata_json
        if frame.tags:
            out[TAGS] = json.dumps(list(frame.tags), ensure_ascii=False)
    _propagator.inject(out)
    return out


@contextmanager
def using_carrier(values: Mapping[str, str]) -> Iterator[None]:
    """Put a ``carrier()`` made in another process in force, trace parent included.

    The values are validated as if passed to ``using_attributes``; a malformed carrier raises
    ``ValueError`` or ``TypeError`` naming the key, and nothing is put in force. A
    ``traceparent`` that is a str but not a valid W3C header is ignored, as the W3C
    propagator does; one that is not a str is a ``TypeError``.

    Raises:
        TypeError: ``values`` is not a mapping, or a value has the wrong type (ids and the
            trace headers must be str, ``metadata`` a JSON object, ``tags`` a JSON list).
        ValueError: an unknown key, text that is not JSON or nested deeper than
            ``MAX_DEPTH`` (32), or a value that ``using_attributes`` would refuse.

    Example:
        >>> from sessiontrace import current_session_id, using_carrier
        >>> with using_carrier({"session_id": "chat-42"}):
        ...     current_session_id()
        'chat-42'
    """
    if not isinstance(values, Mapping):
        raise TypeError(
            f"using_carrier() takes the dict carrier() made, got {type(values).__name__}"
        )
    unknown = sorted((key for key in values if key not in _ALL_KEYS), key=repr)
    if unknown:
        raise ValueError(
            f"carrier has unknown key(s) {unknown}; a carrier holds only {list(_ALL_KEYS)}: "
            "pass the dict carrier() returned, unchanged"
        )
    session_id = values.get(SESSION_ID)
    user_id = values.get(USER_ID)
    metadata = _json(values, METADATA, dict)
    tags = _json(values, TAGS, list)
    # Checked here under the carrier's key names, so an error says which key was bad.
    if session_id is not None:
        check_id(session_id, f"carrier[{SESSION_ID!r}]")
    if user_id is not None:
        check_id(user_id, f"carrier[{USER_ID!r}]")
    if metadata is not None:
        metadata = check_metadata(metadata, f"carrier[{METADATA!r}]")
    if tags is not None:
        tags = check_tags(tags, f"carrier[{TAGS!r}]")
    for key in _TRACE_KEYS:
        header = values.get(key)
        if header is not None and not isinstance(header, str):
            raise TypeError(
                f"carrier[{key!r}] must be a str (a W3C {key} header), got "
                f"{type(header).__name__}: pass the dict carrier() returned, unchanged"
            )
    scope = using_attributes(session_id=session_id, user_id=user_id, metadata=metadata, tags=tags)
    trace_context = _propagator.extract(values) if values.get("traceparent") else None
    token = otel_context.attach(trace_context) if trace_context is not None else None
    try:
        with scope:
            yield
    finally:
        if token is not None:
            otel_context.detach(token)


def _json(values: Mapping[str, str], key: str, kind: type) -> Any:
    text = values.get(key)
    if text is None:
        return None
    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(
            f"carrier[{key!r}] must be a str of JSON, got {type(text).__name__}: pass the "
            "dict carrier() returned, unchanged"
        )
    try:
        value = json.loads(text)
    except RecursionError:
        # The C parser recurses once per level: only text nested far past MAX_DEPTH gets here.
        raise ValueError(
            f"carrier[{key!r}] is nested too deep to parse; values nest at most 32 lists/dicts "
            "deep: pass carrier()'s dict, which never holds more"
        ) from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"carrier[{key!r}] is not JSON ({error}): pass carrier()'s dict") from None
    if not isinstance(value, kind):
        raise TypeError(f"carrier[{key!r}] must hold a JSON {kind.__name__}, got {text!r:.60}")
    return value


class CarriedCall(Generic[R]):
    """A function bound to a carrier: picklable when the function is, so it can go to a pool.

    Made by :func:`carry`.
    """

    __slots__ = ("carrier", "function", "origin_pid")

    def __init__(
        self, function: Callable[..., R], carried: dict[str, str], origin_pid: int | None = None
    ) -> None:
        self.function = function
        self.carrier = carried
        # The process that made it: a call in any other process is a worker's, and flushes.
        self.origin_pid = os.getpid() if origin_pid is None else origin_pid

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        try:
            with using_carrier(self.carrier):
                return self.function(*args, **kwargs)
        finally:
            if os.getpid() != self.origin_pid:
                _flush_worker_spans()

    def __reduce__(self) -> tuple[Any, ...]:
        return (CarriedCall, (self.function, self.carrier, self.origin_pid))


_flush_warning = LogOnce()


def _flush_worker_spans() -> None:
    """Export what the call's spans left queued: a pool worker may end without a chance to.

    ``multiprocessing`` workers leave with ``os._exit`` (no ``atexit``, so no provider
    shutdown) and ``Pool.terminate()`` kills them; spans still in a batch queue would be lost.
    Bounded by ``FLUSH_TIMEOUT_MILLIS``; never raises into the caller.
    """
    with guarded("carry(): flushing the worker's spans"):
        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if flush is None or flush(timeout_millis=FLUSH_TIMEOUT_MILLIS):
            return
        _flush_warning.log(
            "flush",
            "sessiontrace: a carried call's spans were not all exported within %s ms in "
            "worker process %s; some may be lost when the worker ends: check that the "
            "exporter's backend or store is reachable (this message is logged once)",
            FLUSH_TIMEOUT_MILLIS,
            os.getpid(),
        )


def carry(function: Callable[..., R]) -> CarriedCall[R]:
    """Bind ``function`` to what is in force now, for a process pool or ``multiprocessing``.

    ``pool.submit(carry(work), item)`` runs ``work(item)`` in the worker with this session,
    user, metadata, tags and trace parent in force. ``function`` must be picklable (defined
    at module level), as the pool already requires. Run in another process than the one that
    called ``carry()``, the call flushes that process's global tracer provider after the
    function returns or raises (waiting at most ``FLUSH_TIMEOUT_MILLIS``, 5 s), so its spans
    are exported before the worker ends; configure the worker's tracing in the pool's
    ``initializer`` (``sessiontrace.configure(...)``) or before the pool forks.

    Example:
        >>> from sessiontrace import carry, current_session_id, using_session
        >>> with using_session("chat-42"):
        ...     task = carry(current_session_id)
        >>> task()
        'chat-42'
    """
    if not callable(function):
        raise TypeError(f"carry() takes a function, got {type(function).__name__}")
    return CarriedCall(function, carrier())


def outgoing_headers(
    session_id: str, user_id: str | None, step_index: int | None, span: trace.Span | None
) -> dict[str, str]:
    """``traceparent`` (to ``span``), ``baggage`` and ``X-Session-Id`` for an outgoing call.

    What ``SessionTracker.headers()`` returns. Every value is visible ASCII: baggage values
    are percent-encoded UTF-8 (W3C), and ``X-Session-Id`` is percent-encoded the way the
    sessiontrace middlewares decode it (``encode_id``).

    Example:
        >>> outgoing_headers("chat-42", None, None, None)
        {'baggage': 'session.id=chat-42', 'X-Session-Id': 'chat-42'}
    """
    from sessiontrace.integrations._inbound import encode_id  # the middlewares' rule

    context = otel_context.Context()
    if span is not None:
        context = trace.set_span_in_context(span, context)
    values: dict[str, object] = {_keys.BAGGAGE_SESSION_ID: session_id}
    if user_id is not None:
        values[_keys.BAGGAGE_USER_ID] = user_id
    if step_index is not None:
        values[_keys.BAGGAGE_STEP_INDEX] = str(step_index)
    for key, value in values.items():
        context = baggage.set_baggage(key, value, context)
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context)
    W3CBaggagePropagator().inject(carrier, context)
    carrier[_keys.SESSION_HEADER] = encode_id(session_id)
    return carrier
