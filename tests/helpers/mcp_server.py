"""An MCP server for tests/test_mcp.py: a program of its own (stdio, streamable HTTP) or a thread.

As a program: ``python mcp_server.py stdio|http OTLP_TRACES_URL [openinference] [plain]``. It
sets up its own TracerProvider (``SessionSpanProcessor``, then a synchronous OTLP/HTTP exporter
to the test's receiver, so every span is exported before its response is written), runs
``sessiontrace.integrations.mcp.instrument()`` (not with ``plain``) and, with
``openinference``, ``openinference-instrumentation-mcp``; internal errors are strict, so a bug
of ours fails the request. Over HTTP it prints ``PORT <n>`` once it listens on 127.0.0.1.

The server has a tool ``whoami``, a resource ``note://today`` and a prompt ``greet``; each makes
spans of its own, and ``whoami`` answers with the session and user in force and the ``_meta``
it received, as JSON.

In the test process: ``in_thread()`` serves the same server with uvicorn in a thread (its spans
reach the test's provider) and yields the URL of its MCP endpoint.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from opentelemetry import trace

import sessiontrace

_tracer = trace.get_tracer("tests.mcp_server")


def build(sdk_spans: bool = True) -> Any:
    """The MCPServer the tests call; without ``sdk_spans``, without the SDK's own
    OpenTelemetry middleware (its server spans, and the trace parent it takes from ``_meta``)."""
    server = MCPServer("sessiontrace-test")
    if not sdk_spans:
        server.middleware[:] = [
            m for m in server.middleware if type(m).__name__ != "OpenTelemetryMiddleware"
        ]

    @server.tool()
    async def whoami(ctx: Context, note: str = "") -> str:
        with _tracer.start_as_current_span("tool: whoami"):
            with _tracer.start_as_current_span("tool: inner step"):
                answer = {
                    "session": sessiontrace.current_session_id(),
                    "user": sessiontrace.current_user_id(),
                    "meta": ctx.request_context.meta,
                    "note": note,
                }
        return json.dumps(answer, default=repr)

    @server.resource("note://today")
    def today() -> str:
        with _tracer.start_as_current_span("resource: today"):
            return f"today in {sessiontrace.current_session_id()}"

    @server.prompt()
    def greet(name: str) -> str:
        with _tracer.start_as_current_span("prompt: greet"):
            return f"hello {name}"

    return server


def _provider(traces_url: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "mcp-server"}))
    provider.add_span_processor(sessiontrace.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))
    trace.set_tracer_provider(provider)


async def _stdio(server: Any) -> None:
    # Through the module attribute (not MCPServer.run_stdio_async, which holds its own
    # reference), so openinference-instrumentation-mcp's stdio_server wrapper is in the path.
    import mcp.server.stdio

    lowlevel = server._lowlevel_server  # the low-level Server MCPServer drives
    async with mcp.server.stdio.stdio_server() as (read, write):
        await lowlevel.run(read, write, lowlevel.create_initialization_options())


def _listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


def _uvicorn(app: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app, log_config=None, access_log=False, log_level="warning", ws="none", lifespan="on"
    )
    return uvicorn.Server(config)


@contextmanager
def in_thread(sdk_spans: bool = True) -> Iterator[str]:
    """Serve :func:`build`'s server over streamable HTTP in a thread; yields the MCP URL."""
    listener = _listener()
    server = _uvicorn(build(sdk_spans).streamable_http_app())
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


def main(argv: list[str]) -> None:
    import anyio

    from sessiontrace.integrations import mcp as mcp_sessions
    from sessiontrace.testing import strict_errors

    transport, traces_url, *flags = argv
    _provider(traces_url)
    if "openinference" in flags:
        from openinference.instrumentation.mcp import MCPInstrumentor

        MCPInstrumentor().instrument()
    if "plain" not in flags:
        mcp_sessions.instrument()
    server = build()
    with strict_errors():
        if transport == "stdio":
            anyio.run(_stdio, server)
        else:
            listener = _listener()
            print(f"PORT {listener.getsockname()[1]}", flush=True)
            _uvicorn(server.streamable_http_app()).run(sockets=[listener])


if __name__ == "__main__":
    main(sys.argv[1:])
