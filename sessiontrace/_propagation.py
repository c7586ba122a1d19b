"""Carry what is in force to other processes and services.

Process pools, ``multiprocessing`` and task queues start their work in a fresh process with
no context. ``carrier()`` turns the session, user, metadata, tags and the current trace into a
dict of strings (picklable, JSON-able, fit for task headers); ``using_carrier()`` puts them
back in force on the other side, and ``carry(fn)`` does both around one function call.

Calls between services carry the session through OpenTelemetry's propagators:
``SessionBaggagePropagator`` adds ``session.id`` and ``user.id`` (and nothing else) to the W3C
``baggage`` that instrumented clients (httpx, requests, gRPC, messaging, ...) inject, and on
the receiving side puts a trusted carrier's ids in force in the context it extracts.

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
from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sessiontrace import _keys
from sessiontrace._context import Entry, get_current, stacked
from sessiontrace._frames import merge
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._late_binding import frame_in
from sessiontrace._using import using_attributes
from sessiontrace._validate import check_id, check_metadata, check_tags
from sessiontrace.integrations._inbound import Trust, _baggage_ids, check_trust, is_trusted

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


class SessionBaggagePropagator(textmap.TextMapPropagator):
    """Carries the session and user in W3C ``baggage``: out on every call, back in on a server.

    ``inject`` adds the session and user in force (``session.id``, ``user.id``, never
    metadata) to the ``baggage`` of outgoing calls; entries already in the context's baggage
    are kept. ``extract`` puts a trusted carrier's ``session.id`` / ``user.id`` in force in
    the context it returns, checked as the HTTP middlewares check baggage, so the server span
    a gRPC or messaging instrumentation starts in it, and everything in the handler, carry the
    caller's session. What the given context already has in force wins, field by field (a
    value the service put in force is not replaced by one a client sent). HTTP requests (an
    ASGI scope or WSGI environ as carrier) are left to sessiontrace's middlewares, so their
    own headers and trust decide. A carrier that cannot be read gives the context back
    unchanged, logged once; ``extract`` never raises.

    Install it after the W3C baggage propagator; ``configure()`` does it for you, and
    ``OTEL_PROPAGATORS`` knows it as ``sessiontrace`` (e.g. ``tracecontext,baggage,sessiontrace``).

    Args:
        trust: ``"all"``, ``"none"``, or a function of the carrier that returns whether to take
            its values. Default: ``SESSIONTRACE_TRUST_BAGGAGE`` (``all`` or ``none``), else
            ``"all"``; any other text is warned about and counts as ``"none"``.

    Raises:
        ValueError: ``trust`` is none of those.

    Example:
        >>> from sessiontrace import SessionBaggagePropagator, current_session_id, using_session
        >>> from opentelemetry.context import attach, detach
        >>> headers = {}
        >>> with using_session("chat-42"):
        ...     SessionBaggagePropagator().inject(headers)
        >>> headers
        {'baggage': 'session.id=chat-42'}
        >>> token = attach(SessionBaggagePropagator(trust="all").extract(headers))
        >>> current_session_id()
        'chat-42'
        >>> detach(token)
    """

    _w3c = W3CBaggagePropagator()

    def __init__(self, trust: Trust | None = None) -> None:
        self._trust: Trust = trust_from_env() if trust is None else check_trust(trust)

    def __repr__(self) -> str:
        return f"SessionBaggagePropagator(trust={self._trust!r})"

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        with guarded("SessionBaggagePropagator.inject"):
            context = get_current() if context is None else context
            frame = frame_in(context)  # with the trace's binding (update_current_trace)
            if frame is None or (frame.session_id is None and frame.user_id is None):
                return
            if frame.session_id is not None:
                context = baggage.set_baggage(_keys.BAGGAGE_SESSION_ID, frame.session_id, context)
            if frame.user_id is not None:
                context = baggage.set_baggage(_keys.BAGGAGE_USER_ID, frame.user_id, context)
            self._w3c.inject(carrier, context, setter)

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> otel_context.Context:
        context = get_current() if context is None else context
        if self._trust == "none":
            return context
        with guarded("SessionBaggagePropagator.extract"):
            return self._continued(carrier, context, getter)
        return context

    def _continued(
        self,
        carrier: textmap.CarrierT,
        context: otel_context.Context,
        getter: textmap.Getter[textmap.CarrierT],
    ) -> otel_context.Context:
        """``context`` with the carrier's trusted, valid ids filling in what it lacks."""
        below: Any = context.get(_keys.CONTEXT_KEY)
        outer = below.frame if isinstance(below, Entry) else None
        if outer is not None and outer.session_id is not None and outer.user_id is not None:
            return context  # nothing left for baggage to fill in
        lines = _baggage_lines(carrier, getter)
        if not lines or not is_trusted(self._trust, carrier):
            return context
        found = _baggage_ids(lines)
        session_id = found.get("session_id") if outer is None or not outer.session_id else None
        user_id = found.get("user_id") if outer is None or not outer.user_id else None
        if session_id is None and user_id is None:
            return context
        return stacked(merge(outer, session_id=session_id, user_id=user_id), self, context)

    @property
    def fields(self) -> set[str]:
        return {"baggage"}


TRUST_ENV = "SESSIONTRACE_TRUST_BAGGAGE"
_carrier_once = LogOnce()


def trust_from_env(environ: Mapping[str, str] | None = None) -> Trust:
    """``SESSIONTRACE_TRUST_BAGGAGE``: ``all`` (also when unset) or ``none``.

    Other text counts as ``none`` and is warned about: it most likely meant to turn trust off
    (``off``, ``false``, a typo), and taking clients' ids against that wish is the worse
    mistake; an inbound session that is not continued is visible and costs only labels.

    Example:
        >>> trust_from_env({"SESSIONTRACE_TRUST_BAGGAGE": "none"})
        'none'
    """
    text = (os.environ if environ is None else environ).get(TRUST_ENV)
    if text is None or not text.strip():
        return "all"
    choice = text.strip().lower()
    if choice == "all":
        return "all"
    if choice == "none":
        return "none"
    logger.warning(
        "sessiontrace: %s=%r is neither 'all' nor 'none'; inbound baggage is not trusted "
        "(as 'none'), so no session is taken from it. Set it to 'all' to continue callers' "
        "sessions or 'none' to refuse them.",
        TRUST_ENV,
        text,
    )
    return "none"


def _baggage_lines(carrier: Any, getter: textmap.Getter[Any]) -> list[object]:
    """The carrier's ``baggage`` values, or none for an HTTP request (the middlewares' job)
    and for a carrier or getter that fails or answers something other than a list of str."""
    try:
        if isinstance(carrier, Mapping) and _is_http_request(carrier):
            return []
        values: object = getter.get(carrier, "baggage")
    except Exception as error:
        _carrier_once.log(
            f"getter-{type(error).__name__}",
            "sessiontrace: reading baggage from a carrier raised %s (%.80s); its session is "
            "ignored (logged once). Pass a getter that returns a list of str or None.",
            type(error).__name__,
            error,
        )
        return []
    if values is None:
        return []
    if isinstance(values, (str, bytes)):
        return [values]
    if isinstance(values, (list, tuple)):
        return list(values)
    _carrier_once.log(
        f"getter-returned-{type(values).__name__}",
        "sessiontrace: a getter returned a %s for baggage, not a list of str; its session is "
        "ignored (logged once). Pass a getter that returns a list of str or None.",
        type(values).__name__,
    )
    return []


def _is_http_request(carrier: Mapping[Any, Any]) -> bool:
    """An ASGI scope or a WSGI environ (Django's ``request.META`` too)."""
    if "wsgi.version" in carrier or "REQUEST_METHOD" in carrier:
        return True
    return carrier.get("type") in ("http", "websocket") and "headers" in carrier


def install_propagator() -> None:
    """Add ``SessionBaggagePropagator`` to the global propagators, once."""
    # Imported here: importing opentelemetry.propagate builds the propagators that
    # OTEL_PROPAGATORS names, this module's among them, which must be defined by then.
    from opentelemetry.propagate import get_global_textmap, set_global_textmap

    current = get_global_textmap()
    inner = getattr(current, "_propagators", [current])
    if any(isinstance(propagator, SessionBaggagePropagator) for propagator in inner):
        return
    set_global_textmap(CompositePropagator([current, SessionBaggagePropagator()]))


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
