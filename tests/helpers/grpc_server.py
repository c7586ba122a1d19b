"""A gRPC server of its own for tests/test_baggage_extract.py, under OpenTelemetry's gRPC
instrumentation, exporting its spans over OTLP/HTTP to the test's receiver.

Run as ``python grpc_server.py sync|aio OTLP_TRACES_ENDPOINT``. The propagators come from
``OTEL_PROPAGATORS`` (the test sets ``tracecontext,baggage,sessiontrace``), so
``SessionBaggagePropagator`` is built the way OpenTelemetry builds it, with no argument, and
reads ``SESSIONTRACE_TRUST_BAGGAGE``. No protoc: one generic handler, bytes in and out.
``Greeter/Hello`` answers JSON with the session and user in force in the handler, inside a
span of its own (``handler work``). Prints ``PORT <n>`` once it listens; stops when its
standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent import futures
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import sessiontrace

SERVICE = "sessiontrace.test.Greeter"
METHOD = f"/{SERVICE}/Hello"


def setup_tracing(endpoint: str) -> TracerProvider:
    """The global provider: stamps sessions, exports each span as it ends (synchronously)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-server"}))
    provider.add_span_processor(sessiontrace.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return provider


def answer() -> bytes:
    """What the handler saw, from inside a span it makes."""
    with trace.get_tracer("grpc-server").start_as_current_span("handler work"):
        now = sessiontrace.current()
        return json.dumps({"session": now.session_id, "user": now.user_id}).encode()


def hello(request: bytes, context: Any) -> bytes:
    return answer()


async def hello_async(request: bytes, context: Any) -> bytes:
    return answer()


def handlers(behaviour: Any) -> grpc.GenericRpcHandler:
    method = grpc.unary_unary_rpc_method_handler(behaviour)  # no (de)serializer: raw bytes
    return grpc.method_handlers_generic_handler(SERVICE, {"Hello": method})


def serve_sync() -> None:
    from opentelemetry.instrumentation.grpc import server_interceptor

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[server_interceptor()]
    )
    server.add_generic_rpc_handlers((handlers(hello),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()  # until the test closes our standard input
    server.stop(grace=5).wait()


async def serve_aio() -> None:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    server = grpc.aio.server(interceptors=[aio_server_interceptor()])
    server.add_generic_rpc_handlers((handlers(hello_async),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(grace=5)


def main(mode: str, endpoint: str) -> None:
    provider = setup_tracing(endpoint)
    if mode == "sync":
        serve_sync()
    elif mode == "aio":
        asyncio.run(serve_aio())
    else:
        raise SystemExit(f"mode must be sync or aio, got {mode!r}")
    provider.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
