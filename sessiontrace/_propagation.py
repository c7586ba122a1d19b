"""Carry what is in force to other processes and services.

Process pools, ``multiprocessing`` and task queues start their work in a fresh process with
no context. ``carrier()`` turns the session, user, metadata, tags and the current trace into a
dict of strings (picklable, JSON-able, fit for task headers); ``using_carrier()`` puts them
back in force on the other side, and ``carry(fn)`` does both around one function call.

Outgoing HTTP calls carry the session through OpenTelemetry's propagators:
``SessionBaggagePropagator`` adds ``session.id`` and ``user.id`` (and nothing else) to the W3C
``baggage`` header that instrumented clients (httpx, requests, aiohttp, ...) inject.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import get_global_textmap, set_global_textmap
from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sessiontrace import _keys
from sessiontrace._guard import internal_error
from sessiontrace._state import current_frame, entry_in, get_current
from sessiontrace._using import using_attributes

R = TypeVar("R")

# The carrier's keys: what sessiontrace puts in and reads back, nothing else.
SESSION_ID = "session_id"
USER_ID = "user_id"
METADATA = "metadata"
TAGS = "tags"
_TRACE_KEYS = ("traceparent", "tracestate")
_ALL_KEYS = (SESSION_ID, USER_ID, METADATA, TAGS, *_TRACE_KEYS)
_propagator = TraceContextTextMapPropagator()


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
    frame = current_frame()
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
    ``ValueError`` or ``TypeError`` naming the key, and nothing is put in force.

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
    unknown = sorted(set(values) - set(_ALL_KEYS))
    if unknown:
        raise ValueError(
            f"carrier has unknown key(s) {unknown}; a carrier holds only {list(_ALL_KEYS)}: "
            "pass the dict carrier() returned, unchanged"
        )
    scope = using_attributes(
        session_id=values.get(SESSION_ID),
        user_id=values.get(USER_ID),
        metadata=_json(values, METADATA, dict),
        tags=_json(values, TAGS, list),
    )
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
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as error:
        raise ValueError(f"carrier[{key!r}] is not JSON ({error}): pass carrier()'s dict") from None
    if not isinstance(value, kind):
        raise TypeError(f"carrier[{key!r}] must hold a JSON {kind.__name__}, got {text!r:.60}")
    return value


class CarriedCall(Generic[R]):
    """A function bound to a carrier: picklable when the function is, so it can go to a pool.

    Made by :func:`carry`.
    """

    __slots__ = ("carrier", "function")

    def __init__(self, function: Callable[..., R], carried: dict[str, str]) -> None:
        self.function = function
        self.carrier = carried

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        with using_carrier(self.carrier):
            return self.function(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (CarriedCall, (self.function, self.carrier))


def carry(function: Callable[..., R]) -> CarriedCall[R]:
    """Bind ``function`` to what is in force now, for a process pool or ``multiprocessing``.

    ``pool.submit(carry(work), item)`` runs ``work(item)`` in the worker with this session,
    user, metadata, tags and trace parent in force. ``function`` must be picklable (defined
    at module level), as the pool already requires.

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


class SessionBaggagePropagator(textmap.TextMapPropagator):
    """Adds the session and user in force to the W3C ``baggage`` header of outgoing calls.

    Only sessiontrace's own keys (``session.id``, ``user.id``) go into baggage, never
    metadata; entries already in the context's baggage are kept. Install it after the W3C
    baggage propagator; ``configure()`` does it for you, and ``OTEL_PROPAGATORS`` knows it
    as ``sessiontrace`` (e.g. ``tracecontext,baggage,sessiontrace``). Extracting is left to
    the server middlewares, which validate what they read.

    Example:
        >>> from sessiontrace import SessionBaggagePropagator, using_session
        >>> headers = {}
        >>> with using_session("chat-42"):
        ...     SessionBaggagePropagator().inject(headers)
        >>> headers
        {'baggage': 'session.id=chat-42'}
    """

    _w3c = W3CBaggagePropagator()

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        try:
            context = get_current() if context is None else context
            entry = entry_in(context)
            frame = None if entry is None else entry[0]
            if frame is None or (frame.session_id is None and frame.user_id is None):
                return
            if frame.session_id is not None:
                context = baggage.set_baggage(_keys.BAGGAGE_SESSION_ID, frame.session_id, context)
            if frame.user_id is not None:
                context = baggage.set_baggage(_keys.BAGGAGE_USER_ID, frame.user_id, context)
            self._w3c.inject(carrier, context, setter)
        except Exception:
            internal_error("SessionBaggagePropagator.inject")

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> otel_context.Context:
        return get_current() if context is None else context

    @property
    def fields(self) -> set[str]:
        return {"baggage"}


def install_propagator() -> None:
    """Add ``SessionBaggagePropagator`` to the global propagators, once."""
    current = get_global_textmap()
    inner = getattr(current, "_propagators", [current])
    if any(isinstance(propagator, SessionBaggagePropagator) for propagator in inner):
        return
    set_global_textmap(CompositePropagator([current, SessionBaggagePropagator()]))
