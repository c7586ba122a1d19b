"""W3C baggage for sessions: ``SessionBaggagePropagator``, out on every call, in on a server.

Calls between services carry the session through OpenTelemetry's propagators: the propagator
adds ``session.id`` and ``user.id`` (and nothing else) to the W3C ``baggage`` that
instrumented clients (httpx, requests, gRPC, messaging, ...) inject, and on the receiving side
puts a trusted carrier's ids in force in the context it extracts. ``SESSIONTRACE_TRUST_BAGGAGE``
sets the trust when OpenTelemetry builds it from ``OTEL_PROPAGATORS``.

Example:
    >>> from sessiontrace import SessionBaggagePropagator, using_session
    >>> headers = {}
    >>> with using_session("chat-42"):
    ...     SessionBaggagePropagator().inject(headers)
    >>> headers
    {'baggage': 'session.id=chat-42'}
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators import textmap
from opentelemetry.propagators.composite import CompositePropagator

from sessiontrace import _keys
from sessiontrace._context import Entry, get_current, stacked
from sessiontrace._frames import merge
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._late_binding import frame_in
from sessiontrace.integrations._inbound import Trust, _baggage_ids, check_trust, is_trusted

logger = logging.getLogger("sessiontrace")


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
        found = _baggage_ids(lines, "the carrier's baggage (gRPC metadata, message headers)")
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
