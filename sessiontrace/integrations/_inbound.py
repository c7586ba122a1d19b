"""Reading a session from an incoming request: headers, W3C baggage, and a trust policy.

Values that arrive in a request come from the client. They are validated like any id; an
invalid or oversized one is ignored and logged (once per reason), never an error response and
never stamped. A trust policy decides whether a request's values are taken at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.baggage import get_all
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from sessiontrace import _keys, _state
from sessiontrace._guard import internal_error
from sessiontrace._state import current_entry, request_entry, use_request_fallback
from sessiontrace._using import using_attributes
from sessiontrace._validate import check_id

logger = logging.getLogger("sessiontrace")

Trust = Literal["all", "none"] | Callable[[Any], bool]
_baggage = W3CBaggagePropagator()
_logged: set[str] = set()
_logged_lock = threading.Lock()


def check_trust(trust: object) -> Trust:
    """Validate a trust policy argument."""
    if trust in ("all", "none") or callable(trust):
        return trust  # type: ignore[return-value,unused-ignore]
    raise ValueError(
        f"trust must be 'all', 'none' or a function of the request returning bool, got {trust!r}"
    )


def check_header(name: object, argument: str) -> str:
    """Validate a header name argument; returns it lower-cased."""
    if not isinstance(name, str) or not name.strip() or not name.isascii() or " " in name:
        raise ValueError(
            f"{argument} must be an HTTP header name such as 'X-Session-Id', got {name!r}"
        )
    return name.strip().lower()


def is_trusted(trust: Trust, request: Any) -> bool:
    """Whether ``trust`` takes values from ``request``; a failing check counts as no."""
    if trust == "all":
        return True
    if trust == "none":
        return False
    try:
        return bool(trust(request))  # type: ignore[operator,unused-ignore]
    except Exception:
        _log_once(
            "trust",
            "sessiontrace: the trust check raised; the request's session is ignored (logged once)",
        )
        logger.debug("sessiontrace: trust check failure", exc_info=True)
        return False


def session_values(
    headers: Mapping[str, str], session_header: str, user_header: str, read_baggage: bool
) -> dict[str, str]:
    """The valid session and user ids a request carries: plain headers first, then baggage.

    ``headers`` has lower-case names.
    """
    found: dict[str, str] = {}
    carried: Mapping[str, object] = {}
    if read_baggage and "baggage" in headers:
        carried = get_all(_baggage.extract({"baggage": headers["baggage"]}))
    for argument, header, baggage_key in (
        ("session_id", session_header, _keys.BAGGAGE_SESSION_ID),
        ("user_id", user_header, _keys.BAGGAGE_USER_ID),
    ):
        value = headers.get(header)
        if value is None:
            value = carried.get(baggage_key)  # type: ignore[assignment]
        if value is None:
            continue
        try:
            found[argument] = check_id(value, argument)
        except (TypeError, ValueError) as error:
            _log_once(
                f"invalid-{argument}", "sessiontrace: ignoring a request's %s: %s", argument, error
            )
    return found


def _log_once(reason: str, message: str, *args: object) -> None:
    with _logged_lock:
        first = reason not in _logged
        _logged.add(reason)
    if first:
        logger.warning(message, *args)


def enter_request(values: Mapping[str, str]) -> None:
    """Put a request's values in force for the rest of the current context (see below)."""
    use_request_fallback()
    using_attributes(session_id=values.get("session_id"), user_id=values.get("user_id")).__enter__()
    request_entry.set(current_entry())
    stamp_server_span()


def stamp_server_span() -> None:
    """Stamp the span already open around the request (a server span that an outer
    OpenTelemetry middleware started before the session was known), never overwriting."""
    try:
        span = trace.get_current_span()
        entry = current_entry()
        if entry is None or not span.is_recording():
            return
        existing = getattr(span, "attributes", None) or {}
        attributes: dict[str, Any] = {}
        for dialects in _state.live_dialect_sets():
            attributes.update(entry[0].attributes_for(dialects))
        span.set_attributes({k: v for k, v in attributes.items() if k not in existing})
    except Exception:
        internal_error("stamping the server span")


@contextmanager
def request_scope(values: Mapping[str, str]) -> Iterator[None]:
    """Put a request's values in force, in the OpenTelemetry context and beside it.

    The copy beside it (``request_entry``) survives instrumentation that attaches a freshly
    extracted context for the request, which would otherwise drop the session.
    """
    use_request_fallback()
    with using_attributes(session_id=values.get("session_id"), user_id=values.get("user_id")):
        token = request_entry.set(current_entry())
        stamp_server_span()
        try:
            yield
        finally:
            request_entry.reset(token)


class InboundMiddleware:
    """What the ASGI and WSGI middlewares share: their options, checked at construction."""

    def __init__(
        self,
        app: Any,
        *,
        session_header: str = _keys.SESSION_HEADER,
        user_header: str = "X-User-Id",
        read_baggage: bool = True,
        trust: Trust = "all",
        response_headers: bool = True,
    ) -> None:
        self.app = app
        self._session_header = check_header(session_header, "session_header")
        self._user_header = check_header(user_header, "user_header")
        self._read_baggage = read_baggage
        self._trust = check_trust(trust)
        self._response_headers = response_headers

    def _values(self, request: Any, headers: Callable[[], Mapping[str, str]]) -> dict[str, str]:
        """The valid session and user ids of a trusted request; nothing for another."""
        if not is_trusted(self._trust, request):
            return {}
        return session_values(
            headers(), self._session_header, self._user_header, self._read_baggage
        )
