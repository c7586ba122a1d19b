"""WSGI middleware: the session of each request, from its headers, in force while it is served.

Works with Flask and any WSGI app, including a streamed response (the body iterable runs with
the session in force too), beside ``opentelemetry-instrumentation-wsgi``/``-flask`` in either
order.

Example:
    >>> from sessiontrace.integrations.wsgi import SessionMiddleware
    >>> def app(environ, start_response): ...
    >>> app = SessionMiddleware(app)  # Flask: flask_app.wsgi_app = SessionMiddleware(...)
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sessiontrace._guard import guarded
from sessiontrace.integrations._inbound import InboundMiddleware, enter_request
from sessiontrace.integrations.asgi import response_headers

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class SessionMiddleware(InboundMiddleware):
    """Put each request's session and user in force, and answer with ``X-Session-Id``.

    The same reading, validation and trust policy as the ASGI middleware; ``trust`` as a
    function receives the WSGI ``environ``. Header values arrive as PEP 3333 strings (the
    bytes sent, decoded Latin-1): they are turned back into those bytes and read as UTF-8,
    so ``café`` sent as UTF-8 is read as ``café``, as under ASGI. Servers join repeated
    lines of a header with commas, which the shared reading expects.

    Args:
        app: the WSGI application.
        session_header: the plain header with the session id.
        user_header: the plain header with the user id.
        read_baggage: also read W3C baggage.
        trust: ``"all"`` (default), ``"none"``, or a function of the environ returning bool.
        response_headers: answer with ``X-Session-Id`` and ``X-Trace-Id``.
    """

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # Each request runs, body included, in a context of its own: nothing it puts in force
        # (nor a span a streamed body's generator leaves attached) reaches the server's
        # thread, which serves the next request.
        context = contextvars.copy_context()
        body = context.run(self._start, environ, start_response)
        return _IsolatedBody(body, context)

    def _start(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        values = self._values(
            environ,
            lambda: [
                (name, environ["HTTP_" + name.upper().replace("-", "_")])
                for name in self._wanted()
                if "HTTP_" + name.upper().replace("-", "_") in environ
            ],
        )
        if values:
            with guarded("putting the request's session in force"):
                enter_request(values)  # left in force: this context is the request's own
        if self._response_headers:
            start_response = self._with_headers(start_response)
        body: Iterable[bytes] = self.app(environ, start_response)
        return body

    def _with_headers(self, start_response: StartResponse) -> StartResponse:
        session_header = self._session_header

        def start_with_headers(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            return start_response(status, [*headers, *response_headers(session_header)], *args)

        return start_with_headers


class _IsolatedBody:
    """A response body whose chunks are made in the request's own context."""

    def __init__(self, body: Iterable[bytes], context: contextvars.Context) -> None:
        self._body = body
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        iterator = self._context.run(iter, self._body)
        while True:
            try:
                chunk = self._context.run(next, iterator)
            except StopIteration:
                return
            yield chunk

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            self._context.run(close)
