"""`sessiontrace doctor` and `diagnose()`, on sessions recorded with the real API.

Each bug is produced the way users produce it (a thread without the context, a root span
started before the block, a stream consumed after it, a session key set by hand), through a
private provider with the session processor and the SQLite exporter, and read back from the
file.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

import sessiontrace
from sessiontrace import _keys
from sessiontrace.cli import _doctor, main
from sessiontrace.store import (
    Diagnosis,
    SessionNotFoundError,
    SessionStore,
    SQLiteSpanExporter,
    diagnose,
)
from sessiontrace.store._doctor_scan import SessionSweep

LLM = {_keys.OI_SPAN_KIND: "LLM"}


@pytest.fixture
def tracer(db) -> Iterator[trace.Tracer]:
    """A private provider (not the suite's global one) that stamps and writes to ``db``."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(sessiontrace.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    yield provider.get_tracer("doctor-tests")
    provider.shutdown()


def run(*argv: str, stderr: io.StringIO | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), stderr or io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def doctor(db: Path, *argv: str) -> tuple[int, str, str]:
    return run("--store", str(db), "doctor", *argv)


def in_plain_thread(fn) -> None:
    """Run ``fn`` in a ``threading.Thread`` without ``wrap``: it starts with an empty context."""
    worker = threading.Thread(target=fn)
    worker.start()
    worker.join()


def check(db: Path, session_id: str) -> Diagnosis:
    with SessionStore(db) as store:
        return diagnose(store, session_id)


# --- the sessions --------------------------------------------------------------------------


def record_clean(tracer, session_id="clean"):
    with sessiontrace.using_session(session_id), tracer.start_as_current_span("agent"):
        with tracer.start_as_current_span("chat", attributes=LLM):
            pass


def record_thread(tracer, *, fixed=False):
    """A worker thread that gets the parent span but not the session (unless wrapped)."""
    with sessiontrace.using_session("threads"), tracer.start_as_current_span("agent") as parent:
        # What a thread handed only the span has: a context holding it and nothing else.
        parent_only = trace.set_span_in_context(parent, Context())

        def work():
            with tracer.start_as_current_span("worker", context=parent_only):
                with tracer.start_as_current_span("worker.step"):
                    pass

        in_plain_thread(sessiontrace.wrap(work) if fixed else work)


def record_late_block(tracer):
    """A request span started before the block, a span before the block, the session inside."""
    with tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("auth"):
            pass
        with sessiontrace.using_session("late"), tracer.start_as_current_span("agent"):
            with tracer.start_as_current_span("chat", attributes=LLM):
                pass


def record_stream(tracer, *, decorated=False):
    """A generator made inside the block and consumed after it, under the request span."""

    def chunks():
        with tracer.start_as_current_span("chat.stream", attributes=LLM):
            yield "Hel"
            yield "lo"

    if decorated:
        chunks = sessiontrace.using_session("streamy")(chunks)
    with tracer.start_as_current_span("POST /stream", kind=SpanKind.SERVER):
        with sessiontrace.using_session("streamy"), tracer.start_as_current_span("agent"):
            stream = chunks()
        assert "".join(stream) == "Hello"


def record_conflict(tracer):
    """A span given ``session.id`` by hand: the processor keeps it, so the dialects disagree."""
    with sessiontrace.using_session("mixed"), tracer.start_as_current_span("agent"):
        tracer.start_span("tagged", attributes={_keys.OI_SESSION_ID: "other"}).end()


def record_full(db: Path) -> None:
    """Spans that fill OpenTelemetry's attribute limit, without key reservation."""
    # Without reservation (reserve_keys=False) the SDK evicts the oldest attributes, the
    # stamped keys first.
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(sessiontrace.SessionSpanProcessor(reserve_keys=False))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    tracer = provider.get_tracer("t")
    with sessiontrace.using_session("full"), tracer.start_as_current_span("agent"):
        with tracer.start_as_current_span("chat") as span:
            # Two stamped keys + 127 = 129 of 128: session.id, the oldest, is evicted.
            for index in range(127):
                span.set_attribute(f"llm.input_messages.{index}", "x")
        with tracer.start_as_current_span("huge") as span:
            for index in range(200):  # both stamped keys are evicted
                span.set_attribute(f"llm.input_messages.{index}", "x")
    provider.shutdown()


def record_hand_keyed(tracer, session_id: str, *, under: str | None = None) -> None:
    """A span given only ``gen_ai.conversation.id`` by hand, outside any session block.

    Without ``under`` it is the root of a trace of its own; with it, it runs in a plain
    thread under an ``agent`` span of session ``under`` (so two sessions share the trace).
    """
    attributes = {_keys.GENAI_CONVERSATION_ID: session_id}
    if under is None:
        tracer.start_span("framework.turn", context=Context(), attributes=attributes).end()
        return
    with sessiontrace.using_session(under), tracer.start_as_current_span("agent") as parent:
        with tracer.start_as_current_span("chat", attributes=LLM):
            pass
        parent_only = trace.set_span_in_context(parent, Context())
        in_plain_thread(
            lambda: tracer.start_span(
                "framework.turn", context=parent_only, attributes=attributes
            ).end()
        )


def record_nested(tracer):
    """A block inside another's trace; a thread under the inner one loses its session."""
    with sessiontrace.using_session("outer"), tracer.start_as_current_span("agent"):
        with sessiontrace.using_session("inner"), tracer.start_as_current_span("sub") as sub:
            parent_only = trace.set_span_in_context(sub, Context())
            in_plain_thread(lambda: tracer.start_span("lost", context=parent_only).end())


def record_trackers(spans, db: Path) -> None:
    """Two SessionTracker runs, each with a sub-session; in ``run-lost`` a thread under the
    sub-session's step loses the session.

    A tracker's steps are traces of their own (a sub-session's too: it links to its parent's
    step), so here only the sub-session sees the problem. The tracker writes through the
    suite's global provider (every dialect): its spans are handed to the store's exporter
    afterwards.
    """
    tracer = trace.get_tracer("doctor-tests.tracker")
    for session_id in ("run-ok", "run-lost"):
        tracker = sessiontrace.SessionTracker(session_id, name="agent")
        with tracker:
            with tracker.step("plan"), tracer.start_as_current_span("chat", attributes=LLM):
                pass
            with (
                tracker.step("delegate"),
                tracker.child("researcher", session_id=f"{session_id}-child") as child,
                child.step("research"),
                tracer.start_as_current_span("search") as search,
            ):
                if session_id == "run-lost":
                    parent_only = trace.set_span_in_context(search, Context())
                    in_plain_thread(
                        lambda lost_in=parent_only: tracer.start_span("lost", context=lost_in).end()
                    )
    exporter = SQLiteSpanExporter(db)
    exporter.export(spans.all())
    exporter.shutdown()


# --- diagnose(): one cause per bug ----------------------------------------------------------


def test_a_clean_session_has_no_problems(tracer, db):
    record_clean(tracer)
    found = check(db, "clean")
    assert found == Diagnosis(session_id="clean", traces_checked=1, spans_checked=2, problems=())
    assert found.ok


def test_a_thread_without_context_is_named_with_the_wrap_fix(tracer, db):
    record_thread(tracer)
    (problem,) = check(db, "threads").problems
    assert (problem.kind, problem.cause) == ("unstamped_span", "thread without context")
    # The thread's own child inherits the cause: one problem, both spans.
    assert problem.span_names == ("worker", "worker.step")
    worker = problem.spans[0]
    assert (worker.parent_name, worker.scope, worker.session_keys) == ("agent", "doctor-tests", {})
    assert "sessiontrace.wrap(fn)" in problem.fix and "ContextThreadPoolExecutor" in problem.fix


def test_wrap_fixes_the_thread(tracer, db):
    record_thread(tracer, fixed=True)
    assert check(db, "threads").ok


def test_a_root_started_before_the_block_is_named(tracer, db):
    record_late_block(tracer)
    root, early = check(db, "late").problems
    assert (root.kind, root.cause, root.span_names) == (
        "unstamped_root",
        "span started outside the block",
        ("POST /chat",),
    )
    assert root.spans[0].parent_span_id is None
    assert "Langfuse" in root.description and "Phoenix" in root.description
    assert "using_session(...)" in root.fix and "whole request" in root.fix
    # The span that ran under the root before the block was entered, for the same reason.
    assert (early.kind, early.cause, early.span_names) == (
        "unstamped_span",
        "span started outside the block",
        ("auth",),
    )
    assert early.spans[0].parent_name == "POST /chat"


def test_a_stream_consumed_after_the_block_is_named(tracer, db):
    record_stream(tracer)
    root, stream = check(db, "streamy").problems
    assert root.kind == "unstamped_root"
    assert (stream.kind, stream.cause, stream.span_names) == (
        "unstamped_span",
        "stream consumed after the block",
        ("chat.stream",),
    )
    assert "@sessiontrace.using_session(...)" in stream.fix


def test_decorating_the_generator_fixes_the_stream(tracer, db):
    record_stream(tracer, decorated=True)
    (root,) = check(db, "streamy").problems  # only the request span, started before the block
    assert root.kind == "unstamped_root"


def test_a_session_key_set_by_hand_is_a_conflict_under_both_ids(tracer, db):
    record_conflict(tracer)
    (problem,) = check(db, "mixed").problems
    assert (problem.kind, problem.cause, problem.span_names) == (
        "conflicting_keys",
        "another writer set a session key",
        ("tagged",),
    )
    assert problem.spans[0].session_keys == {
        _keys.OI_SESSION_ID: "other",
        _keys.GENAI_CONVERSATION_ID: "mixed",
    }
    assert check(db, "other").problems == (problem,)


def test_a_key_written_without_sessiontrace_is_a_dropped_key(tracer, db):
    with sessiontrace.using_session("dropped"), tracer.start_as_current_span("agent") as parent:
        # Instrumentation that writes its own conversation id, in a thread without the session.
        parent_only = trace.set_span_in_context(parent, Context())
        in_plain_thread(
            lambda: tracer.start_span(
                "framework.turn",
                context=parent_only,
                attributes={_keys.GENAI_CONVERSATION_ID: "dropped"},
            ).end()
        )
    (problem,) = check(db, "dropped").problems
    assert (problem.kind, problem.cause) == ("dropped_keys", "keys written without sessiontrace")
    span = problem.spans[0]
    assert span.missing_keys == (_keys.OI_SESSION_ID,)
    assert span.session_keys == {_keys.GENAI_CONVERSATION_ID: "dropped"}


def test_keys_evicted_by_the_attribute_limit_are_named(db):
    record_full(db)
    found = check(db, "full")
    evicted, dropped = found.problems
    assert (evicted.kind, evicted.cause, evicted.span_names) == (
        "unstamped_span",
        "attribute limit reached",
        ("huge",),
    )
    assert (dropped.kind, dropped.cause, dropped.span_names) == (
        "dropped_keys",
        "attribute limit reached",
        ("chat",),
    )
    assert "reserve_keys=True" in dropped.fix


def test_a_problem_in_a_shared_trace_is_reported_under_the_session_that_lost_it(tracer, db):
    record_nested(tracer)
    assert check(db, "outer").ok
    assert check(db, "outer").traces_checked == 1
    (problem,) = check(db, "inner").problems
    assert problem.span_names == ("lost",)


def test_diagnose_raises_for_an_unknown_session(tracer, db):
    record_clean(tracer)
    with SessionStore(db) as store, pytest.raises(SessionNotFoundError):
        diagnose(store, "nope")


# --- every session at once: only the sessions the summaries do not clear are decoded ------

BROKEN = {
    "threads",  # a thread without context
    "late",  # a root and a span started before the block
    "streamy",  # a root before the block, a stream consumed after it
    "mixed",  # a span whose session.id names "other": a conflict under both ids...
    "other",  # ...though only "other" has the span in the sessions table
    "split",  # one trace stamped by sessiontrace, one with a key set by hand
    "guest",  # a key set by hand in "host"'s trace, where spans carry both keys
    "full",  # keys lost to the attribute limit
    "inner",  # a thread lost the session of a block nested in "outer"'s trace
    "run-lost-child",  # a thread lost the session of a tracker's sub-session
}
SHARING = {"host", "outer"}  # clean, in a trace with a broken session
CLEAN = {"a", "b", "c", "run-ok", "run-ok-child", "run-lost"}


@pytest.fixture
def mixed(tracer, db, spans) -> Path:
    """A store with clean sessions and one of each problem the doctor knows."""
    record_clean(tracer, "a")
    record_thread(tracer)
    record_late_block(tracer)
    record_stream(tracer)
    record_clean(tracer, "b")
    record_conflict(tracer)
    record_clean(tracer, "split")
    record_hand_keyed(tracer, "split")
    record_hand_keyed(tracer, "guest", under="host")
    record_full(db)
    record_nested(tracer)
    record_trackers(spans, db)
    record_clean(tracer, "c")
    return db


def one_by_one(db: Path) -> list[Diagnosis]:
    with SessionStore(db) as store:
        return [diagnose(store, summary.session_id) for summary in store.sessions()]


def swept(db: Path) -> tuple[list[Diagnosis], SessionSweep]:
    with SessionStore(db) as store:
        sweep = SessionSweep(store)
        return list(sweep), sweep


def test_every_session_at_once_equals_diagnosing_each_one(mixed):
    expected = one_by_one(mixed)
    # The store holds every kind of problem and every cause that comes with a span.
    problems = [problem for found in expected for problem in found.problems]
    assert {problem.kind for problem in problems} == {
        "unstamped_root",
        "unstamped_span",
        "dropped_keys",
        "conflicting_keys",
    }
    assert {problem.cause for problem in problems} == {
        "span started outside the block",
        "thread without context",
        "stream consumed after the block",
        "attribute limit reached",
        "keys written without sessiontrace",
        "another writer set a session key",
    }
    assert {found.session_id for found in expected if not found.ok} == BROKEN
    assert {found.session_id for found in expected} == BROKEN | SHARING | CLEAN
    at_once, sweep = swept(mixed)
    assert at_once == expected
    # Only the broken sessions and those sharing a trace with one were decoded.
    assert set(sweep.suspects) == BROKEN | SHARING


def test_doctor_prints_the_same_as_when_it_diagnosed_every_session(mixed, monkeypatch):
    fast = (doctor(mixed), doctor(mixed, "--json"))
    assert fast[0][0] == 1
    assert fast[0][1].endswith(
        "Checked 18 sessions (25 traces, 53 spans): 10 with problems, 13 problems in all.\n"
    )

    # --every-span decodes every session, as doctor did before it read the summaries.
    every = (doctor(mixed, "--every-span"), doctor(mixed, "--every-span", "--json"))
    assert every == fast


def write(db: Path, sql: str, *parameters: object) -> None:
    """Change the store behind the exporter's back (another program, a damaged file)."""
    with sqlite3.connect(db) as conn:
        conn.execute(sql, parameters)
    conn.close()


@pytest.mark.parametrize(
    "damage",
    [
        # Fewer traces in the session than its spans have.
        "UPDATE sessions SET trace_count = trace_count - 1 WHERE session_id = ?",
        # More spans in the session than in its traces.
        "UPDATE sessions SET span_count = span_count + 1 WHERE session_id = ?",
        # More spans in its traces than in the session.
        "UPDATE sessions SET span_count = span_count - 1 WHERE session_id = ?",
        # More traces in the session than its spans have.
        "UPDATE sessions SET trace_count = trace_count + 1 WHERE session_id = ?",
        # Stamped spans without a key bit.
        "UPDATE sessions SET key_mask_or = 0, key_mask_and = 0 WHERE session_id = ?",
    ],
)
def test_a_session_whose_summaries_disagree_is_decoded(tracer, db, damage):
    record_clean(tracer, "a")
    record_clean(tracer, "b")
    write(db, damage, "b")
    at_once, sweep = swept(db)
    assert sweep.suspects == ("b",)
    assert at_once == one_by_one(db)
    assert [(found.traces_checked, found.spans_checked) for found in at_once] == [(1, 2)] * 2


def test_the_sweep_of_a_store_without_sessions_is_empty(tracer, db):
    tracer.start_span("no session here").end()
    at_once, sweep = swept(db)
    assert (at_once, len(sweep), sweep.suspects) == ([], 0, ())


# --- the command ---------------------------------------------------------------------------


def test_doctor_on_a_clean_session_exits_0(tracer, db):
    record_clean(tracer)
    assert doctor(db, "clean") == (0, "Session clean: no problems found in 1 trace (2 spans)\n", "")


def test_doctor_reports_each_problem_with_cause_fix_and_spans_and_exits_1(tracer, db):
    record_thread(tracer)
    code, out, err = doctor(db, "threads")
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0] == "Session threads: 1 problem in 1 trace (checked 1 trace, 3 spans)"
    assert lines[2].startswith("  1. thread without context  (trace ")
    assert "without the session" in lines[3]
    assert lines[4].startswith("    why: its parent carries the session")
    assert lines[5].startswith("    fix: ") and "sessiontrace.wrap(fn)" in lines[5]
    assert lines[6].startswith("    - worker  span ")
    assert lines[6].endswith("scope doctor-tests  parent agent")
    assert lines[7].endswith("parent worker")


def test_doctor_names_the_keys_of_a_conflict(tracer, db):
    record_conflict(tracer)
    code, out, _ = doctor(db, "mixed")
    assert code == 1
    assert "another writer set a session key" in out
    assert "session.id='other'  gen_ai.conversation.id='mixed'" in out


def test_doctor_json_parses_back(tracer, db):
    record_late_block(tracer)
    code, out, _ = doctor(db, "late", "--json")
    assert code == 1
    document = json.loads(out)
    assert (document["sessions_checked"], document["problem_count"]) == (1, 2)
    (session,) = document["sessions"]
    assert (session["session_id"], session["traces_checked"], session["spans_checked"]) == (
        "late",
        1,
        4,
    )
    root = session["problems"][0]
    assert set(root) == {"kind", "trace_id", "cause", "description", "evidence", "fix", "spans"}
    assert (root["kind"], root["cause"]) == ("unstamped_root", "span started outside the block")
    assert root["spans"][0]["name"] == "POST /chat"
    assert root["spans"][0]["start"].endswith("+00:00")
    assert len(root["trace_id"]) == 32
    again = json.loads(doctor(db, "late", "--json")[1])
    assert again == document  # deterministic: problems come in a fixed order


def test_doctor_latest_checks_the_most_recent_session(tracer, db):
    record_thread(tracer)
    record_clean(tracer)
    code, out, _ = doctor(db, "latest")
    assert (code, out.split(":")[0]) == (0, "Session clean")


def test_doctor_without_an_id_checks_every_session(tracer, db):
    record_clean(tracer)
    record_thread(tracer)
    record_stream(tracer)
    code, out, err = doctor(db)
    assert (code, err) == (1, "")
    assert "Session clean" not in out  # clean sessions are only counted
    assert "Session threads: 1 problem" in out and "Session streamy: 2 problems" in out
    assert out.endswith(
        "Checked 3 sessions (3 traces, 8 spans): 2 with problems, 3 problems in all.\n"
    )
    document = json.loads(doctor(db, "--json")[1])
    assert [s["session_id"] for s in document["sessions"]] == ["streamy", "threads", "clean"]
    assert (document["sessions_checked"], document["problem_count"]) == (3, 3)


def test_doctor_without_an_id_exits_0_when_every_session_is_clean(tracer, db):
    record_clean(tracer, "a")
    record_clean(tracer, "b")
    assert doctor(db) == (0, "No problems found in 2 sessions (2 traces, 4 spans).\n", "")


def test_doctor_on_a_store_without_sessions_has_nothing_to_check(tracer, db):
    tracer.start_span("no session here").end()
    code, out, _ = doctor(db)
    assert (code, out) == (0, f"No sessions in the store at {db}: nothing to check.\n")
    assert json.loads(doctor(db, "--json")[1]) == {
        "sessions_checked": 0,
        "problem_count": 0,
        "sessions": [],
        "dropped": [],
        "repaired": [],
        "bad_rows": [],
    }


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_stderr_only_on_a_terminal(tracer, db, monkeypatch):
    for session_id in ("a", "b", "c"):
        record_clean(tracer, session_id)
    monkeypatch.setattr(_doctor, "PROGRESS_INTERVAL_SECONDS", 0.0)
    code, out, err = run("--store", str(db), "doctor", stderr=Terminal())
    assert code == 0 and out.startswith("No problems found in 3 sessions")
    assert "\rsessiontrace doctor: checked 1 of 3 sessions" in err
    assert "checked 2 of 3 sessions" in err
    assert err.endswith("\r")  # the line is cleared before the report
    assert doctor(db)[2] == ""  # not a terminal: no progress


def test_doctor_errors_match_the_other_commands(tracer, db, tmp_path):
    missing = tmp_path / "missing.db"
    code, out, err = run("--store", str(missing), "doctor")
    assert (code, out) == (2, "")
    assert str(missing) in err and "sessiontrace.configure()" in err
    record_clean(tracer)
    code, out, err = doctor(db, "nope")
    assert (code, out) == (1, "")
    assert "no session 'nope'" in err and "sessiontrace sessions" in err
    code, out, err = doctor(db, "--bogus")
    assert (code, out) == (2, "")
    assert "usage: sessiontrace" in err


def test_doctor_latest_on_a_store_without_sessions_exits_1(tracer, db):
    tracer.start_span("no session here").end()
    code, out, err = doctor(db, "latest")
    assert (code, out) == (1, "")
    assert "holds no sessions yet" in err


def test_doctor_help_documents_the_exit_codes():
    code, out, _ = run("doctor", "--help")
    assert code == 0
    assert "SESSION_ID" in out and "--json" in out and "--store" in out
    assert "0 when no problem is found" in " ".join(out.split())


def test_the_store_clears_exactly_the_sessions_the_sweep_does_not_decode(mixed):
    expected = {found.session_id: found for found in one_by_one(mixed)}
    with SessionStore(mixed) as store:
        cleared = store.cleared_sessions()
    assert set(cleared) == CLEAN
    # The counts are those diagnosing the session from its spans reports.
    for session_id, counts in cleared.items():
        found = expected[session_id]
        assert found.ok
        assert counts == (found.traces_checked, found.spans_checked)
