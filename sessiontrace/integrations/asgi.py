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
from contextlib import ExitStack
from typing import Any

from opentelemetry import trace

from sessiontrace._context import current_frame
from sessiontrace._guard import guarded
from sessiontrace.integrations._inbound import InboundMiddleware, encode_id, request_scope

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TRACE_HEADER = "X-Trace-Id"


class SessionMiddleware(InboundMiddleware):
    """Put each request's session and user in force, and answer with ``X-Session-Id``.

    Reads ``X-Session-Id`` / ``X-User-Id`` (names configurable) and W3C ``baggage``
    (``session.id``, ``user.id``); a valid plain header wins over baggage. Header bytes are
    read as UTF-8 and percent-decoded, baggage values as W3C baggage says (percent-encoded
    UTF-8, properties after ``;`` dropped, all ``baggage`` lines joined); repeated plain
    headers must agree. Anything else (bad UTF-8 or escapes, control characters, oversize) is
    ignored and logged once, never an error response. The response carries ``X-Session-Id``
    (the session in force, percent-encoded so any server can send it) and ``X-Trace-Id``
    (the current trace), so a client can chain calls.

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
        values = self._values(scope, lambda: scope.get("headers", ()))
        if self._response_headers and scope["type"] == "http":
            send = _with_response_headers(send, self._session_header)
        if not values:
            await self.app(scope, receive, send)
            return
        with ExitStack() as stack:
            with guarded("putting the request's session in force"):
                stack.enter_context(request_scope(values))
            await self.app(scope, receive, send)


def _with_response_headers(send: Send, session_header: str) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message.get("type") == "http.response.start":
            extra = response_headers(session_header)
            if extra:
                message["headers"] = [
                    *message.get("headers", ()),
                    *((name.encode("ascii"), value.encode("ascii")) for name, value in extra),
                ]
        await send(message)

    return send_with_headers


def response_headers(session_header: str) -> list[tuple[str, str]]:
    """``(name, value)`` response headers for the session and trace in force now.

    The session id is sent through :func:`encode_id`, so every server can encode it. Never
    raises: on a bug it returns no headers (the response goes out without them).
    """
    with guarded("adding the response's session headers"):
        out: list[tuple[str, str]] = []
        frame = current_frame()
        if frame is not None and frame.session_id is not None:
            out.append((session_header, encode_id(frame.session_id)))
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            out.append((TRACE_HEADER.lower(), format(span_context.trace_id, "032x")))
        return out
    return []
