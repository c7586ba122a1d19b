"""SessionTracker: steps, state, sub-sessions, live totals, headers, concurrency."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace import StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sessiontrace import (
    SessionTracker,
    StepLimitError,
    current,
    current_session_id,
    set_session,
    using_metadata,
    using_session,
    using_user,
)


def llm_call(tracer, name="chat", prompt=10, completion=5, **extra):
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "fake-mini",
        "llm.token_count.prompt": prompt,
        "llm.token_count.completion": completion,
        "llm.token_count.total": prompt + completion,
        **extra,
    }
    with tracer.start_as_current_span(name, attributes=attributes):
        pass


def of_type(spans, kind):
    return [s for s in spans.all() if s.attributes.get("sessiontrace.span.type") == kind]


def test_generated_ids_are_unique_and_can_be_required():
    assert SessionTracker().session_id != SessionTracker().session_id
    assert len(SessionTracker().session_id) == 32
    with pytest.raises(ValueError, match="generate_id=False"):
        SessionTracker(generate_id=False)
    with pytest.raises(TypeError, match="session_id must be a str"):
        SessionTracker(42)
    with pytest.raises(ValueError, match="limit is 200"):
        SessionTracker("x" * 201)
    with pytest.raises(TypeError, match="metadata"):
        SessionTracker(metadata={"when": object()})
    with pytest.raises(ValueError, match="max_steps must be a positive int"):
        SessionTracker(max_steps=0)
    with pytest.raises(ValueError, match=r"prices\['m'\]"):
        SessionTracker(prices={"m": {"prompt": -1}})


def test_values_are_in_force_while_started_and_restored_after(spans, tracer):
    tracker = SessionTracker("run-1", user_id="ada", metadata={"plan": "pro"}, tags=["agent"])
    with tracker:
        assert current().session_id == "run-1"
        with tracer.start_as_current_span("free"):
            pass
    assert current_session_id() is None
    attributes = spans.attributes("free")
    assert attributes["session.id"] == "run-1"
    assert attributes["user.id"] == "ada"
    assert json.loads(attributes["metadata"]) == {"plan": "pro"}
    assert attributes["tag.tags"] == ("agent",)
    assert "sessiontrace.step.index" not in attributes


def test_each_step_is_its_own_trace_and_spans_inside_carry_the_index(spans, tracer):
    with SessionTracker("run-2", name="book-flight") as tracker:
        with tracker.step("plan"):
            llm_call(tracer, "plan-llm")
        with tracker.step("search"):
            with tracer.start_as_current_span("tool"):
                llm_call(tracer, "search-llm")
    steps = sorted(of_type(spans, "step"), key=lambda s: s.attributes["sessiontrace.step.index"])
    assert [s.name for s in steps] == ["step 0: plan", "step 1: search"]
    assert [s.attributes["sessiontrace.step.name"] for s in steps] == ["plan", "search"]
    assert all(s.parent is None for s in steps)
    assert steps[0].context.trace_id != steps[1].context.trace_id
    assert spans.attributes("plan-llm")["sessiontrace.step.index"] == 0
    assert spans.attributes("search-llm")["sessiontrace.step.index"] == 1
    assert spans.attributes("tool")["sessiontrace.step.index"] == 1
    assert spans.named("search-llm").context.trace_id == steps[1].context.trace_id
    for span in spans.all():
        assert span.attributes["session.id"] == "run-2"


def test_steps_as_children_of_one_session_span(spans, tracer):
    with SessionTracker("run-3", name="nested", steps_as_children=True) as tracker:
        with tracker.step("a"):
            llm_call(tracer)
        with tracker.step("b"):
            pass
    (session,) = of_type(spans, "session")
    assert session.attributes["sessiontrace.session.name"] == "nested"
    assert session.attributes["sessiontrace.status"] == "ok"
    for step in of_type(spans, "step"):
        assert step.parent.span_id == session.context.span_id
    assert {s.context.trace_id for s in spans.all()} == {session.context.trace_id}


def test_next_step_for_code_without_blocks(spans, tracer):
    tracker = SessionTracker("run-4").start()
    assert tracker.next_step("first") == 0
    llm_call(tracer, "in-first")
    assert tracker.next_step("second") == 1
    llm_call(tracer, "in-second")
    summary = tracker.end()
    assert summary.steps == 2
    assert spans.attributes("in-first")["sessiontrace.step.index"] == 0
    assert spans.attributes("in-second")["sessiontrace.step.index"] == 1
    assert len(of_type(spans, "step")) == 2
    assert current_session_id() is None


def test_max_steps_is_a_clear_error_and_takes_nothing(spans):
    with SessionTracker("run-5", max_steps=1) as tracker:
        with tracker.step("only"):
            pass
        with pytest.raises(StepLimitError, match="max_steps=1 reached"):
            with tracker.step("one too many"):
                pass
        with pytest.raises(StepLimitError):
            tracker.next_step()
        assert tracker.summary().steps == 1
    assert len(of_type(spans, "step")) == 1


def test_state_is_written_once_on_the_step_span(spans, tracer):
    with SessionTracker("run-6") as tracker:
        with tracker.step("plan"):
            tracker.set_state("goal", "flight to Oslo")
            llm_call(tracer, "child")
            tracker.set_state("budget", {"eur": 300})
        with tracker.step("empty"):
            pass
    steps = {s.attributes["sessiontrace.step.name"]: s for s in of_type(spans, "step")}
    state = json.loads(steps["plan"].attributes["sessiontrace.state"])
    assert state == {"goal": "flight to Oslo", "budget": {"eur": 300}}
    assert "sessiontrace.state" not in spans.attributes("child")
    # State carries over: the next step's snapshot is the whole state, changed or not.
    assert json.loads(steps["empty"].attributes["sessiontrace.state"]) == state


def test_state_carries_over_and_a_step_changes_it(spans):
    with SessionTracker("run-6b") as tracker:
        with tracker.step("first"):
            assert tracker.summary().steps == 1
        with tracker.step("second"):
            tracker.set_state("city", "Oslo")
        with tracker.step("third"):
            tracker.set_state("city", "Bergen")
            tracker.set_state("nights", 4)
    steps = {s.attributes["sessiontrace.step.name"]: s for s in of_type(spans, "step")}
    assert "sessiontrace.state" not in steps["first"].attributes
    assert json.loads(steps["second"].attributes["sessiontrace.state"]) == {"city": "Oslo"}
    assert json.loads(steps["third"].attributes["sessiontrace.state"]) == {
        "city": "Bergen",
        "nights": 4,
    }


def test_state_over_the_limit_gives_size_and_limit_and_writes_nothing(spans):
    with SessionTracker("run-7", max_state_bytes=100) as tracker:
        with tracker.step("big"):
            tracker.set_state("small", "x")
            with pytest.raises(ValueError, match=r"would be 1\d\d bytes .* the limit is 100"):
                tracker.set_state("large", "y" * 100)
            with pytest.raises(TypeError, match="not JSON-serialisable"):
                tracker.set_state("bad", object())
    (step,) = of_type(spans, "step")
    assert json.loads(step.attributes["sessiontrace.state"]) == {"small": "x"}


def test_set_state_outside_a_step_is_a_clear_error():
    with SessionTracker("run-8") as tracker, pytest.raises(RuntimeError, match="open step"):
        tracker.set_state("k", 1)


def test_default_state_limit_is_10_kb():
    with SessionTracker("run-9") as tracker, tracker.step():
        with pytest.raises(ValueError, match="the limit is 10000"):
            tracker.set_state("blob", "z" * 10_001)


def test_exception_inside_a_step_marks_step_and_session(spans):
    tracker = SessionTracker("run-10", steps_as_children=True)
    with pytest.raises(KeyError):
        with tracker:
            with tracker.step("tool"):
                raise KeyError("missing city")
    (step,) = of_type(spans, "step")
    assert step.status.status_code is StatusCode.ERROR
    assert [event.name for event in step.events] == ["exception"]
    summary = tracker.summary()
    assert summary.status == "error"
    assert summary.error == "KeyError: 'missing city'"
    (session,) = of_type(spans, "session")
    assert session.status.status_code is StatusCode.ERROR
    (written,) = of_type(spans, "summary")
    assert written.attributes["sessiontrace.status"] == "error"
    assert current_session_id() is None


def test_totals_match_token_counts_known_in_advance(spans, tracer):
    prices = {"priced-model": {"prompt": 1.0, "completion": 2.0}}  # USD per million tokens
    with SessionTracker("run-11", prices=prices) as tracker:
        with tracker.step("a"):
            llm_call(tracer, prompt=100, completion=20)  # OpenInference counts, no cost
            llm_call(tracer, prompt=7, completion=3, **{"llm.cost.total": 0.5})
            with tracer.start_as_current_span(
                "genai-and-oi",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "priced-model",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 500,
                },
            ):
                pass
            mid = tracker.summary()
        with tracker.step("b"), pytest.raises(ValueError):
            with tracer.start_as_current_span("failing"):
                raise ValueError("tool failed")
    summary = tracker.summary()
    assert mid.status == "running" and mid.llm_calls == 3
    assert (summary.prompt_tokens, summary.completion_tokens, summary.total_tokens) == (
        1107,
        523,
        1630,
    )
    assert summary.llm_calls == 3
    assert summary.cost_usd == pytest.approx(0.5 + (1000 * 1.0 + 500 * 2.0) / 1e6)
    # 2 steps + 3 LLM spans + "failing" (the summary span is not counted)
    assert summary.spans == 6
    assert summary.errors == 1  # the failing span (its step caught the error and went on)
    assert summary.steps == 2
    assert summary.status == "ok"
    (written,) = of_type(spans, "summary")
    assert written.attributes["sessiontrace.summary.total_tokens"] == 1630
    assert written.attributes["sessiontrace.summary.steps"] == 2
    assert written.attributes["session.id"] == "run-11"
    with pytest.raises(Exception):  # noqa: B017 - the summary is immutable
        summary.steps = 3


def test_no_prices_and_no_cost_attributes_means_no_cost():
    with SessionTracker("run-12") as tracker, tracker.step():
        llm_call(trace.get_tracer("t"))
    assert tracker.summary().cost_usd is None


def test_sub_session_links_to_the_parent_step_and_rolls_up(spans, tracer):
    with SessionTracker("parent-run", user_id="ada") as parent:
        with parent.step("delegate"):
            child = parent.child("researcher")
            with child:
                with child.step("look up"):
                    llm_call(tracer, "child-llm", prompt=40, completion=10)
        with parent.step("summarise"):
            llm_call(tracer, "parent-llm", prompt=1, completion=1)
    child_summary, parent_summary = child.summary(), parent.summary()
    assert child.session_id != parent.session_id
    assert child_summary.parent_session_id == "parent-run"
    assert child_summary.total_tokens == 50
    assert parent_summary.total_tokens == 52
    assert parent_summary.children == (child.session_id,)
    attributes = spans.attributes("child-llm")
    assert attributes["session.id"] == child.session_id
    assert attributes["user.id"] == "ada"
    assert attributes["sessiontrace.parent_session.id"] == "parent-run"
    assert "sessiontrace.parent_session.id" not in spans.attributes("parent-llm")
    child_step = spans.named("step 0: look up")
    parent_step = spans.named("step 0: delegate")
    (link,) = child_step.links
    assert link.context.span_id == parent_step.context.span_id
    assert link.attributes["sessiontrace.parent_session.id"] == "parent-run"


def test_set_parent_links_steps_to_remote_work(spans):
    with SessionTracker("run-13") as tracker:
        tracker.set_parent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        with tracker.step():
            pass
    (link,) = of_type(spans, "step")[0].links
    assert link.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert link.context.span_id == 0x00F067AA0BA902B7
    with pytest.raises(ValueError, match="32 hex digits"):
        tracker.set_parent("xyz")


def test_set_parent_with_a_trace_id_only_records_it(spans):
    with SessionTracker("run-13b") as tracker:
        tracker.set_parent(0x4BF92F3577B34DA6A3CE929D0E0E4736)
        with tracker.step():
            pass
    (step,) = of_type(spans, "step")
    assert step.links == ()
    assert step.attributes["sessiontrace.parent_trace.ids"] == ("4bf92f3577b34da6a3ce929d0e0e4736",)


def test_headers_parse_back_with_the_standard_propagators(spans):
    with SessionTracker("run-14", user_id="ada") as tracker, tracker.step("call"):
        headers = tracker.headers()
    (step,) = of_type(spans, "step")
    context = TraceContextTextMapPropagator().extract(headers)
    context = W3CBaggagePropagator().extract(headers, context)
    remote = trace.get_current_span(context).get_span_context()
    assert remote.trace_id == step.context.trace_id
    assert remote.span_id == step.context.span_id
    assert baggage.get_all(context) == {
        "session.id": "run-14",
        "user.id": "ada",
        "sessiontrace.step.index": "0",
    }
    assert headers["X-Session-Id"] == "run-14"


def test_tracker_inside_using_session_overrides_and_restores(spans, tracer):
    with using_session("outer"):
        with SessionTracker("inner-run"):
            assert current_session_id() == "inner-run"
            handle = set_session("hook")
            assert current_session_id() == "hook"
            handle.restore()
        assert current_session_id() == "outer"


def test_a_different_session_inside_a_tracker_is_not_counted(spans, tracer):
    with SessionTracker("run-15") as tracker, tracker.step():
        with using_session("elsewhere"):
            llm_call(tracer, "other-session")
        llm_call(tracer, "ours")
    assert "sessiontrace.step.index" not in spans.attributes("other-session")
    assert tracker.summary().llm_calls == 1


def test_concurrent_trackers_in_threads_do_not_bleed(spans, tracer):
    barrier = threading.Barrier(6)
    trackers = {}

    def run(index: int) -> None:
        with SessionTracker(f"thread-{index}") as tracker:
            trackers[index] = tracker
            for step in range(3):
                with tracker.step(f"s{step}"):
                    barrier.wait()
                    llm_call(tracer, f"llm-{index}-{step}", prompt=index, completion=step)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, tracker in trackers.items():
        summary = tracker.summary()
        assert (summary.steps, summary.llm_calls) == (3, 3)
        assert summary.prompt_tokens == 3 * index
        assert summary.completion_tokens == 0 + 1 + 2
        for step in range(3):
            attributes = spans.attributes(f"llm-{index}-{step}")
            assert attributes["session.id"] == f"thread-{index}"
            assert attributes["sessiontrace.step.index"] == step


async def test_concurrent_trackers_in_asyncio_tasks_do_not_bleed(spans, tracer):
    async def run(index: int) -> SessionTracker:
        async with SessionTracker(f"task-{index}") as tracker:
            for step in range(2):
                async with tracker.step():
                    await asyncio.sleep(0)
                    llm_call(tracer, f"a-{index}-{step}", prompt=1, completion=index)
        return tracker

    trackers = await asyncio.gather(*(run(i) for i in range(50)))
    for index, tracker in enumerate(trackers):
        summary = tracker.summary()
        assert (summary.steps, summary.completion_tokens, summary.spans) == (2, 2 * index, 4)
        assert spans.attributes(f"a-{index}-1")["session.id"] == f"task-{index}"


def test_start_twice_and_steps_outside_the_run_are_clear_errors():
    tracker = SessionTracker("run-16")
    with pytest.raises(RuntimeError, match="not running"):
        with tracker.step():
            pass
    with tracker:
        with pytest.raises(RuntimeError, match="already started"):
            tracker.start()
    with pytest.raises(RuntimeError, match="not running"):
        tracker.next_step()
    assert tracker.end().status == "ok"  # ending again returns the final summary


def test_ending_in_another_thread_is_a_clear_error():
    tracker = SessionTracker("run-17").start()
    errors: list[BaseException] = []

    def end() -> None:
        try:
            tracker.end()
        except RuntimeError as error:
            errors.append(error)

    worker = threading.Thread(target=end)
    worker.start()
    worker.join()
    assert "another thread" in str(errors[0])
    # Nothing changed: the run goes on, and ends where it started.
    assert tracker.summary().status == "running"
    assert current_session_id() == "run-17"
    assert tracker.end().status == "ok"
    assert current_session_id() is None


def test_steps_and_summary_are_stamped_even_from_a_bare_thread(spans):
    tracker = SessionTracker("run-18").start()
    results = []

    def work() -> None:  # a thread with no context: the step still belongs to the tracker
        with tracker.step("in thread"):
            results.append(current_session_id())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    tracker.end()
    assert results == ["run-18"]
    (step,) = of_type(spans, "step")
    assert step.attributes["session.id"] == "run-18"
    assert of_type(spans, "summary")[0].attributes["session.id"] == "run-18"


# --- a failing run records its exception, as observe() does --------------------------
def exception_event(span):
    (event,) = [event for event in span.events if event.name == "exception"]
    return dict(event.attributes)


@pytest.mark.parametrize("steps_as_children", [False, True])
def test_a_failing_tracker_records_its_exception_on_the_session_span(spans, steps_as_children):
    tracker = SessionTracker("run-fail", steps_as_children=steps_as_children)
    with pytest.raises(ValueError, match="no flights"):
        with tracker:
            raise ValueError("no flights")
    (written,) = of_type(spans, "summary")
    assert written.status.status_code is StatusCode.ERROR
    assert written.status.description == "ValueError: no flights"
    event = exception_event(written)
    assert (event["exception.type"], event["exception.message"]) == ("ValueError", "no flights")
    assert "raise ValueError" in event["exception.stacktrace"]
    assert tracker.summary().error == "ValueError: no flights"
    if steps_as_children:
        (session,) = of_type(spans, "session")
        assert exception_event(session)["exception.type"] == "ValueError"


def test_a_failing_step_records_its_exception_on_the_step_span(spans):
    tracker = SessionTracker("run-step-fail")
    with tracker:
        with pytest.raises(KeyError), tracker.step("tool"):
            raise KeyError("city")
        with tracker.step("retry"):
            pass
    failed, retried = of_type(spans, "step")
    assert failed.status.status_code is StatusCode.ERROR
    assert exception_event(failed)["exception.type"] == "KeyError"
    assert retried.status.status_code is StatusCode.UNSET and not retried.events
    (written,) = of_type(spans, "summary")  # caught inside: the run itself went well
    assert written.status.status_code is StatusCode.UNSET and not written.events
    assert tracker.summary().status == "ok"


def test_end_with_an_error_records_it_and_an_open_next_step_gets_it_too(spans):
    tracker = SessionTracker("run-end-error").start()
    tracker.next_step("plan")
    tracker.end(error=TimeoutError("model timed out"))
    (step,) = of_type(spans, "step")
    (written,) = of_type(spans, "summary")
    assert exception_event(step)["exception.type"] == "TimeoutError"
    assert exception_event(written)["exception.message"] == "model timed out"


def test_end_with_status_error_alone_marks_the_summary_span(spans):
    SessionTracker("run-status").start().end("error")
    (written,) = of_type(spans, "summary")
    assert written.status.status_code is StatusCode.ERROR
    assert not written.events


# --- wrong types at the constructor: TypeError naming the argument --------------------
@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"prices": []}, TypeError, "prices must map model names (str) to {'prompt'"),
        ({"prices": "gpt-4o"}, TypeError, "or be None; got str"),
        ({"prices": {"m": (0.1, 0.2)}}, TypeError, "prices['m'] is tuple"),
        ({"prices": {3: {"prompt": 1}}}, TypeError, "got the model name 3"),
        ({"prices": {"m": {"prompt": "1"}}}, TypeError, "prices['m']['prompt'] must be a number"),
        ({"prices": {"m": {"prompt": True}}}, TypeError, "prices['m']['prompt'] must be a number"),
        ({"prices": {"m": {"input": 1}}}, ValueError, "prices['m'] has unknown key(s) 'input'"),
        ({"prices": {"m": {"completion": -1}}}, ValueError, "finite number >= 0"),
        ({"prices": {"m": {"prompt": float("nan")}}}, ValueError, "finite number >= 0"),
        ({"prices": {"m": {"prompt": float("inf")}}}, ValueError, "finite number >= 0"),
        ({"max_steps": "3"}, TypeError, "max_steps must be a positive int or None, got str"),
        ({"max_steps": 2.5}, TypeError, "max_steps must be a positive int or None, got float"),
        ({"max_steps": True}, TypeError, "max_steps must be a positive int or None, got bool"),
        ({"max_steps": -1}, ValueError, "max_steps must be a positive int or None, got -1"),
        ({"max_state_bytes": None}, TypeError, "max_state_bytes must be a positive int, got"),
        ({"max_state_bytes": 0}, ValueError, "max_state_bytes must be a positive int, got 0"),
        ({"generate_id": "no"}, TypeError, "generate_id must be True or False, got str"),
        ({"steps_as_children": 1}, TypeError, "steps_as_children must be True or False"),
        ({"user_id": 7}, TypeError, "user_id must be a str, got int"),
        ({"name": ["n"]}, TypeError, "name must be a str, got list"),
        ({"tags": "beta"}, TypeError, "tags must be a list of str"),
        ({"metadata": [("k", "v")]}, TypeError, "metadata"),
    ],
)
def test_wrong_constructor_arguments_name_the_argument(arguments, error, words):
    with pytest.raises(error) as raised:
        SessionTracker("run-bad", **arguments)
    assert words in str(raised.value)
    assert type(raised.value) is error


def test_prices_are_checked_whole_and_kept_as_given():
    prices = {"a": {"prompt": 1}, "b": {"prompt": 1, "completion": 2.5, "cache_read": 0.1}}
    tracker = SessionTracker(prices=prices)
    expected = {"a": (1.0, 0.0), "b": (1.0, 2.5, 0.1, 1.0)}
    assert tracker.child()._prices == tracker._prices == expected


def test_wrong_arguments_after_construction_name_the_argument():
    tracker = SessionTracker("run-later")
    with pytest.raises(TypeError, match="error must be the exception that ended the run"):
        tracker.start().end(error="boom")
    with pytest.raises(ValueError, match="status must be 'ok', 'error' or None"):
        tracker.end("failed")
    tracker.end()
    with pytest.raises(TypeError, match=r"trace_id must be 32 hex digits .* got float"):
        tracker.set_parent(1.5)
    with pytest.raises(ValueError, match="trace_id must be 32 hex digits"):
        tracker.set_parent("0x" + "1" * 30)
    with pytest.raises(TypeError, match=r"span_id must be 16 hex digits .* got bytes"):
        tracker.set_parent("1" * 32, b"1" * 16)
    with pytest.raises(TypeError, match="name must be a str"):
        tracker.step(3)


ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=10**20),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=5),
    st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.dictionaries(
        st.one_of(st.text(max_size=5), st.integers()),
        st.one_of(
            st.floats(allow_nan=True),
            st.integers(),
            st.text(max_size=3),
            st.dictionaries(st.text(max_size=10), st.one_of(st.floats(), st.text(max_size=3))),
        ),
        max_size=3,
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "user_id",
                "name",
                "metadata",
                "tags",
                "max_steps",
                "generate_id",
                "steps_as_children",
                "max_state_bytes",
                "prices",
            ]
        ),
        ANYTHING,
    )
)
def test_any_constructor_arguments_are_accepted_or_a_clear_error(arguments):
    try:
        tracker = SessionTracker(**arguments)
    except (TypeError, ValueError) as error:
        named = [name for name in arguments if name in str(error)]
        assert named, f"{error!r} names none of {sorted(arguments)}"
    else:
        with tracker:  # whatever was accepted runs
            with tracker.step():
                pass


def test_next_step_inside_a_block_in_a_loop_ends_with_the_block_and_the_run_goes_on():
    # Each step is pushed inside the block, so the block's end takes it out of force; the
    # next next_step() then closes it without touching the context (nothing to undo).
    tracker = SessionTracker("loop-run").start()
    for item in range(3):
        with using_metadata({"item": item}):
            assert tracker.next_step("process") == item
            assert current_session_id() == "loop-run"
        assert current_session_id() == "loop-run"
    assert tracker.end().steps == 3
    assert current_session_id() is None


def test_a_tracker_started_inside_a_block_ends_after_it():
    with using_user("ada"):
        tracker = SessionTracker("inside-run").start()
    assert current_session_id() is None  # the block took the tracker's values with it
    assert tracker.end().status == "ok"
    assert current_session_id() is None


def test_ending_inside_a_block_opened_after_start_is_refused_and_changes_nothing():
    tracker = SessionTracker("outside-run").start()
    with using_user("ada"):
        with pytest.raises(RuntimeError, match="a block opened after it and still open"):
            tracker.end()
        assert (current_session_id(), current().user_id) == ("outside-run", "ada")
    assert tracker.summary().status == "running"
    assert tracker.end().status == "ok"
    assert current_session_id() is None


def test_a_block_around_a_step_stays_in_force_in_the_step_and_the_session_is_the_trackers(
    spans, tracer
):
    with SessionTracker("steps-in-blocks", metadata={"run": "r"}) as tracker:
        with using_metadata({"item": 1}), tracker.step("process"):
            tracer.start_span("in step").end()
        with using_session("another"), tracker.step("second"):
            assert current_session_id() == "steps-in-blocks"
    first = spans.attributes("in step")
    assert first["session.id"] == "steps-in-blocks"
    assert json.loads(first["metadata"]) == {"run": "r", "item": 1}
    assert first["sessiontrace.step.index"] == 0
