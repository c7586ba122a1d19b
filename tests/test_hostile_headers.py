"""Hostile request headers never fail a request, under a real uvicorn and real WSGI servers.

Each case goes over a socket as raw bytes (what httpx and requests refuse to send) to an app
behind the sessiontrace middleware, served by uvicorn, ``wsgiref`` and werkzeug in this
process: the answer is a 200 with the whole body, the session is stamped where the value was
valid (and only then), the echoed ``X-Session-Id`` is one any server can send, and an ignored
value is logged with its fix. The reading function itself is fuzzed with arbitrary bytes.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context

from helpers.servers import asgi_server, send, wsgi_server
from sessiontrace import SessionTracker, current
from sessiontrace._validate import check_id
from sessiontrace.integrations import _inbound, asgi, wsgi
from sessiontrace.integrations._inbound import encode_id, read_ids
from sessiontrace.testing import strict_errors

SERVERS = ("uvicorn", "wsgiref", "werkzeug")
tracer = trace.get_tracer("tests.hostile")


@pytest.fixture(autouse=True)
def _forget_logged_reasons():
    _inbound._once.forget()


def _answer(span_name: str) -> bytes:
    with tracer.start_as_current_span(span_name):
        now = current()
    return json.dumps({"session": now.session_id, "user": now.user_id}).encode()


async def asgi_app(scope, receive, send_):
    body = _answer("handler")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send_({"type": "http.response.start", "status": 200, "headers": headers})
    await send_({"type": "http.response.body", "body": body})


def wsgi_app(environ, start_response):
    body = _answer("handler")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


@pytest.fixture(scope="module")
def servers():
    """One of each server, each with the middleware around the app, for the whole module."""
    with (
        asgi_server(asgi.SessionMiddleware(asgi_app)) as uvicorn_url,
        wsgi_server(wsgi.SessionMiddleware(wsgi_app), "wsgiref") as wsgiref_url,
        wsgi_server(wsgi.SessionMiddleware(wsgi_app), "werkzeug") as werkzeug_url,
    ):
        yield {"uvicorn": uvicorn_url, "wsgiref": wsgiref_url, "werkzeug": werkzeug_url}


SNOWMAN = "\N{SNOWMAN}"

# (case id, header lines as sent, session stamped or None, user stamped or None, log fragment)
CASES = [
    ("baggage-snowman", [("baggage", "session.id=%E2%98%83")], SNOWMAN, None, None),
    ("baggage-ff", [("baggage", "session.id=%FF")], None, None, "not UTF-8"),
    ("baggage-zz", [("baggage", "session.id=%ZZ")], None, None, "write % as %25"),
    ("baggage-lone-percent", [("baggage", "session.id=%")], None, None, "write % as %25"),
    ("baggage-properties", [("baggage", "session.id=abc;prop=1")], "abc", None, None),
    (
        "baggage-properties-and-spaces",
        [("baggage", "vendor=1 , session.id = abc ; p ; q=2,user.id=ada;x")],
        "abc",
        "ada",
        None,
    ),
    ("baggage-plus-is-space", [("baggage", "session.id=my+chat")], "my chat", None, None),
    ("baggage-raw-utf8", [("baggage", "session.id=café".encode())], None, None, "W3C baggage"),
    ("baggage-control", [("baggage", "session.id=a%0Ab")], None, None, "non-printable"),
    ("baggage-10kb", [("baggage", "session.id=" + "y" * 10240)], None, None, "W3C baggage stops"),
    (
        "baggage-10kb-in-lines",
        [("baggage", "session.id=" + "s" * 100)] * 90,  # servers take at most 100 lines
        None,
        None,
        "over the 8192",
    ),
    ("header-raw-utf8", [("X-Session-Id", "café".encode())], "café", None, None),
    ("header-percent-encoded", [("X-Session-Id", "caf%C3%A9")], "café", None, None),
    ("header-raw-invalid", [("X-Session-Id", b"\xff\xfe")], None, None, "not valid UTF-8"),
    ("header-overlong-utf8", [("X-Session-Id", b"\xc0\xaf")], None, None, "not valid UTF-8"),
    ("header-bad-escape", [("X-Session-Id", "100%")], None, None, "write % as %25"),
    ("header-control-raw", [("X-Session-Id", b"a\x01b")], None, None, "non-printable"),
    ("header-delete-raw", [("X-Session-Id", b"a\x7fb")], None, None, "non-printable"),
    ("header-tab-raw", [("X-Session-Id", b"a\tb")], None, None, "non-printable"),
    ("header-nul-escaped", [("X-Session-Id", "a%00b")], None, None, "non-printable"),
    ("header-10kb", [("X-Session-Id", "x" * 10240)], None, None, "over the 8192"),
    ("header-201-chars", [("X-Session-Id", "x" * 201)], None, None, "the limit is 200"),
    ("header-10kb-in-lines", [("X-Session-Id", "s" * 100)] * 90, None, None, "over the 8192"),
    ("user-raw-invalid", [("X-User-Id", b"\xff"), ("X-Session-Id", "s-0")], "s-0", None, "UTF-8"),
    (
        "duplicate-same",
        [("X-Session-Id", "s-1"), ("X-Session-Id", "s-1")],
        "s-1",
        None,
        None,
    ),
    (
        "duplicate-conflict",
        [("X-Session-Id", "s-1"), ("X-Session-Id", "s-2")],
        None,
        None,
        "conflicting values",
    ),
    (
        "baggage-duplicate-key-conflict",
        [("baggage", "session.id=s-1,session.id=s-2")],
        None,
        None,
        "conflicting values",
    ),
    (
        "multiple-baggage-headers",
        [("baggage", "user.id=ada"), ("baggage", "other=x, session.id=s-3")],
        "s-3",
        "ada",
        None,
    ),
    (
        "invalid-header-then-baggage",
        [("X-Session-Id", b"\xff"), ("baggage", "session.id=s-4")],
        "s-4",
        None,
        "not valid UTF-8",
    ),
    (
        "header-wins-over-baggage",
        [("baggage", "session.id=from-baggage"), ("X-Session-Id", "from-header")],
        "from-header",
        None,
        None,
    ),
]


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize(
    ("headers", "session", "user", "logged"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_hostile_header_gets_a_200_and_the_session_only_when_valid(
    servers, spans, caplog, kind, headers, session, user, logged
):
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    reply = send(servers[kind], headers)
    assert reply.status == 200
    assert json.loads(reply.body) == {"session": session, "user": user}
    attributes = spans.attributes("handler")
    assert attributes.get("session.id") == session
    assert attributes.get("user.id") == user
    if session is None:
        assert reply.header("x-session-id") == []
    else:
        (echoed,) = reply.header("x-session-id")
        assert echoed == encode_id(session) and unquote(echoed) == session
    if logged is None:
        assert "ignoring a request's" not in caplog.text
    else:
        assert "ignoring a request's" in caplog.text
        assert logged in caplog.text


def test_an_ignored_value_is_logged_once_per_reason(servers, spans, caplog):
    caplog.set_level(logging.WARNING, logger="sessiontrace")
    for _ in range(3):
        assert send(servers["uvicorn"], [("X-Session-Id", b"\xff")]).status == 200
    assert caplog.text.count("ignoring a request's session_id") == 1


@pytest.mark.parametrize("kind", ["wsgiref", "werkzeug"])
def test_a_tracker_s_headers_round_trip_through_asgi_and_wsgi_services(servers, spans, kind):
    tracker = SessionTracker(session_id=f"café-{SNOWMAN}", user_id="åsa")
    outgoing = tracker.headers()
    assert all(value.isascii() and value.isprintable() for value in outgoing.values())

    # Client -> service A (uvicorn): the id arrives unchanged and is echoed encodable.
    first = send(servers["uvicorn"], list(outgoing.items()))
    assert first.status == 200
    assert json.loads(first.body) == {"session": f"café-{SNOWMAN}", "user": "åsa"}
    (echoed,) = first.header("x-session-id")
    assert echoed == outgoing["X-Session-Id"]

    # Service A passes the echoed id on to service B (WSGI), which echoes it on again.
    second = send(servers[kind], [("X-Session-Id", echoed)])
    assert second.status == 200
    assert json.loads(second.body)["session"] == f"café-{SNOWMAN}"
    assert second.header("x-session-id") == [echoed]

    # The tracker's headers sent straight to B, and baggage alone (what an instrumented HTTP
    # client sends), read the same.
    for headers in (list(outgoing.items()), [("baggage", outgoing["baggage"])]):
        reply = send(servers[kind], headers)
        assert reply.status == 200
        assert json.loads(reply.body) == {"session": f"café-{SNOWMAN}", "user": "åsa"}
        assert reply.header("x-session-id") == [echoed]
    stamped = [span.attributes["session.id"] for span in spans.all() if span.name == "handler"]
    assert stamped == [f"café-{SNOWMAN}"] * 4


def test_a_bug_in_the_reading_is_reported_and_the_request_goes_on(caplog):
    async def broken_outer(scope, receive, send_):
        # A buggy outer middleware hands on a scope whose headers are not a list of pairs.
        await inner({**scope, "headers": 42}, receive, send_)

    inner = asgi.SessionMiddleware(asgi_app)
    with strict_errors(False), asgi_server(broken_outer) as url:
        reply = send(url, [("X-Session-Id", "s-5")])
    assert reply.status == 200
    assert json.loads(reply.body) == {"session": None, "user": None}
    assert "internal error in reading the request's session" in caplog.text


def test_in_strict_mode_the_same_bug_surfaces(caplog):
    async def broken_outer(scope, receive, send_):
        await inner({**scope, "headers": 42}, receive, send_)

    inner = asgi.SessionMiddleware(asgi_app)
    with asgi_server(broken_outer) as url:
        reply = send(url, [("X-Session-Id", "s-5")])
    assert reply.status == 500  # the guard re-raises in tests, so our bugs fail loudly


def test_a_wsgi_environ_value_that_is_not_text_is_ignored(caplog):
    def outer(environ, start_response):
        environ["HTTP_X_SESSION_ID"] = 42  # a buggy outer middleware
        return inner(environ, start_response)

    inner = wsgi.SessionMiddleware(wsgi_app)
    with wsgi_server(outer) as url:
        reply = send(url, [("X-Session-Id", "s-6")])
    assert reply.status == 200
    assert json.loads(reply.body)["session"] is None
    assert "not bytes or str" in caplog.text


# --- the reading function, fuzzed -------------------------------------------------------------

NAMES = st.sampled_from([b"x-session-id", b"X-Session-Id", b"x-user-id", b"baggage", b"other"])
ESCAPES = st.lists(
    st.one_of(
        st.sampled_from(["%", "%Z", "%E2%98", "%FF", "+", ";", ",", "=", " ", "\t", "session.id="]),
        st.binary(max_size=3).map(lambda raw: "".join(f"%{byte:02X}" for byte in raw)),
        st.text(max_size=5),
    ),
    max_size=8,
).map("".join)
VALUES = st.one_of(
    st.binary(max_size=300),
    ESCAPES.map(lambda text: text.encode("utf-8", "surrogatepass")),
    ESCAPES.map(lambda text: b"session.id=" + text.encode("utf-8", "surrogatepass")),
    st.text(max_size=50),  # WSGI strings, Latin-1 or not
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=6))
def test_any_header_bytes_never_raise_and_give_only_valid_ids(pairs):
    found = read_ids(pairs, "x-session-id", "x-user-id", read_baggage=True)
    assert set(found) <= {"session_id", "user_id"}
    for argument, value in found.items():
        assert check_id(value, argument) == value


VALID_IDS = st.text(min_size=1, max_size=200).filter(
    lambda text: text.isprintable() and not text.isspace()
)


@settings(max_examples=200, deadline=None)
@given(VALID_IDS)
def test_every_valid_id_round_trips_through_the_header_and_through_baggage(value):
    header = encode_id(value).encode("ascii")
    assert read_ids([(b"x-session-id", header)], "x-session-id", "u", False) == {
        "session_id": value
    }
    carrier: dict[str, str] = {}
    W3CBaggagePropagator().inject(carrier, baggage.set_baggage("session.id", value, Context()))
    sent = carrier["baggage"].encode("ascii")
    assert read_ids([(b"baggage", sent)], "x", "u", True) == {"session_id": value}
