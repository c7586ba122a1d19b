"""ASGI middleware with a real Starlette app and the real OpenTelemetry ASGI instrumentation."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from sessiontrace import current
from sessiontrace.integrations import _inbound
from sessiontrace.integrations.asgi import SessionMiddleware


@pytest.fixture(autouse=True)
def _forget_logged_reasons():
    _inbound._once.forget()


def make_app(tracer):
    async def chat(request: Request) -> JSONResponse:
        with tracer.start_as_current_span("handler"):
            now = current()
        return JSONResponse({"session": now.session_id, "user": now.user_id})

    return Starlette(routes=[Route("/chat", chat)])


def client_for(app) -> TestClient:
    return TestClient(app)


def test_plain_headers_put_the_session_in_force_and_are_echoed(spans, tracer):
    with client_for(SessionMiddleware(make_app(tracer))) as client:
        response = client.get("/chat", headers={"X-Session-Id": "conv-1", "X-User-Id": "ada"})
    assert response.status_code == 200
    assert response.json() == {"session": "conv-1", "user": "ada"}
    assert response.headers["x-session-id"] == "conv-1"
    attributes = spans.attributes("handler")
    assert attributes["session.id"] == "conv-1"
    assert attributes["user.id"] == "ada"


def test_baggage_is_read_and_a_plain_header_wins(spans, tracer):
    with client_for(SessionMiddleware(make_app(tracer))) as client:
        from_baggage = client.get("/chat", headers={"baggage": "session.id=conv-2,user.id=bob"})
        both = client.get(
            "/chat", headers={"baggage": "session.id=from-baggage", "X-Session-Id": "from-header"}
        )
    assert from_baggage.json() == {"session": "conv-2", "user": "bob"}
    assert both.json()["session"] == "from-header"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Session-Id": "x" * 201},
        {"X-Session-Id": "tab\there"},
        {"baggage": "session.id=" + "y" * 300},
        {"X-Session-Id": "   "},
    ],
)
def test_invalid_values_are_ignored_and_logged_never_an_error(spans, tracer, caplog, headers):
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    with client_for(SessionMiddleware(make_app(tracer))) as client:
        response = client.get("/chat", headers=headers)
    assert response.status_code == 200
    assert response.json()["session"] is None
    assert "session.id" not in spans.attributes("handler")
    assert "ignoring a request's session_id" in caplog.text
    assert "x-session-id" not in response.headers


def test_trust_none_and_a_trust_function(spans, tracer):
    app = make_app(tracer)
    with client_for(SessionMiddleware(app, trust="none")) as client:
        assert client.get("/chat", headers={"X-Session-Id": "s"}).json()["session"] is None

    def only_internal(scope) -> bool:
        return dict(scope["headers"]).get(b"x-internal-token") == b"secret"

    with client_for(SessionMiddleware(app, trust=only_internal)) as client:
        outside = client.get("/chat", headers={"X-Session-Id": "s"})
        inside = client.get("/chat", headers={"X-Session-Id": "s", "X-Internal-Token": "secret"})
    assert outside.json()["session"] is None
    assert inside.json()["session"] == "s"


def test_a_failing_trust_function_means_untrusted_not_an_error(spans, tracer, caplog):
    def broken(scope) -> bool:
        raise RuntimeError("bug in the user's check")

    with client_for(SessionMiddleware(make_app(tracer), trust=broken)) as client:
        response = client.get("/chat", headers={"X-Session-Id": "s"})
    assert response.status_code == 200
    assert response.json()["session"] is None
    assert "trust check raised" in caplog.text


def test_header_names_are_configurable(spans, tracer):
    app = SessionMiddleware(make_app(tracer), session_header="X-Conversation", user_header="X-Who")
    with client_for(app) as client:
        response = client.get("/chat", headers={"X-Conversation": "c-9", "X-Who": "eve"})
    assert response.json() == {"session": "c-9", "user": "eve"}
    assert response.headers["x-conversation"] == "c-9"


def test_beside_the_opentelemetry_asgi_instrumentation(spans, tracer):
    # Session middleware outermost, so the server span starts with the session in force.
    app = SessionMiddleware(OpenTelemetryMiddleware(make_app(tracer)))
    with client_for(app) as client:
        response = client.get("/chat", headers={"X-Session-Id": "conv-3"})
    server = next(s for s in spans.all() if s.name == "GET /chat")
    assert server.attributes["session.id"] == "conv-3"
    assert spans.attributes("handler")["session.id"] == "conv-3"
    assert response.headers["x-trace-id"] == format(server.context.trace_id, "032x")


def test_bad_arguments_are_clear_errors(tracer):
    with pytest.raises(ValueError, match="trust must be 'all', 'none' or a function"):
        SessionMiddleware(make_app(tracer), trust="some")
    with pytest.raises(ValueError, match="session_header must be an HTTP header name"):
        SessionMiddleware(make_app(tracer), session_header="")


@pytest.mark.parametrize("name", ["X:Session", "X-Sessión", "X\x00Id", "X(Id)", 42])
def test_a_header_name_must_be_an_http_token(tracer, name):
    with pytest.raises(ValueError, match=r"user_header must be an HTTP header name \(letters"):
        SessionMiddleware(make_app(tracer), user_header=name)


@pytest.mark.parametrize("argument", ["read_baggage", "response_headers"])
def test_flags_must_be_bools(tracer, argument):
    with pytest.raises(TypeError, match=f"{argument} must be True or False, got 'no'"):
        SessionMiddleware(make_app(tracer), **{argument: "no"})


def test_the_session_header_cannot_be_baggage(tracer):
    with pytest.raises(ValueError, match="must not be 'baggage' \\(read_baggage reads it\\)"):
        SessionMiddleware(make_app(tracer), session_header="Baggage")


def test_a_non_ascii_session_is_echoed_percent_encoded(spans, tracer):
    with client_for(SessionMiddleware(make_app(tracer))) as client:
        response = client.get("/chat", headers={"baggage": "session.id=caf%C3%A9%2C%201"})
    assert response.status_code == 200
    assert response.json()["session"] == "café, 1"
    assert response.headers["x-session-id"] == "caf%C3%A9%2C%201"
    assert spans.attributes("handler")["session.id"] == "café, 1"


def test_lifespan_passes_through(tracer):
    with client_for(SessionMiddleware(make_app(tracer))) as client:
        assert client.get("/chat").status_code == 200


def test_beside_the_opentelemetry_fastapi_instrumentation(spans):
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from sessiontrace import current_session_id

    api = FastAPI()

    @api.get("/chat")
    def chat() -> dict[str, str | None]:
        return {"session": current_session_id()}

    api.add_middleware(SessionMiddleware)
    FastAPIInstrumentor.instrument_app(api)
    try:
        with client_for(api) as client:
            response = client.get("/chat", headers={"X-Session-Id": "fastapi-1"})
    finally:
        FastAPIInstrumentor.uninstrument_app(api)
    assert response.json() == {"session": "fastapi-1"}
    server = [s for s in spans.all() if s.name == "GET /chat"]
    assert server and all(s.attributes["session.id"] == "fastapi-1" for s in server)
    assert response.headers["x-session-id"] == "fastapi-1"
