"""MCP: a session started in an MCP client goes on in the MCP server, with the real ``mcp`` SDK.

The server is a program of its own (tests/helpers/mcp_server.py) started over stdio by the
client, or serving streamable HTTP with uvicorn on 127.0.0.1; it exports its spans over OTLP to
a receiver this test runs. Every span the server makes for the client's requests (the SDK's
server spans, the tool's, resource's and prompt's own) carries the client's session, user and
trace, with and without openinference-instrumentation-mcp on both sides. Hostile ``_meta``
values go over the wire from a raw client to a server in a thread, and never break a request.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, ClientSession, StdioServerParameters
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import get_global_textmap, set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from helpers import mcp_server
from helpers.mcp_raw import RawSession
from helpers.otlp_receiver import OTLPHttpReceiver, ReceivedSpan
from helpers.programs import clean_env
from sessiontrace import SessionBaggagePropagator, using_attributes, using_session
from sessiontrace._validate import check_id
from sessiontrace.integrations import _inbound
from sessiontrace.integrations import mcp as mcp_sessions

SERVER = Path(mcp_server.__file__)
tracer = trace.get_tracer("tests.mcp")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
# The spans the server makes for one turn (call_tool also lists the tools, for their schemas).
TURN_SPANS = {
    "tools/call whoami",
    "tool: whoami",
    "tool: inner step",
    "resources/read",
    "resource: today",
    "prompts/get greet",
    "prompt: greet",
}


@pytest.fixture(autouse=True)
def _forget_logged_reasons() -> None:
    _inbound._once.forget()
    mcp_sessions._once.forget()


@pytest.fixture(autouse=True)
def _default_propagators() -> Iterator[None]:
    """OpenTelemetry's default propagators, whatever an earlier test's configure() installed
    (it adds SessionBaggagePropagator globally, and the MCP SDK injects with the globals)."""
    before = get_global_textmap()
    set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    try:
        yield
    finally:
        set_global_textmap(before)


@pytest.fixture
def instrumented() -> Iterator[None]:
    mcp_sessions.instrument()
    try:
        yield
    finally:
        mcp_sessions.uninstrument()


@contextmanager
def openinference_client() -> Iterator[None]:
    from openinference.instrumentation.mcp import MCPInstrumentor

    instrumentor = MCPInstrumentor()
    instrumentor.instrument()
    try:
        yield
    finally:
        instrumentor.uninstrument()


# --- a client and a server in two processes --------------------------------------------------


@asynccontextmanager
async def http_server(traces_url: str, *flags: str) -> Any:
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "http", traces_url, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdout is not None
    line = await anyio.to_thread.run_sync(process.stdout.readline)
    try:
        assert line.startswith("PORT "), (line, process.stderr and process.stderr.read())
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp"
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def session_turn(transport: str, traces_url: str, *flags: str) -> tuple[dict, str]:
    """One turn of a client in a session: a tool, a resource and a prompt, on ``transport``.

    The session and the client's span are in force before the client connects, so every
    request it sends (the handshake included) is the turn's. Returns the tool's answer and the
    client's trace id. ``flags`` go to the server program.
    """
    with using_attributes(session_id="s-1", user_id="ada"):
        with tracer.start_as_current_span("client turn") as span:
            async with connected(transport, traces_url, flags) as client:
                reply = await client.call_tool("whoami", {"note": "hi"})
                await client.read_resource("note://today")
                await client.get_prompt("greet", {"name": "ada"})
    return json.loads(reply.content[0].text), format(span.get_span_context().trace_id, "032x")


@asynccontextmanager
async def connected(transport: str, traces_url: str, flags: tuple[str, ...]) -> Any:
    """A client of a new server process. With openinference, the client is built from the
    transport functions openinference-instrumentation-mcp wraps (``mcp.Client`` holds
    references of its own to them, so its requests would not go through the wrappers)."""
    import mcp.client.stdio
    import mcp.client.streamable_http

    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable, args=[str(SERVER), "stdio", traces_url, *flags], env=clean_env()
        )
        if "openinference" not in flags:
            async with Client(params) as client:
                yield client
            return
        async with mcp.client.stdio.stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session
        return
    async with http_server(traces_url, *flags) as url:
        if "openinference" not in flags:
            async with Client(url) as client:
                yield client
            return
        async with mcp.client.streamable_http.streamable_http_client(url) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                yield session


def server_spans(receiver: OTLPHttpReceiver) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = receiver.spans()
        if {span.name for span in spans} >= TURN_SPANS:
            return spans
        time.sleep(0.05)
    pytest.fail(f"the server's spans did not arrive: {sorted(s.name for s in receiver.spans())}")


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("openinference", [False, True], ids=["sdk", "openinference"])
def test_the_server_process_serves_the_clients_session(instrumented, transport, openinference):
    client_side = openinference_client() if openinference else nullcontext()
    with OTLPHttpReceiver() as receiver, client_side:
        flags = ("openinference",) if openinference else ()
        answer, trace_id = anyio.run(session_turn, transport, receiver.traces_endpoint, *flags)
        spans = server_spans(receiver)
    assert (answer["session"], answer["user"]) == ("s-1", "ada")
    # Once each, however many injected (the SDK, openinference, sessiontrace).
    assert answer["meta"]["baggage"] == "session.id=s-1,user.id=ada"
    assert answer["meta"]["traceparent"].split("-")[1] == trace_id
    assert {span.resource_attributes["service.name"] for span in spans} == {"mcp-server"}
    for span in spans:  # every one: the handshake and tools/list the client sent too
        assert span.attributes.get("session.id") == "s-1", span.name
        assert span.attributes.get("user.id") == "ada", span.name
        assert span.trace_id == trace_id, span.name


def test_without_sessiontrace_the_server_has_no_session():
    """The control: the SDK (its OpenTelemetry middleware) carries the trace, not the session."""
    with OTLPHttpReceiver() as receiver:
        answer, _ = anyio.run(session_turn, "stdio", receiver.traces_endpoint, "plain")
    assert answer["session"] is None
    assert "baggage" not in answer["meta"]


# --- in one process: what goes into _meta ----------------------------------------------------


async def call_in_process(meta: dict | None = None, mode: str = "legacy") -> dict:
    async with Client(mcp_server.build(), mode=mode) as client:
        reply = await client.call_tool("whoami", {}, meta=meta)
    return json.loads(reply.content[0].text)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_session_in_force_reaches_an_in_process_server(instrumented, spans, mode):
    with using_attributes(session_id="s-1", user_id="ada"):
        answer = anyio.run(call_in_process, None, mode)
    assert answer["meta"]["baggage"] == "session.id=s-1,user.id=ada"
    assert answer["session"] == "s-1"
    assert spans.attributes("tool: whoami")["session.id"] == "s-1"


def test_with_configures_global_propagator_the_session_goes_once(instrumented):
    # configure() adds SessionBaggagePropagator to the global propagators, which the MCP SDK
    # injects _meta with itself: the baggage still names the session and user once.
    set_global_textmap(CompositePropagator([get_global_textmap(), SessionBaggagePropagator()]))
    with using_attributes(session_id="s-1", user_id="ada"):
        answer = anyio.run(call_in_process)
    assert answer["meta"]["baggage"] == "session.id=s-1,user.id=ada"
    assert answer["session"] == "s-1"


def test_keys_the_caller_set_are_kept(instrumented):
    meta = {"baggage": "tenant=acme", "com.example/request": "r-7"}
    with using_attributes(session_id="s-1", user_id="ada"):
        answer = anyio.run(call_in_process, meta)
    assert answer["meta"]["com.example/request"] == "r-7"
    assert answer["meta"]["baggage"] == "tenant=acme,session.id=s-1,user.id=ada"
    assert answer["session"] == "s-1"


def test_a_session_the_caller_put_in_baggage_wins(instrumented):
    with using_session("s-1"):
        answer = anyio.run(call_in_process, {"baggage": "session.id=theirs"})
    assert answer["meta"]["baggage"] == "session.id=theirs"
    assert answer["session"] == "theirs"


def test_baggage_already_in_the_context_does_not_push_the_session_out(instrumented):
    """The SDK injects the context's baggage over ``_meta``: it must hold the session too."""
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with using_session("s-1"):
            answer = anyio.run(call_in_process)
    finally:
        otel_context.detach(token)
    assert answer["meta"]["baggage"] == "tenant=acme,session.id=s-1"
    assert answer["session"] == "s-1"


@pytest.mark.parametrize(
    ("theirs", "sent"),
    [
        ("tenant=acme", "tier=gold,tenant=acme,session.id=s-1"),
        ("session.id=theirs", "tier=gold,session.id=theirs"),
    ],
)
def test_the_callers_baggage_and_the_contexts_are_both_sent(instrumented, theirs, sent):
    token = otel_context.attach(baggage.set_baggage("tier", "gold"))
    try:
        with using_session("s-1"):
            answer = anyio.run(call_in_process, {"baggage": theirs})
    finally:
        otel_context.detach(token)
    assert answer["meta"]["baggage"] == sent


def test_uninstrument_leaves_no_sessiontrace_meta():
    mcp_sessions.instrument()
    mcp_sessions.instrument()  # twice: wrapped once
    from mcp.server.runner import ServerRunner
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

    assert JSONRPCDispatcher.send_raw_request.__wrapped__.__name__ == "send_raw_request"
    mcp_sessions.uninstrument()
    assert not mcp_sessions.is_instrumented()
    assert not hasattr(JSONRPCDispatcher.send_raw_request, "__wrapped__")
    assert not hasattr(ServerRunner._compose_server_middleware, "__wrapped__")
    with using_attributes(session_id="s-1", user_id="ada"):
        answer = anyio.run(call_in_process)
    # (In one process the server's task inherits the client's context, session included.)
    assert "baggage" not in answer["meta"]


def test_bad_trust_raises_at_the_call():
    with pytest.raises(ValueError, match="trust must be 'all', 'none' or a function"):
        mcp_sessions.instrument(trust="some")
    assert not mcp_sessions.is_instrumented()


def test_the_module_imports_without_mcp():
    program = (
        "import sys; sys.modules['mcp'] = None\n"
        "from sessiontrace.integrations import mcp\n"
        "try:\n    mcp.instrument()\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert result.stdout.strip() == "sessiontrace.integrations.mcp needs mcp: pip install mcp"


def test_traceloops_mcp_instrumentation_does_not_run_on_mcp_2():
    """opentelemetry-instrumentation-mcp 0.62.4 wraps names mcp 2 no longer has, so its
    instrument() raises (docs/integrations.md says so); sessiontrace's _meta still goes out."""
    program = """
import anyio, json, sys
sys.path.insert(0, sys.argv[1])
from opentelemetry.instrumentation.mcp import McpInstrumentor
try:
    McpInstrumentor().instrument()
except Exception as error:
    print("FAILED", type(error).__name__)
import mcp_server
from mcp import Client
import sessiontrace
from sessiontrace.integrations import mcp as mcp_sessions
mcp_sessions.instrument()
async def main():
    with sessiontrace.using_session("s-1"):
        async with Client(mcp_server.build(), mode="legacy") as client:
            reply = await client.call_tool("whoami", {})
    print("BAGGAGE", json.loads(reply.content[0].text)["meta"].get("baggage"))
anyio.run(main)
"""
    result = subprocess.run(
        [sys.executable, "-c", program, str(SERVER.parent)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "FAILED PathResolutionError" in result.stdout
    assert "BAGGAGE session.id=s-1" in result.stdout


# --- hostile _meta from a raw client ---------------------------------------------------------


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with mcp_server.in_thread() as url:
        yield url


@pytest.fixture
def raw(mcp_url) -> Iterator[RawSession]:
    with RawSession(mcp_url) as session:
        yield session


def answer_of(reply: dict) -> dict:
    assert "result" in reply, reply
    assert not reply["result"].get("isError"), reply
    return json.loads(reply["result"]["content"][0]["text"])


def test_a_raw_clients_session_and_trace_are_taken(instrumented, raw, spans):
    meta = {"baggage": "session.id=s-raw,user.id=u%20raw;p=1", "traceparent": TRACEPARENT}
    answer = answer_of(raw.call_tool("whoami", meta=meta))
    assert (answer["session"], answer["user"]) == ("s-raw", "u raw")
    tool = spans.named("tool: whoami")
    assert tool.attributes["session.id"] == "s-raw"
    assert format(tool.context.trace_id, "032x") == TRACE_ID
    assert spans.attributes("tools/call whoami")["user.id"] == "u raw"  # the SDK's own span


# name: (_meta, whether sessiontrace has something to say about it)
def test_the_clients_trace_is_the_parent_without_the_sdks_middleware(instrumented, spans):
    """The SDK's OpenTelemetryMiddleware parents its span on ``_meta``; without it, we do."""
    with mcp_server.in_thread(sdk_spans=False) as url, RawSession(url) as raw:
        meta = {"baggage": "session.id=s-raw", "traceparent": TRACEPARENT}
        answer = answer_of(raw.call_tool("whoami", meta=meta))
    assert answer["session"] == "s-raw"
    tool = spans.named("tool: whoami")
    assert format(tool.context.trace_id, "032x") == TRACE_ID
    assert format(tool.parent.span_id, "016x") == TRACEPARENT.split("-")[2]
    assert "tools/call whoami" not in {span.name for span in spans.all()}


HOSTILE: dict[str, tuple[dict, bool]] = {
    "baggage not a string": ({"baggage": 5}, True),
    "baggage a list": ({"baggage": ["session.id=s-1"]}, True),
    "baggage an object": ({"baggage": {"session.id": "s-1"}}, True),
    "baggage nested lists": ({"baggage": [[[[[[[[[[["x"]]]]]]]]]]]}, True),
    "baggage huge": ({"baggage": "session.id=" + "x" * 100_000}, True),
    "baggage control character": ({"baggage": "session.id=a\u0000b"}, True),
    "baggage newline": ({"baggage": "session.id=a\r\nX-Evil: 1"}, True),
    "baggage not ascii": ({"baggage": "session.id=caf\u00e9"}, True),
    "baggage broken escape": ({"baggage": "session.id=%ZZ"}, True),
    "baggage escape not utf-8": ({"baggage": "session.id=%FF"}, True),
    "baggage conflicting": ({"baggage": "session.id=a,session.id=b"}, True),
    "baggage empty id": ({"baggage": "session.id="}, True),
    "baggage id too long": ({"baggage": "session.id=" + "x" * 5000}, True),
    "baggage without our keys": ({"baggage": ",,;;==\u2603"}, False),
    "baggage null": ({"baggage": None}, False),
    "traceparent a number": ({"traceparent": 7}, True),
    "traceparent garbage": ({"traceparent": "garbage"}, True),
    "traceparent huge": ({"traceparent": "00-" + "f" * 100_000}, True),
    "traceparent zero": ({"traceparent": f"00-{'0' * 32}-{'0' * 16}-01"}, True),
    "tracestate an object": ({"traceparent": TRACEPARENT, "tracestate": {"a": 1}}, True),
    "tracestate huge": ({"traceparent": TRACEPARENT, "tracestate": "a=" + "b" * 100_000}, True),
}


@pytest.mark.parametrize(("meta", "said"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_meta_never_breaks_the_request(instrumented, raw, spans, caplog, meta, said):
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        first = answer_of(raw.call_tool("whoami", meta=meta))
        second = answer_of(raw.call_tool("whoami", meta=meta))
    assert first["session"] is None and second["session"] is None
    for span in spans.all():
        assert "session.id" not in (span.attributes or {}), span.name
    ignored = [r.getMessage() for r in caplog.records if r.name == "sessiontrace"]
    assert len(ignored) == (1 if said else 0), ignored  # once for both requests
    assert all("ignoring" in message for message in ignored), ignored
    if said and "baggage" in meta and isinstance(meta["baggage"], str):
        assert "the _meta baggage" in ignored[0], ignored  # where the bad value was


def test_the_sdk_alone_fails_a_request_whose_baggage_is_not_a_string(raw):
    """Why sessiontrace takes such values out of ``ctx.meta`` (mcp 2.3.0's middleware raises)."""
    reply = raw.call_tool("whoami", meta={"baggage": 5})
    assert "has no attribute 'encode'" in reply["error"]["message"]


@pytest.mark.parametrize("meta", [["baggage"], "session.id=s-1", 3])
def test_a_meta_that_is_not_an_object_is_ignored_once(instrumented, raw, caplog, meta):
    """The SDK refuses such a request itself (invalid params); it answers the same with us."""
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        replies = [raw.call_tool("whoami", meta=meta) for _ in range(2)]
    mcp_sessions.uninstrument()
    plain = raw.call_tool("whoami", meta=meta)
    assert [reply.get("error") for reply in replies] == [plain.get("error")] * 2
    ignored = [r for r in caplog.records if "ignoring an MCP request's _meta" in r.getMessage()]
    assert len(ignored) == 1, [r.getMessage() for r in caplog.records]


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_BAGGAGE = st.lists(
    st.tuples(st.sampled_from(["session.id", "user.id", "other", ""]), _TEXT), max_size=4
).map(lambda pairs: ",".join(f"{key}={value}" for key, value in pairs))
_META = st.dictionaries(
    st.sampled_from(["baggage", "traceparent", "tracestate", "progressToken", "x"]),
    _JSON | _BAGGAGE,
    max_size=4,
)


# One session (the fixtures') for every example: nothing of an example outlives its request.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(meta=_META)
def test_any_meta_is_answered(instrumented, raw, meta):
    reply = raw.call_tool("whoami", meta=meta)
    if "error" in reply:  # the SDK's own refusal (a progressToken that is not one)
        assert reply["error"]["code"] == -32602, reply
        return
    answer = answer_of(reply)
    for key in ("session", "user"):
        if answer[key] is not None:
            check_id(answer[key], key)


def test_trust_none_takes_nothing(raw, spans):
    mcp_sessions.instrument(trust="none")
    try:
        meta = {"baggage": "session.id=s-raw", "traceparent": TRACEPARENT}
        answer = answer_of(raw.call_tool("whoami", meta=meta))
    finally:
        mcp_sessions.uninstrument()
    assert answer["session"] is None
    assert "session.id" not in spans.attributes("tool: whoami")


def test_a_trust_function_gets_the_meta(raw):
    seen: list[Any] = []

    def ours(meta: dict) -> bool:
        seen.append(meta)
        return meta.get("com.example/signed") == "yes"

    mcp_sessions.instrument(trust=ours)
    mcp_sessions.instrument()  # a call without trust keeps the policy (configure() makes one)
    try:
        trusted = answer_of(
            raw.call_tool("whoami", meta={"baggage": "session.id=a", "com.example/signed": "yes"})
        )
        stranger = answer_of(raw.call_tool("whoami", meta={"baggage": "session.id=b"}))
    finally:
        mcp_sessions.uninstrument()
    assert (trusted["session"], stranger["session"]) == ("a", None)
    assert seen[-1] == {"baggage": "session.id=b"}


def test_a_raising_trust_function_is_logged_once(raw, caplog):
    def broken(meta: dict) -> bool:
        raise RuntimeError("no")

    mcp_sessions.instrument(trust=broken)
    try:
        with caplog.at_level(logging.WARNING, logger="sessiontrace"):
            answers = [
                answer_of(raw.call_tool("whoami", meta={"baggage": "session.id=a"}))
                for _ in range(3)
            ]
    finally:
        mcp_sessions.uninstrument()
    assert [answer["session"] for answer in answers] == [None] * 3
    raised = [r for r in caplog.records if "trust check raised" in r.getMessage()]
    assert len(raised) == 1
