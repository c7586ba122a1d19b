"""Processes for the cross-service test: a client, a FastAPI service A, a Flask service B.

Run as ``python services.py ROLE OTLP_ENDPOINT [UPSTREAM_URL]``. Each process sets up tracing
with ``sessiontrace.configure()`` exporting to the test's OTLP receiver (synchronously, so a
terminated service has exported everything), instruments its HTTP client and server with the
real OpenTelemetry instrumentations, and for a service prints ``PORT <n>`` once it listens.
"""

from __future__ import annotations

import socket
import sys

import sessiontrace


def client(otlp: str, upstream: str) -> None:
    import httpx
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    provider = sessiontrace.configure(service_name="client", endpoint=otlp, batch=False)
    HTTPXClientInstrumentor().instrument()
    tracer = provider.get_tracer("client")
    with sessiontrace.using_attributes(session_id="conv-x", user_id="ada"):
        with tracer.start_as_current_span("client turn"):
            answer = httpx.get(f"{upstream}/chat", timeout=30).json()
    print("ANSWER", answer["reply"], flush=True)
    provider.shutdown()


def service_a(otlp: str, upstream: str) -> None:
    import httpx
    import uvicorn
    from fastapi import FastAPI
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from sessiontrace.integrations.asgi import SessionMiddleware

    provider = sessiontrace.configure(service_name="service-a", endpoint=otlp, batch=False)
    HTTPXClientInstrumentor().instrument()
    tracer = provider.get_tracer("service-a")
    api = FastAPI()

    @api.get("/chat")
    async def chat() -> dict[str, str]:
        with tracer.start_as_current_span("a: plan answer"):
            async with httpx.AsyncClient() as http:
                reply = (await http.get(f"{upstream}/answer", timeout=30)).json()
        return {"reply": reply["text"], "session": sessiontrace.current_session_id() or ""}

    app = SessionMiddleware(OpenTelemetryMiddleware(api))
    listener = _listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[listener])


def service_b(otlp: str) -> None:
    from flask import Flask, jsonify
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from werkzeug.serving import make_server

    from sessiontrace.integrations.wsgi import SessionMiddleware

    provider = sessiontrace.configure(service_name="service-b", endpoint=otlp, batch=False)
    tracer = provider.get_tracer("service-b")
    app = Flask("service-b")

    @app.get("/answer")
    def answer():  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span("b: call the model"):
            return jsonify(text=f"hello from B in {sessiontrace.current_session_id()}")

    app.wsgi_app = OpenTelemetryMiddleware(SessionMiddleware(app.wsgi_app))  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


def _listen() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    return listener


if __name__ == "__main__":
    role, otlp_endpoint, *rest = sys.argv[1:]
    if role == "client":
        client(otlp_endpoint, rest[0])
    elif role == "a":
        service_a(otlp_endpoint, rest[0])
    else:
        service_b(otlp_endpoint)
