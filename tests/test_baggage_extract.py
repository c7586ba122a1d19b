"""SessionBaggagePropagator.extract: a caller's session, carried in W3C baggage, continues on
any transport whose OpenTelemetry instrumentation extracts a context (gRPC, messaging).

The gRPC tests run a real server in a process of its own, under OpenTelemetry's gRPC server
interceptor, with ``OTEL_PROPAGATORS=tracecontext,baggage,sessiontrace``; its spans come back
over OTLP/HTTP to a receiver this test runs.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import get_global_textmap, set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from helpers.otlp_receiver import OTLPHttpReceiver
from helpers.programs import clean_env
from sessiontrace import (
    SessionBaggagePropagator,
    current,
    current_session_id,
    using_attributes,
    using_metadata,
    using_session,
)
from sessiontrace import _baggage as propagation
from sessiontrace.integrations import _inbound

GRPC_SERVER = Path(__file__).resolve().parent / "helpers" / "grpc_server.py"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _forget_logged_reasons():
    _inbound._once.forget()
    propagation._carrier_once.forget()


@pytest.fixture
def global_propagators():
    """``tracecontext,baggage,sessiontrace`` as the global propagator, restored after."""
    previous = get_global_textmap()
    set_global_textmap(
        CompositePropagator(
            [TraceContextTextMapPropagator(), W3CBaggagePropagator(), SessionBaggagePropagator()]
        )
    )
    try:
        yield
    finally:
        set_global_textmap(previous)


def in_force(context):
    """What ``context`` puts in force once attached, and the attributes of a span started in it."""
    token = otel_context.attach(context)
    try:
        with trace.get_tracer("tests").start_as_current_span("in handler") as span:
            now = current()
        return now, dict(span.attributes or {})
    finally:
        otel_context.detach(token)


# --- extract puts the session in force ----------------------------------------------------


def test_extract_puts_the_session_and_user_in_force_in_the_returned_context(spans):
    given = otel_context.Context()
    extracted = SessionBaggagePropagator(trust="all").extract(
        {"baggage": "tenant=acme,session.id=g-1;prop=1,user.id=%C3%A5sa"}, given
    )
    assert current_session_id() is None  # nothing attached: the caller attaches it
    now, attributes = in_force(extracted)
    assert (now.session_id, now.user_id) == ("g-1", "åsa")
    assert attributes["session.id"] == "g-1"
    assert attributes["user.id"] == "åsa"
    assert in_force(given)[0].session_id is None  # the given context is not changed


def test_a_round_trip_through_inject_and_extract():
    propagator = SessionBaggagePropagator(trust="all")
    headers: dict[str, str] = {}
    with using_attributes(session_id="chat ☃, 42", user_id="ada", metadata={"plan": "pro"}):
        propagator.inject(headers)
    now, _ = in_force(propagator.extract(headers, otel_context.Context()))
    assert (now.session_id, now.user_id, dict(now.metadata)) == ("chat ☃, 42", "ada", {})


def test_it_composes_with_tracecontext_and_baggage(spans):
    composite = CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), SessionBaggagePropagator("all")]
    )
    context = composite.extract({"traceparent": TRACEPARENT, "baggage": "session.id=g-2,k=v"})
    assert baggage.get_all(context) == {"session.id": "g-2", "k": "v"}  # OTel's baggage too
    now, attributes = in_force(context)
    assert now.session_id == "g-2"
    (span,) = [s for s in spans.all() if s.name == "in handler"]
    assert format(span.context.trace_id, "032x") == TRACEPARENT.split("-")[1]
    assert attributes["session.id"] == "g-2"


def test_what_the_given_context_has_in_force_wins_field_by_field():
    propagator = SessionBaggagePropagator(trust="all")
    carrier = {"baggage": "session.id=from-baggage,user.id=from-baggage"}
    with using_session("local"), using_metadata({"plan": "pro"}):
        here = otel_context.get_current()
        now, _ = in_force(propagator.extract(carrier, here))
        assert propagator.extract(carrier) is not here  # no context: the current one
    assert (now.session_id, now.user_id, dict(now.metadata)) == (
        "local",
        "from-baggage",
        {"plan": "pro"},
    )
    with using_attributes(session_id="s", user_id="u"):
        full = otel_context.get_current()
        assert propagator.extract(carrier, full) is full  # nothing left to fill in


def test_a_session_left_later_in_the_handler_goes_back_to_the_extracted_one():
    context = SessionBaggagePropagator("all").extract({"baggage": "session.id=g-3"})
    token = otel_context.attach(context)
    try:
        with using_session("inner"):
            assert current_session_id() == "inner"
        assert current_session_id() == "g-3"
    finally:
        otel_context.detach(token)


def test_http_requests_are_left_to_the_middlewares():
    propagator = SessionBaggagePropagator(trust="all")
    given = otel_context.Context()
    asgi_scope = {"type": "http", "headers": [(b"baggage", b"session.id=s")], "asgi": {}}
    wsgi_environ = {"wsgi.version": (1, 0), "HTTP_BAGGAGE": "session.id=s"}
    for carrier in (asgi_scope, wsgi_environ, {"REQUEST_METHOD": "GET", "baggage": "session.id=s"}):
        assert propagator.extract(carrier, given) is given


def test_beside_opentelemetrys_baggage_span_processor():
    # BaggageSpanProcessor copies OpenTelemetry's baggage onto spans, unchecked and whatever
    # sessiontrace's trust says; with session.id and user.id left to sessiontrace, spans get
    # the checked values only, and the rest of the baggage as before.
    from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor
    from opentelemetry.sdk.trace import TracerProvider

    from sessiontrace import SessionSpanProcessor

    ours = {"session.id", "user.id"}
    composite = {
        trust: CompositePropagator([W3CBaggagePropagator(), SessionBaggagePropagator(trust)])
        for trust in ("all", "none")
    }
    carrier = {"baggage": "session.id=g-1,user.id=bad%zz,tenant=acme"}

    def stamped(predicate, trust):
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BaggageSpanProcessor(predicate))
        provider.add_span_processor(SessionSpanProcessor())
        context = composite[trust].extract(carrier, otel_context.Context())
        span = provider.get_tracer("t").start_span("server", context=context)
        span.end()
        return dict(span.attributes)

    left_to_sessiontrace = stamped(lambda key: key not in ours, "all")
    assert left_to_sessiontrace == {
        "tenant": "acme",
        "session.id": "g-1",
        "gen_ai.conversation.id": "g-1",
    }
    assert "session.id" not in stamped(lambda key: key not in ours, "none")
    # Allowing every key copies the client's values whatever the trust: a choice to avoid.
    assert stamped(ALLOW_ALL_BAGGAGE_KEYS, "none")["user.id"] == "bad%zz"


# --- trust -------------------------------------------------------------------------------

CARRIER = {"baggage": "session.id=g-1,user.id=u"}


def test_a_bad_value_is_logged_naming_where_it_was(caplog):
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    given = otel_context.Context()
    bad = {"baggage": "session.id=a%ZZ"}
    assert SessionBaggagePropagator(trust="all").extract(bad, given) is given
    assert "ignoring a request's session_id: the carrier's baggage (gRPC metadata" in caplog.text


def test_trust_none_takes_nothing():
    given = otel_context.Context()
    assert SessionBaggagePropagator(trust="none").extract(CARRIER, given) is given


def test_a_trust_function_sees_the_carrier():
    seen = []

    def only_internal(carrier) -> bool:
        seen.append(carrier)
        return carrier.get("x-internal") == "yes"

    propagator = SessionBaggagePropagator(trust=only_internal)
    given = otel_context.Context()
    assert propagator.extract(CARRIER, given) is given
    internal = {**CARRIER, "x-internal": "yes"}
    assert in_force(propagator.extract(internal, given))[0].session_id == "g-1"
    assert seen == [CARRIER, internal]
    assert propagator.extract({}, given) is given
    assert len(seen) == 2  # no baggage, no question


def test_a_raising_trust_function_means_untrusted(caplog):
    def broken(carrier) -> bool:
        raise RuntimeError("boom")

    caplog.set_level(logging.WARNING, logger="sessiontrace")
    given = otel_context.Context()
    assert SessionBaggagePropagator(trust=broken).extract(CARRIER, given) is given
    assert "trust check raised" in caplog.text


@pytest.mark.parametrize(
    ("text", "taken"), [(None, True), ("", True), ("all", True), (" ALL ", True), ("none", False)]
)
def test_the_default_comes_from_the_environment(monkeypatch, text, taken):
    if text is None:
        monkeypatch.delenv("SESSIONTRACE_TRUST_BAGGAGE", raising=False)
    else:
        monkeypatch.setenv("SESSIONTRACE_TRUST_BAGGAGE", text)
    now, _ = in_force(SessionBaggagePropagator().extract(CARRIER, otel_context.Context()))
    assert now.session_id == ("g-1" if taken else None)


@pytest.mark.parametrize("text", ["off", "false", "nnone", "yes", "trusted"])
def test_an_unknown_environment_value_warns_and_takes_nothing(monkeypatch, caplog, text):
    monkeypatch.setenv("SESSIONTRACE_TRUST_BAGGAGE", text)
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    propagator = SessionBaggagePropagator()
    assert "SESSIONTRACE_TRUST_BAGGAGE" in caplog.text
    assert "'all'" in caplog.text and "'none'" in caplog.text
    given = otel_context.Context()
    assert propagator.extract(CARRIER, given) is given
    assert repr(propagator) == "SessionBaggagePropagator(trust='none')"


def test_an_argument_beats_the_environment(monkeypatch):
    monkeypatch.setenv("SESSIONTRACE_TRUST_BAGGAGE", "none")
    now, _ = in_force(SessionBaggagePropagator(trust="all").extract(CARRIER))
    assert now.session_id == "g-1"


@pytest.mark.parametrize("trust", ["some", True, 1, ""])
def test_a_bad_trust_argument_is_a_clear_error(trust):
    with pytest.raises(ValueError, match="trust must be 'all', 'none' or a function"):
        SessionBaggagePropagator(trust=trust)


def test_opentelemetry_builds_it_from_the_entry_point_with_the_environment(monkeypatch):
    from importlib.metadata import entry_points

    monkeypatch.setenv("SESSIONTRACE_TRUST_BAGGAGE", "none")
    (entry,) = [
        e for e in entry_points(group="opentelemetry_propagator") if e.name == "sessiontrace"
    ]
    assert repr(entry.load()()) == "SessionBaggagePropagator(trust='none')"


def test_otel_propagators_can_name_it_when_sessiontrace_is_imported_first():
    # Importing opentelemetry.propagate builds what OTEL_PROPAGATORS names: sessiontrace's
    # import must not be half-way through its propagator module then.
    env = {**clean_env(), "OTEL_PROPAGATORS": "tracecontext,baggage,sessiontrace"}
    env["SESSIONTRACE_TRUST_BAGGAGE"] = "none"
    program = (
        "import sessiontrace\n"
        "from opentelemetry.propagate import get_global_textmap\n"
        "print([repr(p) for p in get_global_textmap()._propagators][-1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SessionBaggagePropagator(trust='none')"


# --- hostile carriers --------------------------------------------------------------------


class RaisingGetter:
    def get(self, carrier, key):
        raise OSError("the broker went away")

    def keys(self, carrier):
        return []


class AnswerGetter:
    def __init__(self, answer):
        self.answer = answer

    def get(self, carrier, key):
        return self.answer

    def keys(self, carrier):
        return []


class RaisingMapping(dict):
    def __contains__(self, key):
        raise RuntimeError("hostile")


def test_a_raising_getter_gives_the_context_back_logged_once(caplog):
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    given = otel_context.Context()
    propagator = SessionBaggagePropagator(trust="all")
    for _ in range(3):
        assert propagator.extract({}, given, getter=RaisingGetter()) is given
    assert propagator.extract(RaisingMapping(CARRIER), given) is given
    logged = [r for r in caplog.records if "reading baggage from a carrier raised" in r.message]
    assert len(logged) == 2  # OSError once, RuntimeError once
    assert "OSError" in logged[0].message


@pytest.mark.parametrize(
    "answer",
    [
        42,
        {"session.id": "s"},
        iter(["session.id=s"]),
        [b"session.id=\xff"],
        [1, 2, 3],
        [None],
        [object()],
        ["session.id=a\x00b"],
        ["session.id=a b"],
        ["session.id=caf\u00e9"],
        ["session.id=%zz"],
        ["session.id=%FF"],
        ["session.id=%0A"],
        ["session.id=" + "x" * 201],
        ["session.id=a", "session.id=b"],
        ["session.id=" + "a" * 9000],
        ["k=v"] * 5000,
    ],
    ids=lambda answer: repr(answer)[:30],
)
def test_what_a_getter_answers_never_raises_and_never_makes_a_bad_session(answer, caplog):
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    given = otel_context.Context()
    propagator = SessionBaggagePropagator(trust="all")
    assert propagator.extract({}, given, getter=AnswerGetter(answer)) is given
    assert caplog.records  # each is logged


def test_non_str_values_in_a_dict_carrier_are_ignored():
    # The default getter turns bytes into a list of ints.
    given = otel_context.Context()
    propagator = SessionBaggagePropagator(trust="all")
    for value in (b"session.id=s", 7, 3.5, [b"session.id=\xff"], [None], (1, "x")):
        assert propagator.extract({"baggage": value}, given) is given, value


def middleware_reading(lines):
    """What the HTTP middlewares read from the same baggage lines."""
    headers = [(b"baggage", line) for line in lines]
    return _inbound.read_ids(headers, "x-session-id", "x-user-id", read_baggage=True)


member = st.one_of(
    st.tuples(st.sampled_from(["session.id", "user.id", "k", " session.id "]), st.text()).map(
        lambda pair: f"{pair[0]}={pair[1]}"
    ),
    st.tuples(st.sampled_from(["session.id", "user.id"]), st.text(min_size=1, max_size=300)).map(
        lambda pair: f"{pair[0]}={quote(pair[1])}"
    ),
    st.text(),
)
baggage_lines = st.lists(
    st.lists(member, max_size=6).map(",".join)
    | st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")),
    min_size=1,
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=baggage_lines)
def test_any_baggage_reads_as_the_middlewares_read_it(lines):
    given_context = otel_context.Context()
    extracted = SessionBaggagePropagator(trust="all").extract(
        {}, given_context, getter=AnswerGetter(lines)
    )
    expected = middleware_reading(lines)
    if not expected:
        assert extracted is given_context
        return
    now, _ = in_force(extracted)
    assert (now.session_id, now.user_id) == (expected.get("session_id"), expected.get("user_id"))


@settings(max_examples=200, deadline=None)
@given(
    value=st.text(min_size=1).filter(
        lambda text: any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)
    )
)
def test_an_id_with_control_characters_never_becomes_a_session(value):
    given_context = otel_context.Context()
    carrier = {"baggage": f"session.id={quote(value)},user.id={quote(value)}"}
    assert SessionBaggagePropagator(trust="all").extract(carrier, given_context) is given_context


# --- beside the HTTP middlewares: the same result as before --------------------------------


def fastapi_answers(headers_list, trust):
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from starlette.testclient import TestClient

    from sessiontrace.integrations.asgi import SessionMiddleware

    api = FastAPI()

    @api.get("/chat")
    def chat() -> dict[str, str | None]:
        now = current()
        return {"session": now.session_id, "user": now.user_id}

    api.add_middleware(SessionMiddleware, trust=trust)
    FastAPIInstrumentor.instrument_app(api)
    try:
        with TestClient(api) as client:
            return [client.get("/chat", headers=headers).json() for headers in headers_list]
    finally:
        FastAPIInstrumentor.uninstrument_app(api)


def flask_answers(headers_list, trust):
    from flask import Flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    from sessiontrace.integrations.wsgi import SessionMiddleware

    app = Flask(__name__)

    @app.get("/chat")
    def chat():
        now = current()
        return {"session": now.session_id, "user": now.user_id}

    FlaskInstrumentor().instrument_app(app)
    app.wsgi_app = SessionMiddleware(app.wsgi_app, trust=trust)  # type: ignore[method-assign]
    try:
        client = app.test_client()
        return [client.get("/chat", headers=headers).json for headers in headers_list]
    finally:
        FlaskInstrumentor().uninstrument_app(app)


REQUESTS = [
    {"baggage": "session.id=from-baggage,user.id=bob"},
    {"baggage": "session.id=from-baggage", "X-Session-Id": "from-header"},
    {"baggage": "session.id=bad%zz"},
    {"X-Session-Id": "plain"},
]


@pytest.mark.parametrize("answers", [fastapi_answers, flask_answers], ids=["fastapi", "flask"])
@pytest.mark.parametrize("trust", ["all", "none", lambda request: False])
def test_http_reads_as_before_with_sessiontrace_in_the_global_propagator(spans, answers, trust):
    before = answers(REQUESTS, trust)
    server_before = server_sessions(spans)
    spans.clear()
    previous = get_global_textmap()
    set_global_textmap(CompositePropagator([previous, SessionBaggagePropagator(trust="all")]))
    try:
        after = answers(REQUESTS, trust)
    finally:
        set_global_textmap(previous)
    assert after == before
    assert server_sessions(spans) == server_before
    if trust == "all":
        assert [answer["session"] for answer in after] == [
            "from-baggage",
            "from-header",
            None,
            "plain",
        ]
    else:
        assert all(answer["session"] is None for answer in after)


def server_sessions(spans):
    return [s.attributes.get("session.id") for s in spans.all() if s.kind is SpanKind.SERVER]


# --- a real gRPC server in a process of its own ---------------------------------------------


def start_grpc_server(mode, receiver, trust=None):
    env = clean_env()
    env["OTEL_PROPAGATORS"] = "tracecontext,baggage,sessiontrace"
    if trust is not None:
        env["SESSIONTRACE_TRUST_BAGGAGE"] = trust
    process = subprocess.Popen(
        [sys.executable, str(GRPC_SERVER), mode, receiver.traces_endpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        _, errors = process.communicate(timeout=10)
        pytest.fail(f"the gRPC server did not start: {line!r} {errors}")
    return process, int(line.split()[1])


def stop_grpc_server(process):
    try:
        _, errors = process.communicate(input="", timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, errors = process.communicate()
    assert process.returncode == 0, errors
    return errors


@pytest.fixture
def grpc_client_instrumented():
    """OpenTelemetry's gRPC client instrumentation, on for one test."""
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient

    instrumentor = GrpcInstrumentorClient()
    instrumentor.instrument()
    try:
        yield
    finally:
        instrumentor.uninstrument()


def call_hello(port):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        hello = channel.unary_unary("/sessiontrace.test.Greeter/Hello")
        return json.loads(hello(b"", timeout=20))


@pytest.mark.parametrize("mode", ["sync", "aio"])
@pytest.mark.parametrize("trust", [None, "none"], ids=["default-trust", "trust-none"])
def test_a_grpc_server_continues_the_clients_session(
    spans, global_propagators, grpc_client_instrumented, mode, trust
):
    with OTLPHttpReceiver() as receiver:
        server, port = start_grpc_server(mode, receiver, trust)
        try:
            with using_attributes(session_id="g-1", user_id="u"):
                answer = call_hello(port)
            received = receiver.wait_for_spans(2)
        finally:
            errors = stop_grpc_server(server)
    (client_span,) = [s for s in spans.all() if s.kind is SpanKind.CLIENT]
    assert client_span.attributes["session.id"] == "g-1"
    trace_id = format(client_span.context.trace_id, "032x")
    by_name = {span.name: span for span in received}
    assert set(by_name) == {"/sessiontrace.test.Greeter/Hello", "handler work"}, received
    server_span, handler = by_name["/sessiontrace.test.Greeter/Hello"], by_name["handler work"]
    assert handler.parent_span_id == server_span.span_id
    for span in (server_span, handler):
        assert span.trace_id == trace_id  # the client's trace continues in both cases
    if trust is None:  # the default: trusted
        assert answer == {"session": "g-1", "user": "u"}
        for span in (server_span, handler):
            assert span.attributes["session.id"] == "g-1", span.name
            assert span.attributes["user.id"] == "u", span.name
    else:
        assert answer == {"session": None, "user": None}
        for span in (server_span, handler):
            assert "session.id" not in span.attributes, span.name
            assert "user.id" not in span.attributes, span.name
    assert "Traceback" not in errors, errors
