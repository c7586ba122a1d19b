"""WSGI middleware with a real Flask app and the real OpenTelemetry WSGI instrumentation."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, Response, jsonify
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

from sessiontrace import current, current_session_id
from sessiontrace.integrations import _inbound
from sessiontrace.integrations.wsgi import SessionMiddleware


@pytest.fixture(autouse=True)
def _forget_logged_reasons():
    _inbound._once.forget()


def make_app(tracer) -> Flask:
    app = Flask(__name__)

    @app.get("/chat")
    def chat():
        with tracer.start_as_current_span("handler"):
            now = current()
        return jsonify(session=now.session_id, user=now.user_id)

    @app.get("/stream")
    def stream():
        def tokens():
            for word in ("Hel", "lo"):
                with tracer.start_as_current_span(f"chunk-{word}"):
                    yield f"{word}:{current_session_id()}\n"

        return Response(tokens(), mimetype="text/plain")

    return app


def wrapped(tracer, **options) -> Flask:
    app = make_app(tracer)
    app.wsgi_app = SessionMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


def test_plain_headers_put_the_session_in_force_and_are_echoed(spans, tracer):
    client = wrapped(tracer).test_client()
    response = client.get("/chat", headers={"X-Session-Id": "conv-1", "X-User-Id": "ada"})
    assert response.json == {"session": "conv-1", "user": "ada"}
    assert response.headers["X-Session-Id"] == "conv-1"
    assert spans.attributes("handler")["session.id"] == "conv-1"


def test_baggage_is_read(spans, tracer):
    client = wrapped(tracer).test_client()
    response = client.get("/chat", headers={"baggage": "session.id=conv-2,user.id=bob"})
    assert response.json == {"session": "conv-2", "user": "bob"}


def test_a_streamed_body_runs_with_the_session_in_force(spans, tracer):
    client = wrapped(tracer).test_client()
    response = client.get("/stream", headers={"X-Session-Id": "conv-3"})
    assert response.get_data(as_text=True) == "Hel:conv-3\nlo:conv-3\n"
    assert spans.attributes("chunk-Hel")["session.id"] == "conv-3"
    assert current_session_id() is None


def test_invalid_values_are_ignored_and_logged_never_an_error(spans, tracer, caplog):
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    client = wrapped(tracer).test_client()
    response = client.get("/chat", headers={"X-Session-Id": "bad\x7fid"})
    assert response.status_code == 200
    assert response.json["session"] is None
    assert "ignoring a request's session_id" in caplog.text


def test_trust_function_sees_the_environ(spans, tracer):
    def from_loopback(environ) -> bool:
        return environ.get("REMOTE_ADDR") == "10.1.2.3"

    client = wrapped(tracer, trust=from_loopback).test_client()
    refused = client.get("/chat", headers={"X-Session-Id": "s"})
    taken = client.get(
        "/chat", headers={"X-Session-Id": "s"}, environ_base={"REMOTE_ADDR": "10.1.2.3"}
    )
    assert refused.json["session"] is None
    assert taken.json["session"] == "s"


def test_beside_the_opentelemetry_wsgi_instrumentation(spans, tracer):
    # The OpenTelemetry middleware attaches a freshly extracted context for each request,
    # which drops values kept only in the OpenTelemetry context; sessiontrace keeps the
    # request's values beside it, so the order of the two middlewares does not matter.
    for order in ("session outermost", "opentelemetry outermost"):
        app = make_app(tracer)
        if order == "session outermost":
            app.wsgi_app = SessionMiddleware(OpenTelemetryMiddleware(app.wsgi_app))
        else:
            app.wsgi_app = OpenTelemetryMiddleware(SessionMiddleware(app.wsgi_app))
        response = app.test_client().get("/chat", headers={"X-Session-Id": f"c-{order}"})
        assert response.json["session"] == f"c-{order}", order
        handler = [s for s in spans.all() if s.name == "handler"][-1]
        assert handler.attributes["session.id"] == f"c-{order}", order
    # The server span is stamped in both orders: when it started before the session was
    # known, the middleware stamps it as soon as it reads the request.
    server = [s for s in spans.all() if s.name == "GET /chat"]
    assert [s.attributes["session.id"] for s in server] == [
        "c-session outermost",
        "c-opentelemetry outermost",
    ]


def test_beside_the_opentelemetry_flask_instrumentation(spans, tracer):
    # FlaskInstrumentor attaches a freshly extracted context in a before_request hook, which
    # drops what is kept only in the OpenTelemetry context: the middleware's copy beside it
    # keeps the handler's spans stamped, and the request span is stamped when the session
    # is read.
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = make_app(tracer)
    FlaskInstrumentor().instrument_app(app)
    app.wsgi_app = SessionMiddleware(app.wsgi_app)
    try:
        response = app.test_client().get("/chat", headers={"X-Session-Id": "flask-1"})
    finally:
        FlaskInstrumentor().uninstrument_app(app)
    assert response.json["session"] == "flask-1"
    assert spans.attributes("handler")["session.id"] == "flask-1"
    (server,) = [s for s in spans.all() if s.name == "GET /chat"]
    assert server.attributes["session.id"] == "flask-1"
    assert response.headers["X-Trace-Id"] == format(server.context.trace_id, "032x")


def test_a_utf8_header_reads_as_under_asgi_and_is_echoed_percent_encoded(spans, tracer):
    # Werkzeug's test client, like a WSGI server, hands the header on Latin-1 decoded.
    client = wrapped(tracer).test_client()
    response = client.get("/chat", headers={"X-Session-Id": "café".encode().decode("latin-1")})
    assert response.status_code == 200
    assert response.json["session"] == "café"
    assert response.headers["X-Session-Id"] == "caf%C3%A9"
    assert spans.attributes("handler")["session.id"] == "café"
