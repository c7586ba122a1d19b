"""Where values must survive: tasks, threads, executors, OpenTelemetry's own context use."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.threading import ThreadingInstrumentor

from sessiontrace import (
    ContextThreadPoolExecutor,
    current_session_id,
    using_attributes,
    using_session,
    wrap,
)


async def test_hundreds_of_concurrent_sessions_do_not_bleed(spans, tracer):
    async def conversation(index: int) -> list[str | None]:
        seen = []
        async with using_attributes(session_id=f"s-{index}", user_id=f"u-{index}"):
            for turn in range(3):
                with tracer.start_as_current_span(f"turn-{index}-{turn}"):
                    await asyncio.sleep(0)
                    seen.append(current_session_id())
        return seen

    results = await asyncio.gather(*(conversation(i) for i in range(300)))
    for index, seen in enumerate(results):
        assert seen == [f"s-{index}"] * 3
    finished = spans.all()
    assert len(finished) == 900
    for span in finished:
        index = span.name.split("-")[1]
        assert span.attributes["session.id"] == f"s-{index}"
        assert span.attributes["user.id"] == f"u-{index}"


async def test_create_task_inherits_the_session_and_keeps_its_own():
    async def child(own: str | None) -> tuple[str | None, str | None]:
        inherited = current_session_id()
        if own:
            with using_session(own):
                await asyncio.sleep(0)
                return inherited, current_session_id()
        await asyncio.sleep(0)
        return inherited, current_session_id()

    with using_session("parent"):
        first = asyncio.create_task(child("child-a"))
        second = asyncio.create_task(child(None))
    assert await first == ("parent", "child-a")
    assert await second == ("parent", "parent")
    assert current_session_id() is None


def test_plain_thread_does_not_inherit_but_wrap_carries(spans, tracer):
    seen: dict[str, str | None] = {}

    def work(label: str) -> None:
        seen[label] = current_session_id()
        with tracer.start_as_current_span(label):
            pass

    with using_session("threaded"):
        bare = threading.Thread(target=work, args=("bare",))
        carried = threading.Thread(target=wrap(work), args=("carried",))
    for thread in (bare, carried):
        thread.start()
        thread.join()
    assert seen == {"bare": None, "carried": "threaded"}
    assert spans.attributes("carried")["session.id"] == "threaded"
    assert "session.id" not in spans.attributes("bare")


def test_wrapped_function_in_many_threads_at_once():
    barrier = threading.Barrier(8)

    def work() -> str | None:
        barrier.wait()
        with using_session("inner"):
            pass
        return current_session_id()

    with using_session("captured"):
        wrapped = wrap(work)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: wrapped(), range(8)))
    assert results == ["captured"] * 8


def test_context_executor_carries_each_submitters_session(spans, tracer):
    def work(label: str) -> str | None:
        with tracer.start_as_current_span(label):
            return current_session_id()

    with ContextThreadPoolExecutor(max_workers=4) as pool:
        futures = []
        for index in range(20):
            with using_session(f"pool-{index}"):
                futures.append(pool.submit(work, f"job-{index}"))
        assert [f.result() for f in futures] == [f"pool-{i}" for i in range(20)]
        with using_session("mapped"):
            assert list(pool.map(lambda _: current_session_id(), range(3))) == ["mapped"] * 3
    for index in range(20):
        assert spans.attributes(f"job-{index}")["session.id"] == f"pool-{index}"


async def test_run_in_executor_with_wrap_or_context_executor():
    loop = asyncio.get_running_loop()
    with using_session("loop"):
        bare = await loop.run_in_executor(None, current_session_id)
        wrapped = await loop.run_in_executor(None, wrap(current_session_id))
        with ContextThreadPoolExecutor(max_workers=1) as pool:
            pooled = await loop.run_in_executor(pool, current_session_id)
        to_thread = await asyncio.to_thread(current_session_id)
    assert (bare, wrapped, pooled, to_thread) == (None, "loop", "loop", "loop")


@pytest.fixture
def threading_instrumented():
    instrumentor = ThreadingInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


def test_threading_instrumentation_carries_the_session(threading_instrumented, spans, tracer):
    seen: dict[str, str | None] = {}

    def work(label: str) -> None:
        seen[label] = current_session_id()
        with tracer.start_as_current_span(label):
            pass

    with using_session("instrumented"), tracer.start_as_current_span("request"):
        thread = threading.Thread(target=work, args=("thread",))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(work, "pool").result()
        thread = threading.Thread(target=wrap(work), args=("both",))
        thread.start()
        thread.join()
    assert seen == {"thread": "instrumented", "pool": "instrumented", "both": "instrumented"}
    request = spans.named("request").context.span_id
    for label in seen:
        assert spans.attributes(label)["session.id"] == "instrumented"
        assert spans.named(label).parent.span_id == request


def test_otel_attach_detach_inside_our_block_is_not_corrupted():
    key = otel_context.create_key("user-key")
    with using_session("ours"):
        token = otel_context.attach(otel_context.set_value(key, "theirs"))
        with using_session("nested"):
            assert otel_context.get_value(key) == "theirs"
        assert current_session_id() == "ours"
        otel_context.detach(token)
        assert otel_context.get_value(key) is None
        assert current_session_id() == "ours"


def test_our_block_inside_otel_attach_leaves_their_value():
    key = otel_context.create_key("user-key")
    token = otel_context.attach(otel_context.set_value(key, "theirs"))
    try:
        with using_session("ours"):
            assert otel_context.get_value(key) == "theirs"
        assert otel_context.get_value(key) == "theirs"
        assert current_session_id() is None
    finally:
        otel_context.detach(token)


def test_current_span_and_session_travel_together(spans, tracer):
    with tracer.start_as_current_span("outer") as outer, using_session("s"):
        assert trace.get_current_span() is outer
        with tracer.start_as_current_span("inner"):
            pass
    assert trace.get_current_span() is not outer
    assert spans.named("inner").parent.span_id == outer.get_span_context().span_id


def test_nested_functions_see_the_session(spans, tracer):
    def leaf() -> None:
        with tracer.start_as_current_span("leaf"):
            pass

    def middle() -> None:
        with tracer.start_as_current_span("middle"):
            leaf()

    with using_session("deep"):
        middle()
    assert spans.attributes("leaf")["session.id"] == "deep"
    assert spans.attributes("middle")["session.id"] == "deep"
