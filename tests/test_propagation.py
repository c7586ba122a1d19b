"""Carriers: the session and the trace into other processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor

import pytest
from opentelemetry import trace

import sessiontrace
from helpers.workers import describe
from sessiontrace import (
    carrier,
    carry,
    current,
    current_session_id,
    using_attributes,
    using_carrier,
    using_session,
)
from sessiontrace.store import SessionStore

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


# --- carry() in a multiprocessing.Pool: the worker's spans reach the store ------------------
# Pool workers end with os._exit (no atexit, so no provider shutdown), and leaving
# `with Pool()` terminates them: spans still queued in the worker's BatchSpanProcessor are
# lost unless the carried call flushes them before it returns its result.

TASKS = 20
SPANS_PER_TASK = 10


def configure_store(path: str) -> None:
    """A pool initializer: the worker's spans go to the SQLite store at ``path``, batched."""
    sessiontrace.configure(store=True, store_path=path, propagate=False)


def emit_spans(task: int) -> int:
    """Make SPANS_PER_TASK spans (one parent, its children) in the worker; return its pid."""
    tracer = trace.get_tracer("pool-worker")
    with tracer.start_as_current_span(f"task-{task}"):
        for index in range(SPANS_PER_TASK - 1):
            with tracer.start_as_current_span(f"task-{task}-step-{index}"):
                pass
    return os.getpid()


def fail_after_spans(task: int) -> int:
    emit_spans(task)
    raise RuntimeError(f"task {task} failed on purpose")


def stored_names(path, session_id: str) -> list[str]:
    with SessionStore(path) as store:
        return sorted(span.name for span in store.spans(session_id))


def expected_names() -> list[str]:
    names = []
    for task in range(TASKS):
        names.append(f"task-{task}")
        names.extend(f"task-{task}-step-{index}" for index in range(SPANS_PER_TASK - 1))
    return sorted(names)


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_pool_workers_configured_by_the_initializer_store_every_carried_span(
    tmp_path, start_method
):
    path = str(tmp_path / "sessions.db")
    context = multiprocessing.get_context(start_method)
    with using_session(f"pool-{start_method}"):
        task = carry(emit_spans)
    with context.Pool(2, initializer=configure_store, initargs=(path,)) as pool:
        pids = pool.map(task, range(TASKS), chunksize=1)
    # Leaving the block terminated the workers: only what the carried calls flushed is there.
    assert os.getpid() not in pids
    assert stored_names(path, f"pool-{start_method}") == expected_names()


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_a_carried_call_that_raises_still_flushes_its_spans(tmp_path, start_method):
    path = str(tmp_path / "sessions.db")
    with using_session("pool-errors"):
        task = carry(fail_after_spans)
    context = multiprocessing.get_context(start_method)
    with context.Pool(2, initializer=configure_store, initargs=(path,)) as pool:
        results = [pool.apply_async(task, (number,)) for number in range(TASKS)]
        for result in results:
            with pytest.raises(RuntimeError, match="failed on purpose"):
                result.get(timeout=120)
    assert stored_names(path, "pool-errors") == expected_names()


_FORKING_PROGRAM = textwrap.dedent(
    """
    import multiprocessing, os, sys
    from opentelemetry import trace
    import sessiontrace

    def emit_spans(task):
        tracer = trace.get_tracer("pool-worker")
        with tracer.start_as_current_span(f"task-{task}"):
            for index in range(SPANS_PER_TASK - 1):
                with tracer.start_as_current_span(f"task-{task}-step-{index}"):
                    pass
        return os.getpid()

    if __name__ == "__main__":
        sessiontrace.configure(store=True, store_path=sys.argv[1], propagate=False)
        with sessiontrace.using_session("pool-fork-parent"):
            task = sessiontrace.carry(emit_spans)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pids = pool.map(task, range(TASKS), chunksize=1)
        assert os.getpid() not in pids
        print(len(pids))
    """
).replace("SPANS_PER_TASK", str(SPANS_PER_TASK)).replace("TASKS", str(TASKS))


def test_pool_forked_from_a_configured_program_stores_every_carried_span(tmp_path):
    # A program of its own, so that configure() sets up a fresh global provider, as an
    # application does, before the pool forks its workers.
    program = tmp_path / "forking_program.py"
    program.write_text(_FORKING_PROGRAM)
    path = str(tmp_path / "sessions.db")
    done = subprocess.run(
        [sys.executable, str(program), path], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(TASKS)
    assert stored_names(path, "pool-fork-parent") == expected_names()


def test_a_carried_call_in_its_own_process_does_not_flush(spans, tracer):
    # Called where it was made (a thread pool, or directly), it is an ordinary call.
    with using_session("here"):
        task = carry(emit_spans)
    assert task.origin_pid == os.getpid()
    assert pickle.loads(pickle.dumps(task)).origin_pid == os.getpid()
    assert task(0) == os.getpid()
    assert len(spans.all()) == SPANS_PER_TASK


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

    from sessiontrace._baggage import install_propagator

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
    providers = [TracerProvider(shutdown_on_exit=False) for _ in range(2)]
    try:
        configure(propagate=False, endpoint="http://127.0.0.1:1", tracer_provider=providers[0])
        inner = getattr(get_global_textmap(), "_propagators", [get_global_textmap()])
        assert not any(isinstance(p, SessionBaggagePropagator) for p in inner)
        monkeypatch.setenv("SESSIONTRACE_PROPAGATE", "false")
        configure(endpoint="http://127.0.0.1:1", tracer_provider=providers[1])
        inner = getattr(get_global_textmap(), "_propagators", [get_global_textmap()])
        assert not any(isinstance(p, SessionBaggagePropagator) for p in inner)
    finally:
        set_global_textmap(previous)
        for provider in providers:  # no export thread outlives the test
            provider.shutdown()


def test_otel_propagators_env_knows_sessiontrace():
    from importlib.metadata import entry_points

    (entry,) = [
        e for e in entry_points(group="opentelemetry_propagator") if e.name == "sessiontrace"
    ]
    from sessiontrace import SessionBaggagePropagator

    assert entry.load() is SessionBaggagePropagator
