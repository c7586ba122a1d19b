"""OpenAI Agents runs: the run's group id is the session of every span the run makes.

The real openai-agents SDK (its chat-completions model) against the fake OpenAI server, which
also calls a tool; OpenInference's OpenAI instrumentation on, and each agents instrumentation
(OpenInference's, Traceloop's, or none). The SDK's own export to OpenAI is off: its trace
processors are emptied for the module (OpenInference's then replaces them with its own).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings

import agents
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    RunState,
    custom_span,
    function_tool,
    set_trace_processors,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from opentelemetry import context as otel_context

from helpers.agents_fake_openai import ToolCallingOpenAI
from helpers.fake_openai import REPLY
from helpers.openai_instrumentation import instrumented
from sessiontrace import current_session_id, using_session, using_user
from sessiontrace._validate import check_id
from sessiontrace.integrations import openai_agents

GROUP_WARNING = "group_id"


@pytest.fixture(scope="module")
def server():
    with ToolCallingOpenAI() as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    # One client for the module: making one loads the TLS settings, a tenth of a second each.
    return AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


@pytest.fixture(scope="module", autouse=True)
def _sdk_processors_off():
    # The SDK registers its exporter to api.openai.com on first use; keep it out of the tests
    # and put back what was registered before. The attribute is private: the SDK has no getter.
    multi = agents.tracing.get_trace_provider()._multi_processor
    before = list(multi._processors)
    set_trace_processors([])
    try:
        yield
    finally:
        set_trace_processors(before)


@pytest.fixture(scope="module", autouse=True)
def _instrumented():
    with instrumented("openinference"):
        openai_agents.instrument()
        try:
            yield
        finally:
            openai_agents.uninstrument()


@pytest.fixture(autouse=True)
def _context_as_it_was():
    token = otel_context.attach(otel_context.get_current())
    yield
    otel_context.detach(token)


def _openinference_agents():
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    return OpenAIAgentsInstrumentor()


def _traceloop_agents():
    with warnings.catch_warnings():
        # Its import declares a pydantic v1-style Config, which pydantic 2 warns about (and
        # its instrument() swallows the error the warning would raise here, tracing nothing).
        warnings.simplefilter("ignore", DeprecationWarning)
        from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor

        instrumentor = OpenAIAgentsInstrumentor()
        instrumentor.instrument()
    return instrumentor


@pytest.fixture
def oi_agents():
    instrumentor = _openinference_agents()
    instrumentor.instrument()
    try:
        yield "openinference"
    finally:
        instrumentor.uninstrument()


@pytest.fixture(params=["openinference", "traceloop", "none"])
def agents_instrumentation(request):
    if request.param == "openinference":
        instrumentor = _openinference_agents()
        instrumentor.instrument()
    elif request.param == "traceloop":
        instrumentor = _traceloop_agents()
    try:
        yield request.param
    finally:
        if request.param != "none":
            instrumentor.uninstrument()
        # Traceloop's uninstrument() leaves its trace processor registered.
        set_trace_processors([])


def run_sync(*args, **kwargs):
    # Runner.run_sync runs on the thread's default loop, leaves it open on purpose and shuts
    # its async generators down after each run (so a second run there warns that the HTTP
    # client's generator was scheduled after that): give each run a loop of its own.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return Runner.run_sync(*args, **kwargs)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def make_agent(client, tracer, *, tools=True, needs_approval=False):
    @function_tool(needs_approval=needs_approval)
    def weather(city: str) -> str:
        """The weather in a city."""
        with tracer.start_as_current_span("tool-body"):
            return f"sunny in {city}"

    model = OpenAIChatCompletionsModel(model="fake-mini", openai_client=client)
    return Agent(
        name="travel",
        instructions="Answer briefly.",
        tools=[weather] if tools else [],
        model=model,
    )


def scopes(found):
    return {span.instrumentation_scope.name for span in found}


def assert_all_stamped(found, session_id, instrumentation="openinference"):
    names = {span.name for span in found}
    assert "tool-body" in names, names  # the user's own span inside the tool
    assert "openinference.instrumentation.openai" in scopes(found)  # the OpenAI client's
    if instrumentation == "openinference":
        assert "openinference.instrumentation.openai_agents" in scopes(found)
        assert {"travel", "weather", "generation"} <= names, names
    elif instrumentation == "traceloop":
        assert {"Agent Workflow", "travel.agent", "weather.tool"} <= names, names
    for span in found:
        attributes = span.attributes
        assert attributes.get("session.id") == session_id, (span.name, dict(attributes))
        assert attributes.get("gen_ai.conversation.id") == session_id, span.name
        assert attributes.get("traceloop.association.properties.session_id") == session_id


async def test_group_id_is_every_spans_session(client, tracer, spans, agents_instrumentation):
    agent = make_agent(client, tracer)
    result = await Runner.run(agent, "Weather in Oslo?", run_config=RunConfig(group_id="conv-7"))
    assert result.final_output == REPLY
    assert current_session_id() is None
    assert_all_stamped(spans.all(), "conv-7", agents_instrumentation)


async def test_two_runs_of_a_group_are_one_session_of_two_traces(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    for question in ("Weather in Oslo?", "And tomorrow?"):
        await Runner.run(agent, question, run_config=RunConfig(group_id="conv-7"))
    found = spans.all()
    assert_all_stamped(found, "conv-7")
    assert len({span.context.trace_id for span in found}) == 2
    roots = [span for span in found if span.parent is None]
    assert len(roots) == 2, [span.name for span in roots]


async def test_concurrent_runs_keep_their_own_groups(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    groups = [f"conv-{n}" for n in range(4)]
    await asyncio.gather(
        *(Runner.run(agent, "Weather?", run_config=RunConfig(group_id=g)) for g in groups)
    )
    by_trace: dict[int, set[object]] = {}
    for span in spans.all():
        by_trace.setdefault(span.context.trace_id, set()).add(span.attributes.get("session.id"))
    # Each run is one trace (the tool's and the client's spans are its children).
    assert len(by_trace) == len(groups)
    assert sorted(session for found in by_trace.values() for session in found) == groups


async def test_a_session_in_force_wins(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    with using_session("outer"), using_user("ada"):
        await Runner.run(agent, "Weather?", run_config=RunConfig(group_id="conv-7"))
    assert_all_stamped(spans.all(), "outer")
    assert all(span.attributes.get("user.id") == "ada" for span in spans.all())


async def test_a_run_config_dict_names_the_group(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    await Runner.run(agent, "Weather?", run_config={"group_id": "conv-dict"})
    assert_all_stamped(spans.all(), "conv-dict")


def test_run_sync(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    result = run_sync(agent, "Weather?", run_config=RunConfig(group_id="conv-sync"))
    assert result.final_output == REPLY
    assert current_session_id() is None
    assert_all_stamped(spans.all(), "conv-sync")


async def test_run_streamed(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    result = Runner.run_streamed(agent, "Weather?", run_config=RunConfig(group_id="conv-s"))
    # run_streamed has returned: the run happens while the stream is consumed, here.
    assert current_session_id() is None
    assert spans.all() == []
    seen = []
    async for event in result.stream_events():
        seen.append(event.type)
        assert current_session_id() is None  # the consumer's own code is not in the session
    assert "raw_response_event" in seen
    assert result.final_output.strip() == REPLY
    assert_all_stamped(spans.all(), "conv-s")


async def test_trace_group_id_covers_the_trace_and_its_runs(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    with agents.trace("support chat", group_id="conv-t"):
        with custom_span("before the runs"):
            pass
        await Runner.run(agent, "Weather?")
        # The SDK groups a run in a trace by the trace's group, not its own config's.
        await Runner.run(agent, "And tomorrow?", run_config=RunConfig(group_id="ignored"))
        assert current_session_id() is None  # only the trace's spans, not the caller's code
        with tracer.start_as_current_span("caller's own"):
            pass
    found = spans.all()
    assert {"support chat", "before the runs"} <= {span.name for span in found}
    assert len({span.context.trace_id for span in found if span.name != "caller's own"}) == 1
    assert spans.attributes("caller's own").get("session.id") is None
    assert_all_stamped([span for span in found if span.name != "caller's own"], "conv-t")
    with tracer.start_as_current_span("after"):
        pass
    assert spans.attributes("after").get("session.id") is None


@pytest.mark.parametrize(
    "group_id",
    ["x" * 201, "conv\n7", "conv\x007", "conv\u202e7", "", "   "],
    ids=["too-long", "newline", "nul", "bidi", "empty", "blank"],
)
async def test_an_invalid_group_id_is_ignored_and_said_once(
    client, tracer, spans, oi_agents, caplog, group_id
):
    openai_agents._once.forget()
    agent = make_agent(client, tracer)
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        for _ in range(2):
            result = await Runner.run(agent, "Hi", run_config=RunConfig(group_id=group_id))
            assert result.final_output == REPLY
    found = spans.all()
    assert "tool-body" in {span.name for span in found}
    for span in found:
        assert "session.id" not in span.attributes, span.name
        assert "gen_ai.conversation.id" not in span.attributes, span.name
    warned = [r for r in caplog.records if GROUP_WARNING in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert "using_session()" in warned[0].getMessage()  # it names the fix


async def test_a_non_str_group_id_is_ignored(client, tracer, spans, oi_agents, caplog):
    openai_agents._once.forget()
    agent = make_agent(client, tracer, tools=False)
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        await Runner.run(agent, "Hi", run_config={"group_id": 7})
    assert all("session.id" not in span.attributes for span in spans.all())
    assert any("must be a str" in r.getMessage() for r in caplog.records)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(group_id=st.one_of(st.text(max_size=260), st.integers(), st.binary(max_size=8)))
def test_any_group_id_is_a_session_exactly_when_valid(client, tracer, spans, oi_agents, group_id):
    spans.clear()
    try:
        expected = check_id(group_id, "group_id")
    except (TypeError, ValueError):
        expected = None
    agent = make_agent(client, tracer, tools=False)
    result = run_sync(agent, "Hi", run_config={"group_id": group_id})
    assert result.final_output == REPLY
    found = spans.all()
    assert found
    for span in found:
        assert span.attributes.get("session.id") == expected, span.name


async def test_a_resumed_run_keeps_its_group(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer, needs_approval=True)
    first = await Runner.run(agent, "Weather?", run_config=RunConfig(group_id="conv-r"))
    assert first.interruptions  # the tool waits for approval
    saved = first.to_state().to_json()
    spans.clear()
    state = await RunState.from_json(agent, saved)
    for interruption in state.get_interruptions():
        state.approve(interruption)
    resumed = await Runner.run(agent, state)  # no run_config: the group is the state's
    assert resumed.final_output == REPLY
    found = spans.all()
    # OpenInference's processor follows only traces it saw start, so a reattached trace has
    # no agent spans of its; the tool's and the OpenAI client's carry the session.
    assert {"tool-body", "ChatCompletion"} <= {span.name for span in found}
    assert all(span.attributes.get("session.id") == "conv-r" for span in found)


async def test_uninstrument_stops_it(client, tracer, spans, oi_agents):
    agent = make_agent(client, tracer)
    openai_agents.instrument()  # a second call changes nothing
    assert not isinstance(
        agents.run.AgentRunner.__dict__["run"].__wrapped__,
        type(agents.run.AgentRunner.__dict__["run"]),
    )
    openai_agents.uninstrument()
    try:
        assert not openai_agents.is_instrumented()
        assert not hasattr(agents.run.AgentRunner.__dict__["run"], "__wrapped__")
        await Runner.run(agent, "Weather?", run_config=RunConfig(group_id="conv-7"))
        found = spans.all()
        assert "tool-body" in {span.name for span in found}
        assert all("session.id" not in span.attributes for span in found)
    finally:
        openai_agents.instrument()
    spans.clear()
    await Runner.run(agent, "Weather?", run_config=RunConfig(group_id="conv-7"))
    assert_all_stamped(spans.all(), "conv-7")


def test_instrument_names_the_package_when_agents_is_missing(monkeypatch):
    openai_agents.uninstrument()
    try:
        monkeypatch.setitem(sys.modules, "agents.run", None)
        with pytest.raises(ImportError, match="pip install openai-agents"):
            openai_agents.instrument()
        assert not openai_agents.is_instrumented()
    finally:
        monkeypatch.undo()
        openai_agents.instrument()
