"""_tracker_spans: the step in force, state snapshots, links, and the session and summary spans.

tests/test_tracker.py drives these through SessionTracker; here each function's own contract
is checked directly, on the real SDK provider of conftest (spans kept in memory).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags

from sessiontrace import (
    SessionTracker,
    TrackerSummary,
    _keys,
    set_session,
    using_session,
    without_session,
    wrap,
)
from sessiontrace._tracker_spans import (
    Step,
    links_for,
    open_step,
    start_session_span,
    state_with,
    write_summary_span,
)

REMOTE_A = SpanContext(0xA1, 0xA2, is_remote=True, trace_flags=TraceFlags(1))
REMOTE_B = SpanContext(0xB1, 0xB2, is_remote=True, trace_flags=TraceFlags(1))


# --- open_step ---------------------------------------------------------------------------


def test_no_step_outside_a_tracker_or_between_its_steps():
    assert open_step() is None
    with SessionTracker("t-none") as tracker:
        assert open_step() is None  # the tracker's own entry is not a step
        with tracker.step("one"):
            pass
        assert open_step() is None
    assert open_step() is None


def test_the_step_in_force_is_the_one_opened_here():
    with SessionTracker("t-step") as tracker, tracker.step("plan") as step:
        found = open_step()
        assert found is step
        assert (found.tracker, found.index, found.name) == (tracker, 0, "plan")
        # Blocks and handles on top of the step do not hide it.
        with using_session("inner"), set_session("handle"):
            assert open_step() is step


def test_the_innermost_step_wins_across_nested_trackers():
    with SessionTracker("outer") as outer, outer.step("o") as outer_step:
        with SessionTracker("inner") as inner:
            # inside the inner tracker but none of its steps: the outer step is still in force
            assert open_step() is outer_step
            with inner.step("i") as inner_step:
                assert open_step() is inner_step
                assert open_step().tracker is inner
            assert open_step() is outer_step
        assert open_step() is outer_step


def test_a_child_tracker_sees_its_parents_step_until_it_opens_its_own(spans):
    with SessionTracker("parent") as parent, parent.step("delegate") as parent_step:
        with parent.child("sub") as child:
            assert open_step() is parent_step
            # which is where the child's steps link to
            with child.step("work") as child_step:
                assert open_step() is child_step
                assert open_step().tracker is child
        assert open_step() is parent_step
    (link,) = spans.named("step 0: work").links
    assert link.context == parent_step.span.get_span_context()
    assert link.attributes == {_keys.PARENT_SESSION_ID: "parent"}


def test_without_session_hides_the_step_too():
    # Nothing from sessiontrace is in force under without_session(), the open step included:
    # set_state() there is an error, and the step is back after the block.
    with SessionTracker("t-clear") as tracker, tracker.step("s") as step:
        with without_session():
            assert open_step() is None
            with pytest.raises(RuntimeError, match="needs an open step"):
                tracker.set_state("from", "inside")
        assert open_step() is step
        tracker.set_state("from", "after")
        assert step.state == {"from": "after"}


def test_a_thread_started_without_the_context_has_no_step():
    seen: dict[str, object] = {}

    def look(label: str) -> None:
        seen[label] = open_step()

    with SessionTracker("t-thread") as tracker, tracker.step("s") as step:
        bare = threading.Thread(target=look, args=("bare",))
        carried = threading.Thread(target=wrap(look), args=("carried",))
        for thread in (bare, carried):
            thread.start()
            thread.join()
    assert seen == {"bare": None, "carried": step}


def test_a_step_opened_in_another_thread_is_in_force_only_there():
    seen: dict[str, object] = {}
    with SessionTracker("t-elsewhere") as tracker:

        def work() -> None:
            with tracker.step("there") as step:
                seen["there"] = open_step() is step
                barrier.wait()  # the main thread looks while this step is open
                barrier.wait()

        barrier = threading.Barrier(2)
        thread = threading.Thread(target=work)
        thread.start()
        barrier.wait()
        seen["main"] = open_step()
        barrier.wait()
        thread.join()
    assert seen == {"there": True, "main": None}


# --- state_with --------------------------------------------------------------------------


def _step(state: dict | None = None, index: int = 4) -> Step:
    step = Step(SessionTracker("t-state"), index, "think")
    if state is not None:
        step.state = state
    return step


def test_state_with_adds_the_key_to_a_copy_and_leaves_the_step_as_it_was():
    step = _step({"city": "Oslo", "nights": 3})
    before = step.state
    result = state_with(step, "nights", 4, 1_000)
    assert result == {"city": "Oslo", "nights": 4}
    assert step.state is before and step.state == {"city": "Oslo", "nights": 3}
    assert result is not step.state


def test_state_with_copies_deeply_so_later_changes_to_the_value_do_not_reach_it():
    value = {"legs": [{"from": "BER", "to": "OSL"}], "seats": (1, 2)}
    step = _step({"earlier": {"kept": [1]}})
    result = state_with(step, "trip", value, 1_000)
    value["legs"][0]["to"] = "BGO"
    value["legs"].append({})
    step.state["earlier"]["kept"].append(2)
    assert result == {
        "earlier": {"kept": [1]},
        "trip": {"legs": [{"from": "BER", "to": "OSL"}], "seats": [1, 2]},
    }
    # As JSON has it: a tuple is a list.
    assert type(result["trip"]["seats"]) is list


def test_state_at_the_limit_fits_and_one_byte_more_is_an_error_with_the_numbers():
    step = _step({"a": "x"})
    value = "é" * 10  # two bytes each in UTF-8: bytes are counted, not characters
    size = len(json.dumps({"a": "x", "note": value}, ensure_ascii=False).encode("utf-8"))
    assert state_with(step, "note", value, size) == {"a": "x", "note": value}
    with pytest.raises(ValueError) as raised:
        state_with(step, "note", value, size - 1)
    assert str(raised.value) == (
        f"step 4's state would be {size} bytes as JSON with 'note'; the limit is {size - 1} "
        "(max_state_bytes): store less, or a reference to it"
    )
    assert step.state == {"a": "x"}


def test_a_value_json_cannot_carry_is_a_type_error_naming_the_key():
    step = _step({"a": 1})
    for value in (object(), {"s": {1, 2}}, b"bytes", float("nan")):
        with pytest.raises(TypeError, match=r"state\['bad'\].* is not JSON-serialisable"):
            state_with(step, "bad", value, 10_000)
    with pytest.raises(TypeError, match="key must be a str"):
        state_with(step, 3, "v", 10_000)
    assert step.state == {"a": 1}


def test_a_state_json_cannot_encode_whole_is_a_type_error_naming_the_key():
    # The state a step holds came from state_with, so this is the last line of defence.
    step = _step({"broken": object()})
    with pytest.raises(TypeError) as raised:
        state_with(step, "next", 1, 10_000)
    message = str(raised.value)
    assert message.startswith("state 'next' is not JSON-serialisable (")
    assert message.endswith("); convert it first")


# --- links_for ---------------------------------------------------------------------------


def test_links_go_to_each_remote_parent_in_order():
    links = links_for([REMOTE_A, REMOTE_B], None, None)
    assert [link.context for link in links] == [REMOTE_A, REMOTE_B]
    assert all(not link.attributes for link in links)
    assert links_for([], None, None) == []


def test_a_sub_session_links_last_to_its_parents_step(tracer):
    parent_step = tracer.start_span("parent step")
    try:
        links = links_for([REMOTE_A], "parent-session", parent_step)
    finally:
        parent_step.end()
    assert [link.context for link in links] == [REMOTE_A, parent_step.get_span_context()]
    assert dict(links[-1].attributes) == {_keys.PARENT_SESSION_ID: "parent-session"}


def test_no_parent_link_without_both_the_parent_session_and_its_step(tracer):
    span = tracer.start_span("lonely")
    span.end()
    assert links_for([], "parent-session", None) == []
    assert links_for([], None, span) == []


# --- start_session_span ------------------------------------------------------------------


def test_the_session_span_is_named_typed_and_linked(spans, tracer):
    links = links_for([REMOTE_A], None, None)
    span = start_session_span(Context(), "s-1", "book-flight", links)
    assert span.is_recording()  # started, not ended: the tracker ends it
    span.end()
    made = spans.named("session book-flight")
    assert made.attributes[_keys.SPAN_TYPE] == "session"
    assert made.attributes[_keys.SESSION_NAME] == "book-flight"
    assert [link.context for link in made.links] == [REMOTE_A]
    assert made.parent is None


@pytest.mark.parametrize("name", [None, ""])
def test_without_a_name_the_session_span_is_named_by_the_session_id(spans, name):
    start_session_span(Context(), "s-2", name, []).end()
    made = spans.named("session s-2")
    assert made.attributes[_keys.SPAN_TYPE] == "session"
    assert _keys.SESSION_NAME not in made.attributes


def test_the_session_span_is_the_runs_invoke_agent_span_with_the_agent_keys(spans):
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Travel Agent"}
    start_session_span(Context(), "s-3", "book-flight", [], agent).end()
    start_session_span(Context(), "s-4", "no-agent", []).end()
    made = spans.attributes("session book-flight")
    assert {k: made[k] for k in agent} == agent
    assert made[_keys.SESSION_NAME] == "book-flight"  # the run's name stays sessiontrace's
    assert not any(k.startswith("gen_ai.agent") for k in spans.attributes("session no-agent"))


@pytest.mark.parametrize("as_children", [False, True])
def test_a_step_is_the_invoke_agent_span_only_as_the_root_of_its_trace(spans, as_children):
    with SessionTracker("s-5", name="planner", steps_as_children=as_children) as tracker:
        with tracker.step("one"):
            pass
    step = spans.attributes("step 0: one")
    assert step[_keys.SPAN_TYPE] == "step"
    if as_children:
        assert "gen_ai.operation.name" not in step and "gen_ai.agent.name" not in step
        assert spans.attributes("session planner")["gen_ai.operation.name"] == "invoke_agent"
    else:
        assert (step["gen_ai.operation.name"], step["gen_ai.agent.name"]) == (
            "invoke_agent",
            "planner",
        )


def test_the_session_span_starts_in_the_context_given(spans, tracer):
    with tracer.start_as_current_span("request") as request:
        start_session_span(Context(), "root", None, []).end()
        start_session_span(trace.set_span_in_context(request), "child", None, []).end()
    assert spans.named("session root").parent is None
    child = spans.named("session child")
    assert child.parent.span_id == request.get_span_context().span_id
    assert child.context.trace_id == request.get_span_context().trace_id


# --- write_summary_span ------------------------------------------------------------------


def _summary(**changes) -> TrackerSummary:
    fields = dict(
        session_id="s-sum",
        name="book-flight",
        user_id="ada",
        parent_session_id=None,
        status="ok",
        error=None,
        steps=3,
        spans=11,
        llm_calls=2,
        prompt_tokens=120,
        completion_tokens=30,
        total_tokens=150,
        cost_usd=0.0125,
        errors=0,
        started_at=datetime(2026, 12, 1, tzinfo=timezone.utc),
        ended_at=datetime(2026, 12, 1, 0, 0, 2, tzinfo=timezone.utc),
        duration_seconds=2.5,
        children=(),
    )
    fields.update(changes)
    return TrackerSummary(**fields)


def test_the_summary_span_carries_the_totals(spans):
    write_summary_span(Context(), _summary(), "book-flight", None)
    made = spans.named("sessiontrace.summary")
    summary = _keys.SUMMARY_PREFIX
    assert made.end_time is not None
    assert made.parent is None
    assert dict(made.attributes) == {
        _keys.SPAN_TYPE: "summary",
        _keys.STATUS: "ok",
        _keys.SESSION_NAME: "book-flight",
        summary + "steps": 3,
        summary + "spans": 11,
        summary + "llm_calls": 2,
        summary + "prompt_tokens": 120,
        summary + "completion_tokens": 30,
        summary + "total_tokens": 150,
        summary + "errors": 0,
        summary + "duration_ms": 2500.0,
        summary + "cost_usd": 0.0125,
    }
    assert made.status.status_code is StatusCode.UNSET
    assert made.events == ()


def test_an_unknown_cost_and_no_name_are_left_out(spans):
    write_summary_span(Context(), _summary(cost_usd=None, name=None), None, None)
    attributes = spans.attributes("sessiontrace.summary")
    assert _keys.SUMMARY_PREFIX + "cost_usd" not in attributes
    assert _keys.SESSION_NAME not in attributes


def test_an_error_status_without_an_exception_sets_the_status_only(spans):
    summary = _summary(status="error", error="ended as failed")
    write_summary_span(Context(), summary, "book-flight", None)
    made = spans.named("sessiontrace.summary")
    assert made.attributes[_keys.STATUS] == "error"
    assert (made.status.status_code, made.status.description) == (
        StatusCode.ERROR,
        "ended as failed",
    )
    assert made.events == ()


def test_the_exception_that_ended_the_run_is_recorded_on_the_summary(spans):
    error = LookupError("no seats left")
    summary = _summary(status="error", error="LookupError: no seats left")
    write_summary_span(Context(), summary, "book-flight", error)
    made = spans.named("sessiontrace.summary")
    assert made.status.status_code is StatusCode.ERROR
    assert made.status.description == "LookupError: no seats left"
    (event,) = made.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "LookupError"
    assert event.attributes["exception.message"] == "no seats left"


def test_the_summary_span_starts_in_the_context_given(spans, tracer):
    with tracer.start_as_current_span("run") as run:
        write_summary_span(trace.set_span_in_context(run), _summary(), None, None)
    made = spans.named("sessiontrace.summary")
    assert made.parent.span_id == run.get_span_context().span_id
