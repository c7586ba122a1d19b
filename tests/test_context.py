"""_context: push returns a token, pop with it restores exactly, and only where it is in force."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace

from sessiontrace import current_session_id, set_session, using_session
from sessiontrace._context import (
    Entry,
    current_entry,
    entries,
    hold,
    loose,
    pop,
    pop_owned,
    push,
    release,
    stacked,
)
from sessiontrace._frames import merge
from sessiontrace._keys import RESTORE_KEY

ROOT = Path(__file__).resolve().parent.parent


def frame(session_id: str):
    return merge(None, session_id=session_id)


def test_an_entry_is_named_and_typed_and_is_the_token():
    before = otel_context.get_current()
    token = push(frame("s1"), owner="me")
    assert isinstance(token, Entry)
    assert current_entry() is token
    assert (token.frame.session_id, token.owner) == ("s1", "me")
    assert otel_context.get_value(RESTORE_KEY) is before
    assert pop(token)
    assert otel_context.get_current() is before


def test_a_scope_pushes_the_same_entry_again_over_the_same_outer_frame():
    scope = using_session("loop")
    seen = []
    for _ in range(3):
        with scope:
            seen.append(current_entry())
    assert seen[0] is seen[1] is seen[2]  # nothing new but the Context on a re-entry
    with using_session("outer"), scope:
        assert current_entry() is not seen[0]  # another outer frame: another entry
        assert current_session_id() == "loop"
    assert current_entry() is None


def test_pop_restores_the_exact_context_and_takes_what_was_pushed_on_top():
    before = otel_context.get_current()
    outer = push(frame("outer"), owner="a")
    inner = push(frame("inner"), owner="b")
    assert list(entries()) == [inner, outer]
    assert pop(outer)  # inner goes with it
    assert otel_context.get_current() is before
    assert not pop(inner)  # no longer in force: nothing changes
    assert otel_context.get_current() is before
    later = push(frame("later"), owner="c")
    assert not pop(inner)  # other entries in force, but not this one: still nothing
    assert current_entry() is later
    assert pop(later)


def test_pop_where_the_token_is_not_in_force_changes_nothing():
    token = push(frame("main"), owner="main")
    results: list[object] = []

    def worker() -> None:
        results.append(pop(token))
        results.append(current_session_id())

    thread = threading.Thread(target=worker)  # a plain thread: an empty context
    thread.start()
    thread.join()
    assert results == [False, None]
    assert current_session_id() == "main"
    assert pop(token)


def test_pop_owned_finds_the_innermost_entry_of_its_owner():
    owner = object()
    first = push(frame("one"), owner)
    push(frame("two"), owner)
    push(frame("handle"), "someone else")
    assert pop_owned(owner)  # the second push, and the handle on top of it
    assert current_entry() is first
    assert pop_owned(owner)
    assert current_entry() is None
    assert not pop_owned(owner)


def test_one_scope_entered_by_many_threads_and_tasks_at_once_keeps_each_apart():
    scope = using_session("shared")
    barrier = threading.Barrier(4)
    seen: list[object] = []

    def worker(index: int) -> None:
        with using_session(f"outer-{index}"):
            with scope:
                barrier.wait(timeout=10)
                seen.append(current_session_id())
            seen.append(current_session_id())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, seen)) == sorted(["shared"] * 4 + [f"outer-{i}" for i in range(4)])

    async def task(index: int) -> tuple[str | None, str | None]:
        with using_session(f"task-{index}"), scope:
            await asyncio.sleep(0)
            inside = current_session_id()
        return inside, current_session_id()

    async def main() -> list[tuple[str | None, str | None]]:
        return list(await asyncio.gather(*(task(i) for i in range(5))))

    assert asyncio.run(main()) == [("shared", None)] * 5


def test_stacked_builds_a_context_without_making_it_current():
    base = otel_context.Context()
    kept = stacked(frame("kept"), owner="tracker", context=base)
    assert current_entry() is None
    token = otel_context.attach(kept)
    try:
        assert current_session_id() == "kept"
    finally:
        otel_context.detach(token)


def test_push_with_a_span_makes_it_current_and_pop_puts_the_old_one_back():
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    before = trace.get_current_span()
    token = push(frame("s"), owner="step", span=span)
    assert trace.get_current_span() is span
    pop(token)
    assert trace.get_current_span() is before


def test_hold_keeps_an_entry_beside_a_replaced_context_until_released():
    entry = loose(frame("request"), owner="request")
    token = hold(entry)
    try:
        # Instrumentation attaches a fresh context: the held entry is still found.
        replaced = otel_context.attach(otel_context.Context())
        assert current_session_id() == "request"
        otel_context.detach(replaced)
    finally:
        release(token)
    assert current_session_id() is None


def test_set_session_handles_and_blocks_follow_the_same_rule():
    with using_session("block"):
        handle = set_session("hook")
        assert current_session_id() == "hook"
    # Leaving the block took the handle's push with it; restoring it now has nothing to undo.
    assert current_session_id() is None
    before = otel_context.get_current()
    handle.restore()
    assert otel_context.get_current() is before
    # A handle restored inside a block opened after it would end the block: it refuses.
    handle = set_session("hook")
    with using_session("inner"):
        with pytest.raises(RuntimeError, match="a block opened after it and still open"):
            handle.restore()
        assert current_session_id() == "inner"
    handle.restore()
    assert current_session_id() is None


PUBLIC_API_RUN = textwrap.dedent(
    """
    import threading
    from opentelemetry import context as otel_context
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    class OtherRuntime(ContextVarsRuntimeContext):
        "A runtime context sessiontrace does not know: it must use the public API."

    otel_context._RUNTIME_CONTEXT = OtherRuntime()

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import sessiontrace
    from sessiontrace import _context

    assert _context._VARIABLE is None, "the private fast path was taken"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(sessiontrace.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with sessiontrace.using_session("chat-1"), sessiontrace.using_user("ada"):
        tracer.start_span("inside").end()
        handle = sessiontrace.set_session("hook")
        assert sessiontrace.current_session_id() == "hook"
        handle.restore()
        assert sessiontrace.current_session_id() == "chat-1"
        with sessiontrace.SessionTracker("run-1") as tracker:
            with tracker.step("plan"):
                tracker.set_state("k", 1)
                tracer.start_span("in step").end()
    assert sessiontrace.current_session_id() is None
    spans = {span.name: dict(span.attributes) for span in exporter.get_finished_spans()}
    assert spans["inside"]["session.id"] == "chat-1", spans
    assert spans["inside"]["user.id"] == "ada", spans
    assert spans["in step"]["session.id"] == "run-1", spans
    assert spans["in step"]["sessiontrace.step.index"] == 0, spans
    print("public API path ok")
    """
)


def test_with_another_runtime_context_the_public_api_path_works():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SESSIONTRACE_"))}
    result = subprocess.run(
        [sys.executable, "-c", PUBLIC_API_RUN],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "public API path ok" in result.stdout


# --- the one rule, against a model ---------------------------------------------------------

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), st.integers(0, 2)),  # `with scopes[i]:` opens
        st.tuples(st.just("leave"), st.just(0)),  # the innermost `with` closes
        st.tuples(st.just("set"), st.integers(0, 2)),  # set_session(f"hook-{i}")
        st.tuples(st.just("restore"), st.integers(0, 5)),  # handles[i % len].restore()
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_any_mix_of_blocks_and_handles_follows_the_one_rule(operations):
    """Blocks, re-entered scopes and set_session handles, in any order, against a model stack.

    The model: each push adds (owner, session) on top; leaving a block takes its entry and
    everything above it; a handle restores the same way, unless a block opened after it is
    still open (then it raises and nothing changes); undoing what is no longer in force
    changes nothing.
    """
    scopes = [using_session(f"scope-{i}") for i in range(3)]
    model: list[tuple[object, str]] = []
    open_blocks: list[object] = []  # `with` blocks not left yet, innermost last
    handles: list[tuple[object, object]] = []  # (handle, its model owner)
    before = otel_context.get_current()
    try:
        for operation, index in operations:
            if operation == "enter":
                scope = scopes[index]
                scope.__enter__()
                token = object()  # this block's own place in the model
                model.append((token, f"scope-{index}"))
                open_blocks.append((scope, token))
            elif operation == "leave" and open_blocks:
                scope, token = open_blocks.pop()
                scope.__exit__(None, None, None)
                places = [owner for owner, _ in model]
                if token in places:
                    del model[places.index(token) :]
            elif operation == "set":
                handle = set_session(f"hook-{index}")
                token = object()
                model.append((token, f"hook-{index}"))
                handles.append((handle, token))
            elif operation == "restore" and handles:
                handle, token = handles[index % len(handles)]
                places = [owner for owner, _ in model]
                unchanged = otel_context.get_current()
                if token not in places:
                    handle.restore()  # type: ignore[attr-defined]  # already undone: no-op
                    assert otel_context.get_current() is unchanged
                elif any(t in {b for _, b in open_blocks} for t in places[places.index(token) :]):
                    # A `with` block opened after the handle is still open: it would end it
                    # too, so the handle refuses, and nothing changes.
                    with pytest.raises(RuntimeError, match="a block opened after it"):
                        handle.restore()  # type: ignore[attr-defined]
                    assert otel_context.get_current() is unchanged
                else:
                    handle.restore()  # type: ignore[attr-defined]
                    del model[places.index(token) :]
            expected = model[-1][1] if model else None
            assert current_session_id() == expected, (operation, index, model)
    finally:
        otel_context.attach(before)
