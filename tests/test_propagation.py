"""Carriers: the session and the trace into other processes."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from helpers.workers import describe
from sessiontrace import (
    carrier,
    carry,
    current,
    current_session_id,
    using_attributes,
    using_carrier,
)

VALUES = dict(session_id="batch-7", user_id="ada", metadata={"job": "nightly"}, tags=["etl"])


def test_carrier_holds_strings_only_for_what_is_in_force(tracer):
    assert carrier() == {}
    with using_attributes(**VALUES), tracer.start_as_current_span("parent") as parent:
        values = carrier()
    assert values["session_id"] == "batch-7"
    assert values["user_id"] == "ada"
    assert values["metadata"] == '{"job": "nightly"}'
    assert values["tags"] == '["etl"]'
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert values["traceparent"].split("-")[1] == trace_id
    assert all(isinstance(value, str) for value in values.values())


def test_using_carrier_round_trips_and_restores(tracer):
    with using_attributes(**VALUES):
        values = carrier()
    with using_carrier(values):
        assert current().session_id == "batch-7"
        assert dict(current().metadata) == {"job": "nightly"}
        assert current().tags == ("etl",)
    assert current_session_id() is None


@pytest.mark.parametrize(
    ("values", "error", "words"),
    [
        ({"session_id": ""}, ValueError, "carrier['session_id'] must not be empty"),
        ({"sesion_id": "x"}, ValueError, "unknown key(s) ['sesion_id']"),
        ({"metadata": "{not json"}, ValueError, "carrier['metadata'] is not JSON"),
        ({"tags": '{"a": 1}'}, TypeError, "carrier['tags'] must hold a JSON list"),
        (["session_id"], TypeError, "takes the dict carrier() made"),
    ],
)
def test_a_malformed_carrier_is_a_clear_error_and_applies_nothing(values, error, words):
    with pytest.raises(error) as raised:
        with using_carrier(values):
            pass
    assert words in str(raised.value)
    assert current_session_id() is None


def test_carried_call_pickles():
    with using_attributes(**VALUES):
        task = carry(describe)
    restored = pickle.loads(pickle.dumps(task))
    assert restored.carrier == task.carrier
    with pytest.raises(TypeError, match="takes a function"):
        carry(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_process_pool_workers_get_the_session_and_the_trace(tracer, start_method):
    context = multiprocessing.get_context(start_method)
    with using_attributes(**VALUES), tracer.start_as_current_span("dispatch") as dispatch:
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            carried = [pool.submit(carry(describe), f"job-{i}") for i in range(3)]
            bare = pool.submit(describe, "bare")
            results = [future.result(timeout=60) for future in carried]
            plain = bare.result(timeout=60)
    dispatch_context = dispatch.get_span_context()
    for result in results:
        assert result["session_id"] == "batch-7"
        assert result["user_id"] == "ada"
        assert result["metadata"] == {"job": "nightly"}
        assert result["tags"] == ["etl"]
        assert result["span_attributes"]["session.id"] == "batch-7"
        assert result["span_trace_id"] == dispatch_context.trace_id
        assert result["span_parent_id"] == dispatch_context.span_id
    # Without carry() a worker has nothing in force (with fork it may inherit a copy of the
    # parent's context at fork time, which is why carry() is the only reliable way).
    if start_method == "spawn":
        assert plain["session_id"] is None
        assert "session.id" not in plain["span_attributes"]


# --- outgoing HTTP: the session in W3C baggage -------------------------------------------


def test_session_baggage_propagator_adds_only_our_keys_and_keeps_others():
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    from sessiontrace import SessionBaggagePropagator

    propagator = SessionBaggagePropagator()
    nothing: dict[str, str] = {}
    propagator.inject(nothing)
    assert nothing == {}
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with using_attributes(**VALUES):
            headers: dict[str, str] = {}
            propagator.inject(headers)
    finally:
        otel_context.detach(token)
    entries = dict(pair.split("=", 1) for pair in headers["baggage"].split(","))
    assert entries == {"tenant": "acme", "session.id": "batch-7", "user.id": "ada"}


@pytest.fixture
def http_service():
    """A real Flask service on 127.0.0.1 behind the WSGI middleware, in a thread."""
    import threading

    from flask import Flask, jsonify, request
    from werkzeug.serving import make_server

    from sessiontrace.integrations.wsgi import SessionMiddleware

    app = Flask(__name__)

    @app.get("/whoami")
    def whoami():
        now = current()
        return jsonify(
            session=now.session_id,
            user=now.user_id,
            metadata=dict(now.metadata),
            baggage=request.headers.get("baggage"),
            traceparent=request.headers.get("traceparent"),
        )

    app.wsgi_app = SessionMiddleware(app.wsgi_app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def instrumented_clients():
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.propagate import get_global_textmap, set_global_textmap

    from sessiontrace._propagation import install_propagator

    previous = get_global_textmap()
    install_propagator()
    install_propagator()  # once is enough: a second call adds nothing
    RequestsInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    try:
        yield
    finally:
        RequestsInstrumentor().uninstrument()
        HTTPXClientInstrumentor().uninstrument()
        set_global_textmap(previous)


def test_requests_and_httpx_carry_the_session_to_the_next_service(
    http_service, instrumented_clients, spans
):
    import httpx
    import requests

    with using_attributes(**VALUES):
        by_requests = requests.get(f"{http_service}/whoami", timeout=10).json()
        with httpx.Client() as client:
            by_httpx = client.get(f"{http_service}/whoami").json()
    for answer in (by_requests, by_httpx):
        assert answer["session"] == "batch-7"
        assert answer["user"] == "ada"
        assert answer["metadata"] == {}  # metadata never travels in baggage
        assert "nightly" not in answer["baggage"]
        assert answer["traceparent"]  # it composes with the trace context
    from opentelemetry.trace import SpanKind

    clients = [s for s in spans.all() if s.kind is SpanKind.CLIENT]
    assert len(clients) == 2
    for client_span in clients:
        assert client_span.attributes["session.id"] == "batch-7"


def test_outside_a_session_nothing_is_added(http_service, instrumented_clients):
    import requests

    answer = requests.get(f"{http_service}/whoami", timeout=10).json()
    assert answer["session"] is None
    assert answer["baggage"] is None


def test_configure_can_leave_propagation_off(monkeypatch):
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagate import get_global_textmap, set_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from sessiontrace import SessionBaggagePropagator, configure

    previous = get_global_textmap()
    set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    try:
        configure(
            propagate=False,
            endpoint="http://127.0.0.1:1",
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        inner = getattr(get_global_textmap(), "_propagators", [get_global_textmap()])
        assert not any(isinstance(p, SessionBaggagePropagator) for p in inner)
        monkeypatch.setenv("SESSIONTRACE_PROPAGATE", "false")
        configure(
            endpoint="http://127.0.0.1:1", tracer_provider=TracerProvider(shutdown_on_exit=False)
        )
        inner = getattr(get_global_textmap(), "_propagators", [get_global_textmap()])
        assert not any(isinstance(p, SessionBaggagePropagator) for p in inner)
    finally:
        set_global_textmap(previous)


def test_otel_propagators_env_knows_sessiontrace():
    from importlib.metadata import entry_points

    (entry,) = [
        e for e in entry_points(group="opentelemetry_propagator") if e.name == "sessiontrace"
    ]
    from sessiontrace import SessionBaggagePropagator

    assert entry.load() is SessionBaggagePropagator
