"""update_current_trace(): the session set after the trace started reaches every span of it."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import threading
from collections import defaultdict

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sessiontrace
from sessiontrace import (
    ContextThreadPoolExecutor,
    SessionBaggagePropagator,
    _late_binding,
    carrier,
    observe,
    update_current_trace,
    using_session,
)
from sessiontrace._late_binding import BindAtExport
from sessiontrace.store import SessionStore


@pytest.fixture(autouse=True)
def _fresh_bindings():
    _late_binding.bindings.clear()
    yield
    _late_binding.bindings.clear()


def by_name(spans):
    return {span.name: dict(span.attributes or {}) for span in spans}


def test_the_root_and_open_parents_are_stamped_from_deep_inside(spans, tracer):
    with tracer.start_as_current_span("root"), tracer.start_as_current_span("parent"):
        with tracer.start_as_current_span("deep"):
            result = update_current_trace(
                session_id="chat-42", user_id="ada", metadata={"plan": "pro"}, tags=["beta"]
            )
    found = by_name(spans.all())
    for name in ("root", "parent", "deep"):
        assert found[name]["session.id"] == "chat-42"
        assert found[name]["langfuse.session.id"] == "chat-42"  # every dialect the processor writes
        assert found[name]["user.id"] == "ada"
        assert json.loads(found[name]["metadata"]) == {"plan": "pro"}
        assert found[name]["langfuse.trace.metadata.plan"] == '"pro"'
        assert found[name]["tag.tags"] == ("beta",)
    assert result.bound and result.stamped_open == 3
    assert result.trace_id == format(spans.named("root").context.trace_id, "032x")
    assert result.already_exported == 0 and result.pending_export == 0


def test_children_started_after_the_call_are_stamped(spans, tracer):
    with tracer.start_as_current_span("root"):
        update_current_trace(session_id="chat-42")
        with tracer.start_as_current_span("child"), tracer.start_as_current_span("grandchild"):
            pass
        tracer.start_span("explicit child").end()
    assert {name: a.get("session.id") for name, a in by_name(spans.all()).items()} == {
        "root": "chat-42",
        "child": "chat-42",
        "grandchild": "chat-42",
        "explicit child": "chat-42",
    }


def test_other_traces_are_untouched(spans, tracer):
    with tracer.start_as_current_span("bound"):
        update_current_trace(session_id="chat-42")
    with tracer.start_as_current_span("other trace"):
        pass
    assert "session.id" not in spans.attributes("other trace")


def test_values_in_force_and_instrumentation_keys_are_kept(spans, tracer):
    with tracer.start_as_current_span("root", attributes={"user.id": "from-instrumentation"}):
        with using_session("in-force"), tracer.start_as_current_span("scoped"):
            update_current_trace(session_id="late", user_id="ada")
            with tracer.start_as_current_span("scoped child"):
                pass
    found = by_name(spans.all())
    assert found["root"]["session.id"] == "late"
    assert found["root"]["user.id"] == "from-instrumentation"
    assert found["scoped"]["session.id"] == found["scoped child"]["session.id"] == "in-force"
    assert found["scoped child"]["user.id"] == "ada"  # what is not in force, the binding fills


def test_a_second_call_merges(spans, tracer):
    with tracer.start_as_current_span("root"):
        update_current_trace(session_id="chat-42", metadata={"a": 1}, tags=["x"])
        update_current_trace(user_id="ada", metadata={"b": 2}, tags=["y"])
        with tracer.start_as_current_span("child"):
            pass
    child = spans.attributes("child")
    assert child["session.id"] == "chat-42" and child["user.id"] == "ada"
    assert json.loads(child["metadata"]) == {"a": 1, "b": 2}
    assert child["tag.tags"] == ("x", "y")
    root = spans.attributes("root")
    assert root["user.id"] == "ada"  # a key the root lacked is added by the second call


def test_outgoing_calls_carry_the_binding(tracer):
    with tracer.start_as_current_span("root"):
        update_current_trace(session_id="chat-42", user_id="ada", tags=["beta"])
        headers: dict[str, str] = {}
        SessionBaggagePropagator().inject(headers)
        carried = carrier()
        with using_session("in-force"):
            assert carrier()["session_id"] == "in-force"
    assert headers["baggage"] == "session.id=chat-42,user.id=ada"
    assert carried["session_id"] == "chat-42" and carried["tags"] == '["beta"]'
    assert "traceparent" in carried
    assert "session_id" not in carrier()  # outside the trace, nothing


def test_threads_carrying_the_context_share_the_binding(spans, tracer):
    started = threading.Barrier(4)
    release = threading.Event()

    def open_while_bound(index: int) -> None:
        with tracer.start_as_current_span(f"open {index}"):
            started.wait(5)
            release.wait(5)

    def after(index: int) -> None:
        with tracer.start_as_current_span(f"after {index}"):
            pass

    with tracer.start_as_current_span("root"), ContextThreadPoolExecutor(4) as pool:
        running = [pool.submit(open_while_bound, index) for index in range(3)]
        started.wait(5)
        result = update_current_trace(session_id="chat-42")
        release.set()
        [future.result() for future in running]
        list(pool.map(after, range(3)))
        wrapped = threading.Thread(target=sessiontrace.wrap(after), args=(9,))
        wrapped.start()
        wrapped.join()
    assert result.stamped_open == 4  # the root and three spans open in other threads
    found = by_name(spans.all())
    assert len(found) == 8
    assert {a.get("session.id") for a in found.values()} == {"chat-42"}


def test_asyncio_tasks_share_the_binding(spans, tracer):
    async def task(name: str, wait: asyncio.Event | None = None) -> None:
        with tracer.start_as_current_span(name):
            if wait is not None:
                await wait.wait()

    async def main() -> int:
        bound = asyncio.Event()
        with tracer.start_as_current_span("root"):
            early = asyncio.create_task(task("early task", bound))
            await asyncio.sleep(0)  # its span is open
            result = update_current_trace(session_id="chat-42")
            bound.set()
            await asyncio.gather(early, task("later task"))
        return result.stamped_open

    assert asyncio.run(main()) == 2
    assert {a.get("session.id") for a in by_name(spans.all()).values()} == {"chat-42"}


def test_langfuse_pattern_from_parallel_threads_loses_no_session(spans):
    # onyx 14143 / langfuse 8262: the session set inside @observe() was lost on the spans
    # of work fanned out to threads. Eight requests at once, each fanning out to four tools,
    # one of them started before the session is known and still running when it is set.
    @observe()
    def tool(step: int, bound: threading.Event | None = None) -> int:
        with sessiontrace.observe("tool inner"):
            if bound is not None:
                assert bound.wait(5)
            return step

    @observe()
    def handle(request: int) -> list[int]:
        bound = threading.Event()
        with ContextThreadPoolExecutor(4) as pool:
            early = pool.submit(tool, -1, bound)  # opens its spans before the binding
            update_current_trace(session_id=f"request-{request}", user_id=f"user-{request}")
            bound.set()
            return [early.result(), *pool.map(tool, range(3))]

    with ContextThreadPoolExecutor(8) as requests:
        list(requests.map(handle, range(8)))
    traces = defaultdict(set)
    for span in spans.all():
        attributes = span.attributes or {}
        traces[span.context.trace_id].add(
            (attributes.get("session.id"), attributes.get("user.id"))
        )
    assert len(spans.all()) == 8 * (1 + 4 * 2)
    assert len(traces) == 8
    sessions = set()
    for values in traces.values():
        assert len(values) == 1, values  # one session and user on every span of the trace
        ((session, user),) = values
        assert session is not None and user == session.replace("request", "user")
        sessions.add(session)
    assert len(sessions) == 8


class Gate(SpanExporter):
    """An exporter that holds its first export until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.spans: list[ReadableSpan] = []

    def export(self, spans):
        self.entered.set()
        self.release.wait(10)
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        self.release.set()


def test_spans_still_queued_for_export_are_stamped_on_the_way_out():
    gate = Gate()
    provider = sessiontrace.configure(
        tracer_provider=TracerProvider(), store=False, exporters=[gate], dialects="all"
    )
    try:
        tracer = provider.get_tracer("tests")
        tracer.start_span("other trace").end()
        assert gate.entered.wait(5)  # the worker is held inside that batch's export
        with tracer.start_as_current_span("root"):
            with tracer.start_as_current_span("ended early"):
                pass  # queued behind the held batch
            result = update_current_trace(session_id="chat-42", tags=["late"])
        gate.release.set()
        assert provider.force_flush(5000)
    finally:
        provider.shutdown()
    assert (result.stamped_open, result.pending_export, result.already_exported) == (1, 1, 0)
    found = by_name(gate.spans)
    assert found["ended early"]["session.id"] == "chat-42"
    assert found["ended early"]["langfuse.session.id"] == "chat-42"  # configure's dialects
    assert found["ended early"]["tag.tags"] == ("late",)
    assert found["root"]["session.id"] == "chat-42"
    assert "session.id" not in found["other trace"]


def test_spans_already_exported_are_counted_and_the_rest_reach_the_store(tmp_path):
    memory = InMemorySpanExporter()
    provider = sessiontrace.configure(
        tracer_provider=TracerProvider(), store_path=tmp_path / "s.db", exporters=[memory]
    )
    try:
        tracer = provider.get_tracer("tests")
        with tracer.start_as_current_span("root"):
            with tracer.start_as_current_span("gone"):
                pass
            with tracer.start_as_current_span("also gone"):
                pass
            assert provider.force_flush(5000)  # both left the export path, to both places
            result = update_current_trace(session_id="chat-42")
            with tracer.start_as_current_span("later"):
                pass
        assert provider.force_flush(5000)
    finally:
        provider.shutdown()
    assert (result.stamped_open, result.pending_export, result.already_exported) == (1, 0, 2)
    assert "2 span(s)" in result.reason
    found = by_name(memory.get_finished_spans())
    assert "session.id" not in found["gone"]
    assert found["root"]["session.id"] == found["later"]["session.id"] == "chat-42"
    with SessionStore(tmp_path / "s.db") as store:
        assert sorted(span.name for span in store.spans("chat-42")) == ["later", "root"]


def test_the_export_step_copies_only_spans_of_bound_traces_that_lack_the_keys(tracer, spans):
    with tracer.start_as_current_span("lacks"):
        pass
    own = {"session.id": "own", "gen_ai.conversation.id": "own"}
    with tracer.start_as_current_span("has", attributes=own):
        pass
    with tracer.start_as_current_span("unbound"):
        pass
    lacks, has, unbound = (spans.named(name) for name in ("lacks", "has", "unbound"))
    with _late_binding._lock:
        frame = _late_binding.merge(None, session_id="chat-42")
        _late_binding.bindings[lacks.context.trace_id] = frame
        _late_binding.bindings[has.context.trace_id] = frame
    step = BindAtExport(("openinference", "genai"))
    out = step([lacks, has, unbound])
    assert out[1] is has and out[2] is unbound
    assert out[0] is not lacks and out[0].attributes["gen_ai.conversation.id"] == "chat-42"
    assert "session.id" not in lacks.attributes  # the ended span itself never changes
    assert step.ledger.counts == {unbound.context.trace_id: 1}


@pytest.mark.parametrize(
    ("arguments", "error", "named"),
    [
        ({}, TypeError, "at least one"),
        ({"session_id": ""}, ValueError, "session_id"),
        ({"session_id": 42}, TypeError, "session_id"),
        ({"user_id": "a\nb"}, ValueError, "user_id"),
        ({"metadata": {"k": object()}}, TypeError, "metadata"),
        ({"metadata": ["k"]}, TypeError, "metadata"),
        ({"tags": "beta"}, TypeError, "tags"),
        ({"tags": ["ok", ""]}, ValueError, "tags[1]"),
    ],
)
def test_bad_arguments_raise_at_the_call_and_bind_nothing(tracer, spans, arguments, error, named):
    with tracer.start_as_current_span("root"):
        with pytest.raises(error, match=named.replace("[", r"\[")):
            update_current_trace(**arguments)
    assert "session.id" not in spans.attributes("root")
    assert not _late_binding.bindings


def test_no_current_span_binds_nothing_and_warns_once(caplog, spans, tracer):
    _late_binding._warn.forget()
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        first = update_current_trace(session_id="chat-42")
        second = update_current_trace(session_id="chat-42")
    assert first == second
    assert not first.bound and first.trace_id is None and first.stamped_open == 0
    assert "no current span" in first.reason
    assert [r.message.count("no current span") for r in caplog.records] == [1]
    with tracer.start_as_current_span("later"):
        pass
    assert "session.id" not in spans.attributes("later")


def test_memory_stays_bounded_after_ten_thousand_traces(tracer, spans):
    def kept() -> int:
        return sum(len(processor._open) for processor in list(_late_binding._processors))

    gc.collect()  # spans earlier tests dropped are not counted as kept by this one
    before = kept()
    for index in range(10_000):
        with tracer.start_as_current_span("request"):
            update_current_trace(session_id=f"s-{index}")
            with tracer.start_as_current_span("child"):
                pass
        if index % 1000 == 0:
            spans._exporter.clear()
    gc.collect()
    assert len(_late_binding.bindings) == _late_binding.MAX_BINDINGS
    assert kept() == before  # every span ended, so none is kept
    newest = next(reversed(_late_binding.bindings.values()))
    assert newest.session_id == "s-9999"


def test_spans_dropped_without_end_are_not_kept():
    processor = sessiontrace.SessionSpanProcessor()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("tests")
    kept = tracer.start_span("kept open")
    for index in range(1000):
        tracer.start_span(f"dropped {index}")  # never ended, and no longer referenced
    gc.collect()
    assert len(processor._open) == 1
    with trace.use_span(kept):
        assert update_current_trace(session_id="chat-42").stamped_open == 1
    kept.end()
    assert kept.attributes["session.id"] == "chat-42"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_binds_its_own_traces_and_not_the_parents(tracer):
    read, write = os.pipe()
    with tracer.start_as_current_span("parent root"):
        update_current_trace(session_id="parent-s")
        pid = os.fork()
        if pid == 0:  # the child
            try:
                with tracer.start_as_current_span("in the parent's trace") as inherited:
                    seen = dict(inherited.attributes).get("session.id")
                with tracer.start_as_current_span("child root") as root:
                    result = update_current_trace(session_id="child-s")
                    with tracer.start_as_current_span("child child") as child:
                        pass
                report = {
                    "inherited": seen,
                    "root": root.attributes.get("session.id"),
                    "child": child.attributes.get("session.id"),
                    "stamped": result.stamped_open,
                    "bindings": len(_late_binding.bindings),
                }
                os.write(write, json.dumps(report).encode())
            finally:
                os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    assert status == 0
    assert report == {
        "inherited": None,
        "root": "child-s",
        "child": "child-s",
        "stamped": 1,
        "bindings": 1,
    }
    assert len(_late_binding.bindings) == 1  # the parent's own binding is still there
