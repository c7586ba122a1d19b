"""An OTLP/HTTP receiver that can go down, hang, or answer errors, and come back on the same port.

A real :class:`~helpers.otlp_receiver.OTLPHttpReceiver` sits behind a small TCP front on
127.0.0.1. The front decides what a client sees:

* ``up()``: bytes pass through to the receiver, which decodes and keeps every span;
* ``refuse()``: the port is closed, so connecting fails with "connection refused";
* ``hang()``: connections are accepted and read, and never answered;
* ``reply(status)``: every request is answered with that HTTP status and not recorded.

Every change cuts the connections that are open, as a restarting backend would.

Example:
    with FlakyReceiver() as backend:
        exporter = OTLPSpanExporter(endpoint=backend.traces_endpoint)
        backend.refuse()   # ... spans fail to arrive ...
        backend.up()       # same port, spans arrive again
        backend.receiver.wait_for_spans(3)
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

from helpers.otlp_receiver import OTLPHttpReceiver

__all__ = ["FlakyReceiver"]

_HOST = "127.0.0.1"


class FlakyReceiver:
    """A real OTLP/HTTP receiver behind a front that can refuse, hang or answer an error."""

    def __init__(self) -> None:
        self.receiver = OTLPHttpReceiver()
        self._lock = threading.Lock()  # guards everything below
        self._mode: str | int = "up"  # "up", "refuse", "hang" or an HTTP status
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.attempts = 0  # connections accepted while not up (hang or reply)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FlakyReceiver:
        self.receiver.start()
        self._listen()
        return self

    def stop(self) -> None:
        with self._lock:
            self._mode = "stopped"
        self._close_listener()
        self._cut()
        for thread in list(self._threads):
            thread.join()
        self.receiver.stop()

    def __enter__(self) -> FlakyReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._port is not None, "call start() first"
        return self._port

    @property
    def traces_endpoint(self) -> str:
        return f"http://{_HOST}:{self.port}/v1/traces"

    # --- modes ------------------------------------------------------------------------------

    def up(self) -> None:
        """Pass requests through to the receiver (listening again if the port was closed)."""
        self._switch("up")

    def refuse(self) -> None:
        """Close the port: connecting fails with ECONNREFUSED until ``up()``."""
        self._switch("refuse")

    def hang(self) -> None:
        """Accept connections, read what they send, never answer."""
        self._switch("hang")

    def reply(self, status: int) -> None:
        """Answer every request with ``status`` (e.g. 503, 400), recording nothing."""
        self._switch(status)

    def _switch(self, mode: str | int) -> None:
        with self._lock:
            self._mode = mode
        if mode == "refuse":
            self._close_listener()
        elif self._listener is None:
            self._listen()
        self._cut()

    # --- the front --------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((_HOST, self._port or 0))  # the same port every time after the first
        listener.listen(64)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept, listener)

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            listener.close()

    def _cut(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._open.discard(sock)
        for sock in sockets:
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by refuse() or stop()
            with self._lock:
                mode = self._mode
            if mode == "stopped":
                client.close()
                return
            self._track(client)
            if mode == "up":
                self._spawn(self._pipe, client)
            else:
                with self._lock:
                    self.attempts += 1
                self._spawn(self._hang if mode == "hang" else self._answer, client, mode)

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((_HOST, self.receiver.port))
        except OSError:
            self._forget(client)
            return
        self._track(upstream)
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            try:
                while True:
                    for key, _ in selector.select():
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
            except OSError:
                return
            finally:
                self._forget(client, upstream)

    def _hang(self, client: socket.socket, mode: object) -> None:
        try:
            while client.recv(65536):
                pass
        except OSError:
            pass
        finally:
            self._forget(client)

    def _answer(self, client: socket.socket, status: int) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buffer) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer[length:]
                body = f"the flaky receiver answers {status}".encode()
                client.sendall(
                    f"HTTP/1.1 {status} Flaky\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        except OSError:
            pass
        finally:
            self._forget(client)
