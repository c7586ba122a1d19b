"""GenAI agent keys on sessiontrace's own spans: runs, steps and observe() tools and agents.

Real SDK spans (conftest's provider, every dialect on). Every value is compared with
opentelemetry-semantic-conventions' own names: its attribute constants and the members of
``GenAiOperationNameValues``, iterated (calling the enum, e.g. ``GenAiOperationNameValues(x)``,
emits the package's DeprecationWarning for the whole gen_ai namespace, which moved to the GenAI
conventions repository with the same names).
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as semconv
from opentelemetry.trace import SpanKind

from sessiontrace import SessionTracker, observe
from sessiontrace import _genai_agent as genai
from sessiontrace._tracker_checks import MAX_DESCRIPTION_LENGTH
from sessiontrace._validate import MAX_ID_LENGTH
from tests.helpers.programs import run_program

OPERATIONS = {member.value for member in semconv.GenAiOperationNameValues}
OPERATION = semconv.GEN_AI_OPERATION_NAME
AGENT_NAME = semconv.GEN_AI_AGENT_NAME
AGENT_ID = semconv.GEN_AI_AGENT_ID
AGENT_DESCRIPTION = semconv.GEN_AI_AGENT_DESCRIPTION
TOOL_NAME = semconv.GEN_AI_TOOL_NAME
AGENT_KEYS = (OPERATION, AGENT_NAME, AGENT_ID, AGENT_DESCRIPTION, TOOL_NAME)


def genai_keys(span) -> dict[str, object]:
    return {k: v for k, v in (span.attributes or {}).items() if k in AGENT_KEYS}


def test_the_keys_and_values_are_the_conventions_own():
    assert (genai.OPERATION, genai.AGENT_NAME, genai.AGENT_ID) == (OPERATION, AGENT_NAME, AGENT_ID)
    assert (genai.AGENT_DESCRIPTION, genai.TOOL_NAME) == (AGENT_DESCRIPTION, TOOL_NAME)
    values = semconv.GenAiOperationNameValues
    assert (
        values.INVOKE_AGENT.value,
        values.EXECUTE_TOOL.value,
    ) == (genai.INVOKE_AGENT, genai.EXECUTE_TOOL)


def test_a_run_with_steps_an_observed_tool_and_an_agent(spans):
    @observe(kind="tool")
    def lookup_flights(city: str) -> list[str]:
        return ["SK123"]

    with SessionTracker(
        "trip-1", name="book-flight", steps_as_children=True, agent_id="asst_travel_01"
    ) as tracker:
        with tracker.step("search"):
            lookup_flights("Oslo")
        with tracker.step("book"), observe("payments-agent", kind="agent"):
            pass

    session = spans.named("session book-flight")
    assert genai_keys(session) == {
        OPERATION: "invoke_agent",
        AGENT_NAME: "book-flight",
        AGENT_ID: "asst_travel_01",
    }
    # Under the session span a step is a phase of that invocation, not an operation of its own.
    assert genai_keys(spans.named("step 0: search")) == {}
    assert genai_keys(spans.named("step 1: book")) == {}
    tool = spans.named(lookup_flights.__qualname__)
    assert genai_keys(tool) == {OPERATION: "execute_tool", TOOL_NAME: lookup_flights.__qualname__}
    agent = spans.named("payments-agent")
    assert genai_keys(agent) == {OPERATION: "invoke_agent", AGENT_NAME: "payments-agent"}
    assert genai_keys(spans.named("sessiontrace.summary")) == {}
    for span in spans.all():
        assert span.attributes.get(OPERATION, "invoke_agent") in OPERATIONS
        # In-process agents and tools: the conventions' INTERNAL kind; names stay the user's.
        assert span.kind is SpanKind.INTERNAL
        # The conversation is the session (the GenAI dialect), never the agent's id.
        assert span.attributes[semconv.GEN_AI_CONVERSATION_ID] == "trip-1"


def test_each_step_is_the_agents_turn_when_it_is_the_root_of_its_trace(spans):
    with SessionTracker("trip-2", name="book-flight") as tracker:
        with tracker.step("plan"):
            pass
        tracker.next_step("act")
    tracker_steps = [spans.named("step 0: plan"), spans.named("step 1: act")]
    for step in tracker_steps:
        assert step.parent is None
        assert genai_keys(step) == {OPERATION: "invoke_agent", AGENT_NAME: "book-flight"}
    assert genai_keys(spans.named("sessiontrace.summary")) == {}


def test_no_agent_id_unless_given_and_no_name_when_the_run_has_none(spans):
    with SessionTracker("trip-3", steps_as_children=True) as tracker, tracker.step():
        pass
    session = spans.named("session trip-3")
    # The session id names the conversation, not the agent: it is never taken as the agent id.
    assert genai_keys(session) == {OPERATION: "invoke_agent"}


def test_explicit_agent_name_id_and_description(spans):
    with (
        SessionTracker(
            "trip-4",
            name="run 2026-12-01",
            agent_name="Travel Agent",
            agent_id="agent-7",
            agent_description="Books flights.\nAsks before paying.",
        ) as tracker,
        tracker.step("plan"),
    ):
        pass
    assert genai_keys(spans.named("step 0: plan")) == {
        OPERATION: "invoke_agent",
        AGENT_NAME: "Travel Agent",
        AGENT_ID: "agent-7",
        AGENT_DESCRIPTION: "Books flights.\nAsks before paying.",
    }


def test_a_sub_agent_is_its_own_agent(spans):
    with SessionTracker("trip-5", name="planner", agent_id="p-1") as parent:
        with parent.step("delegate"):
            child = parent.child("researcher", session_id="trip-5.r")
            with child, child.step("read"):
                pass
            other = parent.child(
                "writer", session_id="trip-5.w", agent_name="Writer", agent_id="w-1"
            )
            with other, other.step("write"):
                pass
    assert genai_keys(spans.named("step 0: delegate"))[AGENT_ID] == "p-1"
    assert genai_keys(spans.named("step 0: read")) == {
        OPERATION: "invoke_agent",
        AGENT_NAME: "researcher",
    }
    assert genai_keys(spans.named("step 0: write")) == {
        OPERATION: "invoke_agent",
        AGENT_NAME: "Writer",
        AGENT_ID: "w-1",
    }


def test_values_the_user_sets_are_kept(spans):
    @observe(kind="tool")
    def search(query: str) -> str:
        trace.get_current_span().set_attribute(TOOL_NAME, "web_search")
        trace.get_current_span().set_attribute(semconv.GEN_AI_TOOL_CALL_ID, "call_42")
        return "found"

    with SessionTracker("trip-6", name="book-flight") as tracker:
        with tracker.step("plan"):
            trace.get_current_span().set_attribute(AGENT_NAME, "Planner v2")
            search("flights")
            with observe("triage", kind="agent") as span:
                span.set_attribute(OPERATION, "invoke_workflow")
    assert spans.attributes("step 0: plan")[AGENT_NAME] == "Planner v2"
    tool = spans.attributes(search.__qualname__)
    assert (tool[TOOL_NAME], tool[semconv.GEN_AI_TOOL_CALL_ID]) == ("web_search", "call_42")
    assert spans.attributes("triage")[OPERATION] == "invoke_workflow"


@pytest.mark.parametrize("kind", ["llm", "chain", "retriever", "embedding", "guardrail"])
def test_other_kinds_claim_no_operation(spans, kind):
    with observe("work", kind=kind):
        pass
    assert genai_keys(spans.named("work")) == {}


def test_agent_and_tool_spans_are_not_counted_as_llm_calls(spans):
    @observe(kind="tool")
    def tool() -> str:
        return "ok"

    with SessionTracker("trip-7", name="a") as tracker, tracker.step("s"):
        tool()
        with observe("sub", kind="agent"), observe("model", kind="llm"):
            pass
    summary = tracker.summary()
    assert (summary.llm_calls, summary.spans) == (1, 4)


# --- hostile input -------------------------------------------------------------------------

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("argument", ["agent_name", "agent_id"])
@pytest.mark.parametrize(
    "value, error",
    [
        ("bad\x00name", ValueError),
        ("line\nbreak", ValueError),
        ("\x1b[31mred", ValueError),
        ("x" * (MAX_ID_LENGTH + 1), ValueError),
        ("   ", ValueError),
        ("lone \udc80", ValueError),
        (42, TypeError),
    ],
)
def test_bad_agent_names_and_ids_raise_at_the_call_naming_the_argument(
    spans, argument, value, error
):
    with pytest.raises(error, match=argument):
        SessionTracker("trip-8", **{argument: value})
    with SessionTracker("trip-8b") as tracker, pytest.raises(error, match=argument):
        tracker.child("sub", **{argument: value})
    assert [span.name for span in spans.all()] == ["sessiontrace.summary"]


@pytest.mark.parametrize(
    "value, error, says",
    [
        ("nul\x00", ValueError, "U\\+0000"),
        ("\x1b[2J", ValueError, "U\\+001B"),
        ("x" * (MAX_DESCRIPTION_LENGTH + 1), ValueError, "limit is 1000"),
        ("\n\t ", ValueError, "empty"),
        ("lone \ud800", ValueError, "surrogate"),
        (b"bytes", TypeError, "must be a str"),
    ],
)
def test_bad_agent_descriptions_raise_at_the_call(value, error, says):
    with pytest.raises(error, match=f"agent_description .*{says}"):
        SessionTracker("trip-9", agent_description=value)


def test_a_description_may_hold_newlines_tabs_and_any_language(spans):
    text = "Réserve des vols.\n\t✈ 航班预订" + "x" * (MAX_DESCRIPTION_LENGTH - 40)
    with SessionTracker("trip-10", agent_description=text) as tracker, tracker.step():
        pass
    assert spans.attributes("step 0")[AGENT_DESCRIPTION] == text


@FUZZ
@given(st.text(max_size=300))
def test_any_agent_name_is_kept_exactly_or_refused_at_the_call(spans, name):
    spans.clear()
    try:
        tracker = SessionTracker("trip-11", agent_name=name)
    except (TypeError, ValueError) as error:
        assert "agent_name" in str(error)
        assert spans.all() == []
        return
    with tracker, tracker.step():
        pass
    assert spans.attributes("step 0")[AGENT_NAME] == name


@FUZZ
@given(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=50),
        st.text(alphabet=string.printable + "\x00\x07\x1b\u202e", min_size=1, max_size=20).map(
            lambda text: text * 500  # up to 10,000 characters, control characters and all
        ),
    )
)
def test_observed_tool_and_agent_names_follow_the_span_name_rules(spans, name):
    # observe() names may hold any text but a lone surrogate, of any length (span names have
    # no limit): the tool's or agent's name is exactly the span's, or refused with it.
    spans.clear()
    try:
        tool = observe(name, kind="tool")
    except TypeError as error:  # empty or only whitespace, as for any observe() name
        assert not name.strip() and "observe() name" in str(error)
        return
    with tool:
        pass
    with observe(name, kind="agent"):
        pass
    made_tool, made_agent = spans.all()
    assert made_tool.name == made_tool.attributes[TOOL_NAME] == name
    assert made_agent.name == made_agent.attributes[AGENT_NAME] == name


def test_a_surrogate_in_an_observed_name_is_refused_as_before():
    with pytest.raises(ValueError, match="surrogate"):
        observe("tool \udc80", kind="tool")


# --- dialects ------------------------------------------------------------------------------

PROGRAM = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sessiontrace import SessionSpanProcessor, SessionTracker, observe

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SessionSpanProcessor(dialects=sys.argv[1]))
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

with SessionTracker("chat-1", name="book-flight") as tracker, tracker.step("plan"):
    with observe("search", kind="tool"):
        pass
with open(sys.argv[2], "w") as out:
    json.dump({s.name: dict(s.attributes) for s in exporter.get_finished_spans()}, out)
"""


@pytest.mark.parametrize("dialects", ["openinference", "genai"])
def test_the_agent_keys_do_not_depend_on_the_dialects(tmp_path, dialects):
    # They describe the span itself (which operation it is), as openinference.span.kind does,
    # and are set when it starts, for every processor and sampler at once; the dialects choose
    # where the session's values go: gen_ai.conversation.id only with the GenAI dialect.
    out = tmp_path / "spans.json"
    run_program(PROGRAM, dialects, str(out))
    made = json.loads(out.read_text())
    assert made["step 0: plan"][OPERATION] == "invoke_agent"
    assert made["step 0: plan"][AGENT_NAME] == "book-flight"
    assert made["search"][OPERATION] == "execute_tool"
    assert made["search"][TOOL_NAME] == "search"
    has_conversation = semconv.GEN_AI_CONVERSATION_ID in made["step 0: plan"]
    assert has_conversation is (dialects == "genai")
