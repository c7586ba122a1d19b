"""Real HTTP servers in a thread of the test process, and a client that sends raw header bytes.

``asgi_server(app)`` runs uvicorn and ``wsgi_server(app, kind)`` runs ``wsgiref`` or
werkzeug's server, each on 127.0.0.1 on a free port, until the ``with`` block ends. The app
runs in this process, so its spans reach the test provider. ``send(url, headers)`` sends each
``(name, value)`` pair as given, bytes included, with ``http.client`` (httpx and requests
refuse values that are not Latin-1 text), and returns the status, headers and whole body.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

_STARTUP_TIMEOUT = 30.0


@contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn (h11) on loopback; yields its base URL."""
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws="none",
        log_config=None,  # uvicorn would otherwise configure the process's logging
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        _wait_until(lambda: server.started or not thread.is_alive())
        assert server.started, "uvicorn did not start: see the captured log"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(_STARTUP_TIMEOUT)
        listener.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def wsgi_server(app: Any, kind: str = "wsgiref") -> Iterator[str]:
    """Serve the WSGI ``app`` with ``wsgiref`` or werkzeug on loopback; yields its base URL."""
    server: Any
    if kind == "wsgiref":
        server = make_server("127.0.0.1", 0, app, WSGIServer, _QuietHandler)
    elif kind == "werkzeug":
        from werkzeug import serving

        class Quiet(serving.WSGIRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:
                pass  # werkzeug would add a handler to its logger to print each request

        server = serving.make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    else:
        raise ValueError(f"kind must be 'wsgiref' or 'werkzeug', got {kind!r}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(_STARTUP_TIMEOUT)


@dataclass
class Reply:
    """What a server answered: status, headers (name lower-cased, all occurrences), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]


def send(url: str, headers: Sequence[tuple[str, str | bytes]], path: str = "/chat") -> Reply:
    """GET ``path`` with exactly these header lines (repeats and raw bytes as given)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=_STARTUP_TIMEOUT)
    try:
        connection.putrequest("GET", path)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Connection", "close")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()  # raises IncompleteRead if the server cut the body off
        return Reply(response.status, [(k.lower(), v) for k, v in response.getheaders()], body)
    finally:
        connection.close()


def _wait_until(condition: Any) -> None:
    event = threading.Event()
    for _ in range(int(_STARTUP_TIMEOUT / 0.01)):
        if condition():
            return
        event.wait(0.01)
