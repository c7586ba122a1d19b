"""ASGI middleware: the session of each request, from its headers, in force while it is served.

Works with Starlette, FastAPI and any ASGI app, beside ``opentelemetry-instrumentation-fastapi``
(its server spans are stamped too). ASGI types are declared here, so nothing is imported from a
framework.

Example:
    >>> from sessiontrace.integrations.asgi import SessionMiddleware
    >>> async def app(scope, receive, send): ...
    >>> app = SessionMiddleware(app)  # or FastAPI: app.add_middleware(SessionMiddleware)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace

from sessiontrace._state import current_frame
from sessiontrace.integrations._inbound import InboundMiddleware, request_scope

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TRACE_HEADER = "X-Trace-Id"


class SessionMiddleware(InboundMiddleware):
    """Put each request's session and user in force, and answer with ``X-Session-Id``.

    Reads ``X-Session-Id`` / ``X-User-Id`` (names configurable) and W3C ``baggage``
    (``session.id``, ``user.id``); a plain header wins over baggage. Invalid values are
    ignored and logged, never an error response. The response carries ``X-Session-Id`` (the
    session in force) and ``X-Trace-Id`` (the current trace), so a client can chain calls.

    Args:
        app: the ASGI application.
        session_header: the plain header with the session id.
        user_header: the plain header with the user id.
        read_baggage: also read W3C baggage.
        trust: ``"all"`` (default: session ids label telemetry, they grant nothing),
            ``"none"``, or a function of the ASGI scope that returns whether to take this
            request's values (e.g. only from your own services).
        response_headers: answer with ``X-Session-Id`` and ``X-Trace-Id``.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        values = self._values(
            scope,
            lambda: {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in scope.get("headers", ())
            },
        )
        if self._response_headers and scope["type"] == "http":
            send = _with_response_headers(send, self._session_header)
        if not values:
            await self.app(scope, receive, send)
            return
        with request_scope(values):
            await self.app(scope, receive, send)


def _with_response_headers(send: Send, session_header: str) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message.get("type") == "http.response.start":
            extra = response_headers(session_header)
            if extra:
                message["headers"] = [
                    *message.get("headers", ()),
                    *((name.encode("latin-1"), value.encode("latin-1")) for name, value in extra),
                ]
        await send(message)

    return send_with_headers


def response_headers(session_header: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs for the session and trace in force now."""
    out: list[tuple[str, str]] = []
    frame = current_frame()
    if frame is not None and frame.session_id is not None:
        out.append((session_header, frame.session_id))
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        out.append((TRACE_HEADER.lower(), format(span_context.trace_id, "032x")))
    return out
