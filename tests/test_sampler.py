"""_sampler: whole sessions kept or dropped, in threads, tasks and other processes; by env too."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sessiontrace import (
    ContextThreadPoolExecutor,
    SessionSampler,
    SessionSpanProcessor,
    configure,
    using_session,
    without_session,
)
from sessiontrace._context import pop, push, stacked
from sessiontrace._frames import Frame, merge
from sessiontrace._guard import reset_reported, set_strict
from sessiontrace._sampler import _said, sampler_from_argument, session_hash

SESSIONS = [f"conversation-{n:04d}" for n in range(400)]
TRACES_PER_SESSION = 3
LOW_64 = (1 << 64) - 1


class Recorded:
    """A provider of the test's own with ``sampler``, stamping sessions, keeping spans in memory."""

    def __init__(self, sampler: SessionSampler) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
        self.provider.add_span_processor(SessionSpanProcessor(dialects="openinference"))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests.sampler")

    def one_trace(self) -> None:
        with self.tracer.start_as_current_span("turn"):
            with self.tracer.start_as_current_span("llm"):
                pass

    def by_session(self) -> dict[str, list]:
        spans: dict[str, list] = defaultdict(list)
        for span in self.exporter.get_finished_spans():
            spans[span.attributes["session.id"]].append(span)
        return spans


def run_in_threads(recorded: Recorded) -> None:
    """Each session entered here; each of its traces runs in a pool thread, carried there."""
    with ContextThreadPoolExecutor(max_workers=8) as pool:
        futures = []
        for session_id in SESSIONS:
            with using_session(session_id):
                futures += [pool.submit(recorded.one_trace) for _ in range(TRACES_PER_SESSION)]
        for future in futures:
            future.result()


def run_in_tasks(recorded: Recorded) -> None:
    """Each session a task; each of its traces a task of its own, started inside it."""

    async def one_trace() -> None:
        with recorded.tracer.start_as_current_span("turn"):
            await asyncio.sleep(0)
            with recorded.tracer.start_as_current_span("llm"):
                await asyncio.sleep(0)

    async def one_session(session_id: str) -> None:
        with using_session(session_id):
            traces = [asyncio.create_task(one_trace()) for _ in range(TRACES_PER_SESSION)]
            await asyncio.gather(*traces)

    async def everything() -> None:
        await asyncio.gather(*(one_session(session_id) for session_id in SESSIONS))

    asyncio.run(everything())


def kept_sessions(recorded: Recorded, sampler: SessionSampler) -> set[str]:
    """The sessions kept; fails if a session was split or a child did not follow its root."""
    kept = set()
    for session_id, spans in recorded.by_session().items():
        roots = [span for span in spans if span.parent is None]
        children = [span for span in spans if span.parent is not None]
        assert len(roots) == TRACES_PER_SESSION, f"{session_id} was split: {len(roots)} roots"
        assert sorted(c.context.trace_id for c in children) == sorted(
            r.context.trace_id for r in roots
        ), f"{session_id}: a child did not follow its root"
        assert all(child.parent.span_id in {r.context.span_id for r in roots} for child in children)
        kept.add(session_id)
    assert kept == {session_id for session_id in SESSIONS if sampler.keeps(session_id)}
    return kept


@pytest.mark.parametrize("run", [run_in_threads, run_in_tasks], ids=["threads", "tasks"])
@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_whole_sessions_are_kept_about_ratio_of_them(run, ratio):
    sampler = SessionSampler(ratio)
    recorded = Recorded(sampler)
    run(recorded)
    kept = len(kept_sessions(recorded, sampler))
    expected = len(SESSIONS) * ratio
    assert abs(kept - expected) <= 4 * math.sqrt(expected * (1 - ratio)), kept
    if run is run_in_tasks:  # one thread: the counts are exact
        assert sampler.counts() == {
            "kept": kept * TRACES_PER_SESSION,
            "dropped": (len(SESSIONS) - kept) * TRACES_PER_SESSION,
        }


@pytest.mark.parametrize("ratio, expected", [(0, 0), (0.0, 0), (1, 400), (1.0, 400)])
def test_ratio_zero_keeps_no_session_and_one_keeps_every_session(ratio, expected):
    sampler = SessionSampler(ratio)
    recorded = Recorded(sampler)
    run_in_threads(recorded)
    assert len(kept_sessions(recorded, sampler)) == expected


def test_another_process_makes_the_same_decisions():
    sampler = SessionSampler(0.25)
    recorded = Recorded(sampler)
    run_in_tasks(recorded)
    here = sorted(kept_sessions(recorded, sampler))
    script = textwrap.dedent(
        """
        import json, sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import sessiontrace

        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sessiontrace.SessionSampler(0.25))
        provider.add_span_processor(sessiontrace.SessionSpanProcessor())
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("child")
        for session_id in json.load(sys.stdin):
            with sessiontrace.using_session(session_id), tracer.start_as_current_span("turn"):
                pass
        kept = {span.attributes["session.id"] for span in exporter.get_finished_spans()}
        print(json.dumps(sorted(kept)))
        """
    )
    # Another hash seed than this process's: Python's hash() would decide differently.
    environment = {**os.environ, "PYTHONHASHSEED": "1234"}
    child = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(SESSIONS),
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=60,
    )
    assert json.loads(child.stdout) == here
    assert 0 < len(here) < len(SESSIONS)


def test_the_hash_is_blake2b_so_it_can_be_computed_anywhere():
    # The first 8 bytes of BLAKE2b-512 of the UTF-8 bytes, big-endian: pinned, so a change of
    # rule (which would split sessions across versions) is seen.
    digest = hashlib.blake2b(b"chat-42").digest()
    assert session_hash("chat-42") == int.from_bytes(digest[:8], "big")
    assert session_hash("") == 0x786A02F742015903
    assert session_hash("\ud800") == session_hash("\ud800")  # a lone surrogate hashes too


def test_spans_outside_sessions_are_sampled_by_trace_id():
    sampler = SessionSampler(0.5)
    tracer = Recorded(sampler).tracer
    reference = TraceIdRatioBased(0.5)
    decisions = []
    for _ in range(1000):
        span = tracer.start_span("background")
        trace_id = span.get_span_context().trace_id
        expected = reference.should_sample(None, trace_id, "background").decision
        assert span.is_recording() == (expected is Decision.RECORD_AND_SAMPLE)
        assert span.is_recording() == ((trace_id & LOW_64) < (1 << 63))
        decisions.append(span.is_recording())
        span.end()
    assert 400 < sum(decisions) < 600
    with using_session(SESSIONS[0]), without_session():  # a block that clears the session
        spans = [tracer.start_span("cleared") for _ in range(200)]
    assert {span.is_recording() for span in spans} == {True, False}


@pytest.mark.parametrize("key", ["session.id", "gen_ai.conversation.id", "langfuse.session.id"])
def test_a_session_named_in_the_start_attributes_decides_when_none_is_in_force(key):
    sampler = SessionSampler(0.5)
    tracer = Recorded(sampler).tracer
    for session_id in SESSIONS[:100]:
        spans = [tracer.start_span("turn", attributes={key: session_id}) for _ in range(3)]
        assert [span.is_recording() for span in spans] == [sampler.keeps(session_id)] * 3
    number = tracer.start_span("turn", attributes={key: 4321})  # a whole number, as the store
    assert number.is_recording() == sampler.keeps("4321")


def test_the_session_in_force_wins_over_the_attributes():
    sampler = SessionSampler(0.5)
    tracer = Recorded(sampler).tracer
    kept = next(s for s in SESSIONS if sampler.keeps(s))
    dropped = next(s for s in SESSIONS if not sampler.keeps(s))
    with using_session(dropped):
        assert not tracer.start_span("turn", attributes={"session.id": kept}).is_recording()


def test_the_parent_context_passed_decides_not_the_current_one():
    sampler = SessionSampler(0.5)
    kept = next(s for s in SESSIONS if sampler.keeps(s))
    dropped = next(s for s in SESSIONS if not sampler.keeps(s))
    context = stacked(merge(None, session_id=kept), "test", Context())
    with using_session(dropped):
        decision = sampler.should_sample(context, 1 << 70, "turn").decision
        assert decision is Decision.RECORD_AND_SAMPLE
        assert sampler.should_sample(None, 1 << 70, "turn").decision is Decision.DROP


def traceparent(flags: str) -> Context:
    header = f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"
    return TraceContextTextMapPropagator().extract({"traceparent": header})


@pytest.mark.parametrize("flags, sampled", [("01", True), ("00", False)])
def test_a_remote_parents_decision_is_respected(flags, sampled):
    sampler = SessionSampler(0.5)
    recorded = Recorded(sampler)
    against = next(s for s in SESSIONS if sampler.keeps(s) != sampled)  # the session disagrees
    with using_session(against):
        with recorded.tracer.start_as_current_span("request", context=traceparent(flags)) as span:
            assert span.is_recording() == sampled
            assert span.get_span_context().trace_flags.sampled == sampled
            with recorded.tracer.start_as_current_span("llm") as child:
                assert child.is_recording() == sampled
    assert len(recorded.exporter.get_finished_spans()) == (2 if sampled else 0)


def test_a_local_parent_outside_the_session_decides_for_its_children():
    sampler = SessionSampler(0.5)
    tracer = Recorded(sampler).tracer
    kept = next(s for s in SESSIONS if sampler.keeps(s))
    for _ in range(50):
        with tracer.start_as_current_span("background") as parent, using_session(kept):
            assert tracer.start_span("child").is_recording() == parent.is_recording()


def test_a_sampled_span_keeps_its_start_attributes_and_the_parents_trace_state():
    sampler = SessionSampler(1)
    tracer = Recorded(sampler).tracer
    with using_session("chat-1"):
        span = tracer.start_span("turn", attributes={"app.step": "plan"})
    assert span.attributes["app.step"] == "plan"
    header = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=value",
    }
    context = TraceContextTextMapPropagator().extract(header)
    child = tracer.start_span("request", context=context)
    assert child.get_span_context().trace_state.get("vendor") == "value"


@pytest.mark.parametrize(
    "ratio, error, says",
    [
        (True, TypeError, "bool"),
        ("0.5", TypeError, "str"),
        (None, TypeError, "NoneType"),
        (-0.1, ValueError, "-0.1"),
        (1.5, ValueError, "1.5"),
        (float("nan"), ValueError, "nan"),
    ],
)
def test_a_bad_ratio_is_refused_at_the_call(ratio, error, says):
    with pytest.raises(
        error, match=r"SessionSampler\(ratio=\.\.\.\) must be .*from 0 to 1"
    ) as info:
        SessionSampler(ratio)
    assert says in str(info.value)


def test_it_describes_itself_as_the_sdks_samplers_do():
    assert SessionSampler(0.25).get_description() == "SessionSampler{0.25}"
    assert SessionSampler(1).get_description() == "SessionSampler{1.0}"
    assert repr(SessionSampler(0.5)) == "SessionSampler(0.5)"


@settings(max_examples=300, deadline=None)
@given(session_id=st.text(st.characters(exclude_categories=()) | st.characters(categories=["Cs"])))
@example(session_id="")
@example(session_id="\ud800")
@example(session_id="\udfff\ud83d")
def test_any_session_id_text_never_raises(session_id):
    sampler = SessionSampler(0.5)
    keeps = sampler.keeps(session_id)
    by_attribute = sampler.should_sample(None, 7, "turn", attributes={"session.id": session_id})
    context = stacked(Frame(session_id, None, {}, ()), "test", Context())
    by_frame = sampler.should_sample(context, 7, "turn")
    assert (by_frame.decision is Decision.RECORD_AND_SAMPLE) == keeps
    if session_id:  # an empty attribute names no session: the trace id (7) decides, keeping it
        assert (by_attribute.decision is Decision.RECORD_AND_SAMPLE) == keeps
    else:
        assert by_attribute.decision is Decision.RECORD_AND_SAMPLE


def test_an_internal_error_falls_back_to_the_trace_id_and_is_logged_once(caplog):
    sampler = SessionSampler(0.5)
    broken = stacked(Frame(12345, None, {}, ()), "test", Context())
    with pytest.raises(AttributeError):  # strict mode, as in every test: our bugs surface
        sampler.should_sample(broken, 1, "turn")
    reset_reported()
    strict = set_strict(False)
    try:
        with caplog.at_level(logging.ERROR, logger="sessiontrace"):
            low = sampler.should_sample(broken, 1, "turn")
            high = sampler.should_sample(broken, LOW_64, "turn")
    finally:
        set_strict(strict)
        reset_reported()
    assert low.decision is Decision.RECORD_AND_SAMPLE and high.decision is Decision.DROP
    errors = [r for r in caplog.records if "SessionSampler.should_sample" in r.getMessage()]
    assert len(errors) == 1


@pytest.mark.parametrize(
    "argument, ratio, warns",
    [
        ("0.25", 0.25, False),
        (" 1 ", 1.0, False),
        (None, 1.0, False),
        ("", 1.0, False),
        ("lots", 1.0, True),
        ("1.5", 1.0, True),
        ("nan", 1.0, True),
        ("-1", 1.0, True),
    ],
)
def test_the_entry_points_argument_warns_and_keeps_everything_when_bad(
    argument, ratio, warns, caplog
):
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        sampler = sampler_from_argument(argument)
    assert sampler.ratio == ratio
    assert any("OTEL_TRACES_SAMPLER_ARG" in r.getMessage() for r in caplog.records) == warns


def test_the_entry_point_is_installed():
    from importlib.metadata import entry_points

    (point,) = entry_points(group="opentelemetry_traces_sampler", name="sessiontrace")
    assert point.load() is sampler_from_argument


CHILD = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    import sessiontrace

    how = sys.argv[1]
    if how == "configure":
        provider = sessiontrace.configure(store_path=sys.argv[2])
    elif how == "configurator":  # what opentelemetry-instrument does with a distro installed
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
        _OTelSDKConfigurator().configure()
        provider = trace.get_tracer_provider()
    else:
        provider = TracerProvider()
    sampler = provider.sampler
    tracer = provider.get_tracer("child")
    kept = []
    for n in range(200):
        with sessiontrace.using_session(f"chat-{n}"):
            kept.append([tracer.start_span("turn").is_recording() for _ in range(3)])
    agrees = isinstance(sampler, sessiontrace.SessionSampler) and all(
        k == [sampler.keeps(f"chat-{n}")] * 3 for n, k in enumerate(kept)
    )
    print(json.dumps({"description": sampler.get_description(), "agrees": agrees,
                      "kept": sum(k[0] for k in kept)}))
    """
)


def run_child(how: str, tmp_path, **variables: str) -> tuple[dict, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SESSIONTRACE_"))
    }
    environment.update(
        OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none"
    )
    environment.update(variables)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, how, str(tmp_path / "sessions.db")],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=60,
        cwd=tmp_path,
    )
    return json.loads(child.stdout), child.stderr


@pytest.mark.parametrize("how", ["configure", "configurator"])
def test_otel_traces_sampler_selects_it_with_no_code(how, tmp_path):
    result, log = run_child(
        how, tmp_path, OTEL_TRACES_SAMPLER="sessiontrace", OTEL_TRACES_SAMPLER_ARG="0.25"
    )
    assert result["description"] == "SessionSampler{0.25}"
    assert result["agrees"]
    assert abs(result["kept"] - 50) <= 4 * math.sqrt(200 * 0.25 * 0.75)
    assert "WARNING:sessiontrace" not in log


def test_importing_sessiontrace_with_the_sampler_selected_logs_nothing(tmp_path):
    _, log = run_child(
        "configure", tmp_path, OTEL_TRACES_SAMPLER="sessiontrace", OTEL_TRACES_SAMPLER_ARG="0.25"
    )
    assert "WARNING" not in log and "Couldn't recognize sampler" not in log


@pytest.mark.parametrize("variable", ["always_off", "traceidratio"])
def test_the_start_up_self_tests_ignore_the_applications_sampler(variable):
    # Both probes make spans of their own; sampled out, they would turn the fast paths off.
    code = (
        "from sessiontrace import _reservation, _spans; "
        "print(_reservation.SCOPED, _spans.FAST_READ)"
    )
    env = {**os.environ, "OTEL_TRACES_SAMPLER": variable, "OTEL_TRACES_SAMPLER_ARG": "0.0"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=True)  # fmt: skip
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("how", ["configure", "configurator"])
def test_a_bad_sampler_arg_warns_and_keeps_every_session(how, tmp_path):
    result, log = run_child(
        how, tmp_path, OTEL_TRACES_SAMPLER="sessiontrace", OTEL_TRACES_SAMPLER_ARG="a quarter"
    )
    assert result == {"description": "SessionSampler{1.0}", "agrees": True, "kept": 200}
    assert "OTEL_TRACES_SAMPLER_ARG='a quarter' is not a number from 0 to 1" in log


def test_a_plain_tracer_provider_does_not_load_sampler_entry_points(tmp_path):
    # The SDK's TracerProvider() knows only its own samplers: it warns and keeps everything.
    # configure() or the configurator (above) are the no-code ways; docs/sampling.md says so.
    result, log = run_child(
        "plain", tmp_path, OTEL_TRACES_SAMPLER="sessiontrace", OTEL_TRACES_SAMPLER_ARG="0.25"
    )
    assert result["description"].startswith("ParentBased{root:AlwaysOnSampler")
    assert "Couldn't recognize sampler sessiontrace" in log


def test_other_samplers_in_the_environment_are_left_to_the_sdk(tmp_path):
    result, _ = run_child(
        "configure", tmp_path, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5"
    )
    assert result["description"] == "TraceIdRatioBased{0.5}"


def test_configure_keeps_a_given_providers_sampler_and_says_so(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sessiontrace")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    _said.forget()
    given = TracerProvider(sampler=TraceIdRatioBased(0.5), shutdown_on_exit=False)
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        configure(tracer_provider=given, exporters=[InMemorySpanExporter()], propagate=False)
    given.shutdown()
    assert given.sampler.get_description() == "TraceIdRatioBased{0.5}"
    assert any("SessionSampler(ratio)" in r.getMessage() for r in caplog.records)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)  # the global one untouched

    caplog.clear()
    _said.forget()
    ours = TracerProvider(sampler=SessionSampler(0.25), shutdown_on_exit=False)
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        configure(tracer_provider=ours, exporters=[InMemorySpanExporter()], propagate=False)
    ours.shutdown()
    assert not caplog.records


def test_a_frame_pushed_in_this_context_decides():
    sampler = SessionSampler(0.5)
    kept = next(s for s in SESSIONS if sampler.keeps(s))
    token = push(merge(None, session_id=kept), owner="test")
    try:
        assert sampler.should_sample(None, LOW_64, "turn").decision is Decision.RECORD_AND_SAMPLE
    finally:
        pop(token)
