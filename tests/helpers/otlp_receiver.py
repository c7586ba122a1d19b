"""Real OTLP trace receivers (HTTP/protobuf and gRPC) that tests start on a free local port.

Nothing is mocked: each receiver listens on 127.0.0.1, decodes what an OTLP exporter sends,
answers the way a collector does, and keeps every span and every request's headers, so a test
asserts on what actually went over the wire.

Example:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with OTLPHttpReceiver() as receiver:
        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=receiver.traces_endpoint, headers={"x-api-key": "k"})
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider.get_tracer("demo").start_span("hello", attributes={"session.id": "c-42"}).end()
        provider.shutdown()  # close the exporter's connections before the receiver stops
        (span,) = receiver.wait_for_spans(1)
        assert span.attributes == {"session.id": "c-42"}
        assert receiver.headers()[0]["x-api-key"] == "k"

``OTLPGrpcReceiver`` works the same way with the gRPC exporter:
``OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OTLPGrpcReceiver", "OTLPHttpReceiver", "ReceivedSpan"]

_HOST = "127.0.0.1"
_TRACES_PATH = "/v1/traces"
_PROTOBUF = "application/x-protobuf"

_ReceiverT = TypeVar("_ReceiverT", bound="_Receiver")


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as a receiver decoded it from the wire.

    Ids are lowercase hex (32 characters for ``trace_id``, 16 for ``span_id``);
    ``parent_span_id`` is None for a root span. Attribute values are plain Python: str, bool,
    int, float, bytes, list (OTLP array) or dict (OTLP kvlist). The dict fields make instances
    unhashable: compare them, don't put them in sets.

    Example:
        span = receiver.wait_for_spans(1)[0]
        assert span.parent_span_id is None and span.resource_attributes["service.name"] == "svc"
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, object]
    resource_attributes: dict[str, object]
    scope_name: str


def _to_python(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_to_python(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind is None:  # an AnyValue with nothing set
        return None
    # string_value, bool_value, int_value, double_value, bytes_value: already Python scalars.
    scalar: object = getattr(value, kind)
    return scalar


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, object]:
    return {pair.key: _to_python(pair.value) for pair in pairs}


def _decode(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        attributes=_attributes(span.attributes),
                        resource_attributes=dict(resource),  # one dict per span, never shared
                        scope_name=scope_spans.scope.name,
                    )
                )
    return spans


class _Receiver:
    """Storage, waiting and start/stop shared by both receivers; subclasses serve the wire."""

    def __init__(self) -> None:
        self._changed = threading.Condition()  # guards the three lists below
        self._requests: list[ExportTraceServiceRequest] = []
        self._headers: list[dict[str, str]] = []
        self._spans: list[ReceivedSpan] = []
        self._port: int | None = None

    # Subclass hooks: bind 127.0.0.1:0 and serve, returning the port; stop and release everything.
    def _serve(self) -> int:
        raise NotImplementedError

    def _shutdown(self) -> None:
        raise NotImplementedError

    def start(self: _ReceiverT) -> _ReceiverT:
        """Bind a free port on 127.0.0.1 and start serving; returns the receiver.

        Raises:
            RuntimeError: if the receiver is already running.
        """
        if self._port is not None:
            raise RuntimeError(f"{type(self).__name__} is already running on port {self._port}")
        self._port = self._serve()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and join every thread. Safe to call twice."""
        if self._port is None:
            return
        self._port = None
        self._shutdown()

    def __enter__(self: _ReceiverT) -> _ReceiverT:
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
        """The bound port. Raises RuntimeError when the receiver is not running."""
        if self._port is None:
            raise RuntimeError(
                f"{type(self).__name__} is not running: call start() or use it in a `with` block"
            )
        return self._port

    @property
    def endpoint(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:4318`` (no path)."""
        return f"http://{_HOST}:{self.port}"

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order (a copy)."""
        with self._changed:
            return list(self._spans)

    def headers(self) -> list[dict[str, str]]:
        """Headers (gRPC: invocation metadata) of each accepted export, in arrival order.

        Keys are lowercase; a repeated HTTP header is joined with ", "; binary gRPC metadata
        (``-bin`` keys) is base64-encoded.

        Example:
            assert all(h["x-api-key"] == "k" for h in receiver.headers())
        """
        with self._changed:
            return [dict(headers) for headers in self._headers]

    def export_requests(self) -> list[ExportTraceServiceRequest]:
        """The raw decoded export requests, for fields ``ReceivedSpan`` leaves out."""
        with self._changed:
            return list(self._requests)

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._changed:
            self._requests.clear()
            self._headers.clear()
            self._spans.clear()

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans have arrived and return all of them.

        Args:
            count: the minimum number of spans to wait for.
            timeout: seconds to wait before giving up.

        Returns:
            Every span received so far (at least ``count``), in arrival order.

        Raises:
            AssertionError: if fewer than ``count`` spans arrived within ``timeout``; the
                message says how many did and names them.

        Example:
            root, child = sorted(receiver.wait_for_spans(2), key=lambda s: s.parent_span_id or "")
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._spans) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    names = [span.name for span in self._spans]
                    raise AssertionError(
                        f"{type(self).__name__}: expected at least {count} span(s) within "
                        f"{timeout}s, but {len(names)} arrived: {names}"
                    )
                self._changed.wait(remaining)
            return list(self._spans)

    def _record(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        spans = _decode(request)
        with self._changed:
            self._requests.append(request)
            self._headers.append(headers)
            self._spans.extend(spans)
            self._changed.notify_all()


# --- OTLP/HTTP ---------------------------------------------------------------------------------


def _decompress(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":  # zlib-wrapped, as the Python exporter's zlib.compress sends it
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does; stop() cuts idle connections
    server: _HttpServer

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True  # the body's end is unknown: the connection is unusable
            self._reply(HTTPStatus.LENGTH_REQUIRED, b"a numeric Content-Length is required")
            return
        body = self.rfile.read(int(length))  # read before any reply, so keep-alive stays in step
        if self.path.partition("?")[0] != _TRACES_PATH:
            self._reply(HTTPStatus.NOT_FOUND, f"only POST {_TRACES_PATH} is served".encode())
            return
        content_type = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if content_type != _PROTOBUF:
            self._reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"expected {_PROTOBUF}".encode())
            return
        try:
            raw = _decompress(body, self.headers.get("Content-Encoding"))
            request = ExportTraceServiceRequest.FromString(raw)
        except (OSError, EOFError, zlib.error, ValueError, DecodeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, f"undecodable export request: {exc}".encode())
            return
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.server.receiver._record(request, headers)
        self._reply(HTTPStatus.OK, ExportTraceServiceResponse().SerializeToString(), _PROTOBUF)

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a passing test prints nothing."""


class _HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose close() cuts open connections and joins every handler thread.

    Handler threads stay daemons, so a receiver a test forgot to stop never blocks interpreter
    exit; ThreadingMixIn joins only non-daemon threads, so this class keeps its own list.
    """

    def __init__(self, receiver: _Receiver) -> None:
        self.receiver = receiver
        self._closing = False
        self._lock = threading.Lock()  # guards the two collections below
        self._connections: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []
        super().__init__((_HOST, 0), _HttpHandler)

    # Runs in the serving thread, once per accepted connection; the handler thread's `finally`
    # calls shutdown_request. After shutdown() returns, no call to this is left in progress.
    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"otlp-http-receiver:{self.server_port}:connection",
            daemon=True,
        )
        with self._lock:
            if isinstance(request, socket.socket):
                self._connections.add(request)
            self._handlers = [handler for handler in self._handlers if handler.is_alive()]
        thread.start()
        with self._lock:
            self._handlers.append(thread)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close(self) -> None:
        """After shutdown(): wake handlers idle on keep-alive connections, join them, close."""
        self._closing = True
        with self._lock:
            connections, handlers = list(self._connections), list(self._handlers)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client may have closed it already
                connection.shutdown(socket.SHUT_RDWR)  # the handler's next read sees EOF
        for handler in handlers:
            handler.join()
        self.server_close()

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if self._closing:
            return  # a write to a connection close() cut: expected, not a bug
        super().handle_error(request, client_address)


class OTLPHttpReceiver(_Receiver):
    """OTLP/HTTP trace receiver: ``POST /v1/traces`` with protobuf bodies, gzip or deflate.

    Replies 200 with an empty ``ExportTraceServiceResponse``; 404, 411, 415 or 400 for a wrong
    path, a missing Content-Length, a non-protobuf Content-Type or an undecodable body (those
    requests are not recorded). Use it as a context manager, or call ``start()``/``stop()``.

    Example:
        with OTLPHttpReceiver() as receiver:
            exporter = OTLPSpanExporter(endpoint=receiver.traces_endpoint)
            ...
            spans = receiver.wait_for_spans(3)
    """

    def __init__(self) -> None:
        super().__init__()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def traces_endpoint(self) -> str:
        """Full traces URL, e.g. ``http://127.0.0.1:4318/v1/traces``."""
        return self.endpoint + _TRACES_PATH

    def _serve(self) -> int:
        self._server = _HttpServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name=f"otlp-http-receiver:{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self._server.server_port

    def _shutdown(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()  # serve_forever returns: no connection is accepted after this
        thread.join()
        server.close()


# --- OTLP/gRPC ---------------------------------------------------------------------------------


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: _Receiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        headers: dict[str, str] = {}
        for key, value in context.invocation_metadata():
            text = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self._receiver._record(request, headers)
        return ExportTraceServiceResponse()


def _grpc_threads_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """Python threads grpc's server started since ``before``: its poller and its grace timer.

    Matched by the target name Python puts in thread names, so threads that other code
    starts meanwhile are never joined.
    """
    targets = ("(_serve)", "(cancel_all_calls_after_grace)")
    return [t for t in threading.enumerate() if t not in before and t.name.endswith(targets)]


class OTLPGrpcReceiver(_Receiver):
    """OTLP/gRPC trace receiver: a real ``TraceService`` server, plaintext, on 127.0.0.1.

    Point the gRPC exporter at ``endpoint`` with ``insecure=True``. Use it as a context
    manager, or call ``start()``/``stop()``.

    Example:
        with OTLPGrpcReceiver() as receiver:
            exporter = OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)
            ...
            spans = receiver.wait_for_spans(3)
    """

    #: Seconds stop() lets in-flight exports finish before cancelling them.
    stop_grace: float = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._server: grpc.Server | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._grpc_threads: list[threading.Thread] = []

    def _serve(self) -> int:
        pool = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc-receiver")
        # No SO_REUSEPORT: two receivers must never share a port.
        server = grpc.server(pool, options=[("grpc.so_reuseport", 0)])
        # The generated _grpc module has no annotations.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self), server
        )
        try:
            port: int = server.add_insecure_port(f"{_HOST}:0")
            if port == 0:  # older grpcio reports a failed bind this way instead of raising
                raise RuntimeError(f"could not bind a gRPC port on {_HOST}")
            before = set(threading.enumerate())
            server.start()
        except BaseException:
            server.stop(None)
            pool.shutdown(wait=True)
            raise
        self._server, self._pool = server, pool
        self._grpc_threads = _grpc_threads_since(before)
        return port

    def _shutdown(self) -> None:
        server, pool, threads = self._server, self._pool, self._grpc_threads
        self._server, self._pool, self._grpc_threads = None, None, []
        if server is not None:
            before = set(threading.enumerate())
            server.stop(self.stop_grace).wait()
            threads += _grpc_threads_since(before)
        # stop()'s event fires just before grpc's serving and grace-timer threads return.
        for thread in threads:
            thread.join()
        if pool is not None:
            pool.shutdown(wait=True)  # grpc.server never shuts down the pool it was given
