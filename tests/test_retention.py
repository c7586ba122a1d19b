"""Retention: ``prune`` and the background pruner remove whole session families, oldest first.

Stores are written through the real SQLiteSpanExporter into real files, with chosen span
times. Each test checks what a user would: which sessions are left, what the report says,
that every command still reads the store, and that its summary tables still equal a recount
(``assert_consistent`` from test_summaries.py). Concurrency runs a real writer process while
the prune runs; the background pruner runs inside a real exporter and through configure();
fork runs in a child process of a fresh interpreter.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from test_summaries import assert_consistent, raw

from sessiontrace import _keys, configure
from sessiontrace._config import _PIPELINE_ATTRIBUTE
from sessiontrace._units import parse_age, parse_size
from sessiontrace.cli import main
from sessiontrace.store import SessionStore, SQLiteSpanExporter, _pruner, _retention
from sessiontrace.store._retention import prune

S = 1_000_000_000
DAY = 86_400 * S
NOW = 1_750_000_000 * S  # the "now" of the tests that pass now_ns
RESOURCE = Resource.create({"service.name": "retention"})
READ_COMMANDS = [["sessions"], ["show", "{id}"], ["replay", "{id}"], ["doctor"]]

_ids = iter(range(1, 1 << 60))


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch):
    for variable in (
        "SESSIONTRACE_STORE_PATH",
        "SESSIONTRACE_STORE_MAX_AGE",
        "SESSIONTRACE_STORE_MAX_BYTES",
        "SESSIONTRACE_STORE",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(variable, raising=False)


def span(
    end_ns: int,
    *,
    session: str | None = None,
    parent: str | None = None,
    trace: int | None = None,
    user: str | None = "ada",
    payload: int = 0,
    length_ns: int = S,
) -> ReadableSpan:
    """A finished span of the real SDK ending at ``end_ns`` (a new trace unless given)."""
    attributes: dict[str, Any] = {}
    if session is not None:
        attributes[_keys.OI_SESSION_ID] = session
        if user is not None:
            attributes[_keys.OI_USER_ID] = user
    if parent is not None:
        attributes[_keys.PARENT_SESSION_ID] = parent
    if payload:
        attributes[_keys.OI_INPUT_VALUE] = os.urandom(payload // 2).hex()
    return ReadableSpan(
        name="work",
        context=SpanContext(
            next(_ids) if trace is None else trace,
            next(_ids),
            is_remote=False,
            trace_flags=TraceFlags(1),
        ),
        resource=RESOURCE,
        attributes=attributes,
        start_time=end_ns - length_ns,
        end_time=end_ns,
        status=Status(StatusCode.UNSET),
    )


def write(db: Path, *spans: ReadableSpan) -> None:
    exporter = SQLiteSpanExporter(db)
    try:
        assert exporter.export(list(spans)) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def sessions_in(db: Path) -> set[str]:
    with SessionStore(db) as store:
        return {summary.session_id for summary in store.sessions()}


def cli(*arguments: str | os.PathLike[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([os.fspath(argument) for argument in arguments], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def assert_every_command_reads(db: Path, session_id: str) -> None:
    for command in READ_COMMANDS:
        command = [part.format(id=session_id) for part in command]
        code, _, err = cli("--store", db, *command)
        assert code in ((0, 1) if command[0] == "doctor" else (0,)), (command, err)
        assert "error" not in err.lower(), (command, err)
    code, _, err = cli("--store", db, "timeline", session_id, "--html", db.parent / "t.html")
    assert code == 0, err
    assert raw(db, "PRAGMA integrity_check") == [("ok",)]
    assert_consistent(db)


# --- by age --------------------------------------------------------------------------------


def test_prune_by_age_removes_the_sessions_last_active_before_the_cutoff(db):
    write(
        db,
        span(NOW - 30 * DAY, session="old-1"),
        span(NOW - 20 * DAY, session="old-1"),
        span(NOW - 8 * DAY, session="old-2"),
        span(NOW - 20 * DAY, session="active"),  # started long ago, active yesterday
        span(NOW - 1 * DAY, session="active"),
        span(NOW - 1 * DAY, session="new"),
    )
    report = prune(db, older_than=7 * 86400, now_ns=NOW)
    assert sessions_in(db) == {"active", "new"}
    assert (report.sessions_removed, report.traces_removed, report.spans_removed) == (2, 0, 3)
    assert report.oldest_removed.timestamp() == pytest.approx((NOW - 20 * DAY) / S)
    assert report.newest_removed.timestamp() == pytest.approx((NOW - 8 * DAY) / S)
    assert not report.dry_run
    with SessionStore(db) as store:
        assert store.session("active").span_count == 2
    assert_every_command_reads(db, "active")


def test_the_cli_prunes_by_age_and_says_what_it_removed(db):
    now = time.time_ns()
    write(
        db,
        span(now - 10 * DAY, session="last-week", trace=1),
        span(now - 10 * DAY, session="last-week", trace=1),
        span(now - 10 * DAY, trace=2),  # a trace without a session
        span(now - 60 * S, session="today"),
    )
    code, out, err = cli("prune", "--store", db, "--older-than", "7d")
    assert code == 0, err
    assert err == ""
    assert out.startswith("Removed 1 session and 1 trace without a session (3 spans, last active ")
    assert f" from {db}: " in out and out.endswith(" MB on disk.\n")
    assert out.count("\n") == 1
    assert sessions_in(db) == {"today"}
    assert raw(db, "SELECT COUNT(*) FROM spans") == [(1,)]
    code, out, _ = cli("prune", "--store", db, "--older-than", "7d")
    assert code == 0 and out.startswith(f"Nothing to remove from {db} (")
    assert_every_command_reads(db, "today")


# --- families, traces without a session, shared traces --------------------------------------


@pytest.mark.parametrize(
    ("parent_age", "child_age", "removed"),
    [
        (30, 1, False),  # the child is still active: the family stays
        (1, 30, False),  # the parent is still active: the old child stays with it
        (30, 20, True),  # both old: both go
    ],
)
def test_a_family_is_removed_whole_or_not_at_all(db, parent_age, child_age, removed):
    write(
        db,
        span(NOW - parent_age * DAY, session="parent"),
        span(NOW - child_age * DAY, session="child", parent="parent"),
        span(NOW - (child_age + 1) * DAY, session="grandchild", parent="child"),
        span(NOW - 1 * DAY, session="unrelated"),
    )
    report = prune(db, older_than=7 * 86400, now_ns=NOW)
    left = sessions_in(db)
    family = {"parent", "child", "grandchild"}
    assert left == ({"unrelated"} if removed else family | {"unrelated"})
    assert report.sessions_removed == (3 if removed else 0)
    assert_consistent(db)


def test_sessions_whose_parents_name_each_other_are_one_family(db):
    # Hostile stamps: a names b as its parent and b names a. Neither may go without the other.
    write(
        db,
        span(NOW - 30 * DAY, session="a", parent="b"),
        span(NOW - 1 * DAY, session="b", parent="a"),
        span(NOW - 30 * DAY, session="c", parent="a"),
    )
    for older_than in (7 * 86400, 2 * 86400):
        prune(db, older_than=older_than, now_ns=NOW)
        assert sessions_in(db) == {"a", "b", "c"}
    report = prune(db, older_than=0.5 * 86400, now_ns=NOW)
    assert report.sessions_removed == 3 and sessions_in(db) == set()


def test_a_trace_shared_by_two_sessions_keeps_the_other_sessions_spans(db):
    shared = 77
    write(
        db,
        span(NOW - 30 * DAY, trace=shared, user=None),  # a request span without a session
        span(NOW - 30 * DAY, session="old", trace=shared),
        span(NOW - 1 * DAY, session="new", trace=shared),
        span(NOW - 30 * DAY, session="old"),
    )
    report = prune(db, older_than=7 * 86400, now_ns=NOW)
    assert (report.sessions_removed, report.spans_removed) == (1, 2)
    assert sessions_in(db) == {"new"}
    with SessionStore(db) as store:
        (trace,) = store.traces("new")
    # The request span stays with the trace: the trace still belongs to a session.
    assert len(trace.spans) == 2
    assert_consistent(db)


def test_traces_without_a_session_are_units_of_their_own(db):
    write(
        db,
        span(NOW - 30 * DAY, trace=1),
        span(NOW - 30 * DAY, trace=1),
        span(NOW - 10 * DAY, trace=2),
        span(NOW - 1 * DAY, trace=3),
    )
    report = prune(db, older_than=7 * 86400, now_ns=NOW)
    assert (report.sessions_removed, report.traces_removed, report.spans_removed) == (0, 2, 3)
    assert raw(db, "SELECT COUNT(*) FROM spans") == [(1,)]
    assert_consistent(db)


def test_a_session_with_request_spans_around_it_takes_them_along(db):
    write(
        db,
        span(NOW - 30 * DAY, trace=5, user=None),  # POST /chat, no session
        span(NOW - 30 * DAY, trace=5, session="chat"),
        span(NOW - 1 * DAY, session="kept"),
    )
    report = prune(db, older_than=7 * 86400, now_ns=NOW)
    assert (report.sessions_removed, report.traces_removed, report.spans_removed) == (1, 0, 2)
    assert raw(db, "SELECT COUNT(*) FROM spans") == [(1,)]
    assert_consistent(db)


def test_a_dry_run_removes_nothing_and_reports_what_a_run_removes(db, tmp_path):
    now = time.time_ns()  # the CLI measures from now
    spans = [
        span(now - 30 * DAY, trace=5, user=None),  # a request span around "chat"
        span(now - 30 * DAY, trace=5, session="chat"),
        span(now - 30 * DAY, trace=6, session="chat"),
        span(now - 29 * DAY, trace=6, session="other-old"),  # shares trace 6 with chat
        span(now - 30 * DAY, trace=6, user=None),
        span(now - 20 * DAY, session="child", parent="chat"),
        span(now - 30 * DAY, trace=7),
        span(now - 1 * DAY, session="new"),
    ]
    write(db, *spans)
    before = raw(db, "SELECT trace_id, span_id FROM spans ORDER BY 1, 2")
    planned = prune(db, older_than=7 * 86400, now_ns=now, dry_run=True)
    assert planned.dry_run
    assert raw(db, "SELECT trace_id, span_id FROM spans ORDER BY 1, 2") == before
    code, out, _ = cli("prune", "--store", db, "--older-than", "7d", "--dry-run")
    assert code == 0 and out.startswith("Would remove 3 sessions and 1 trace without a session")
    assert raw(db, "SELECT COUNT(*) FROM spans") == [(len(before),)]
    done = prune(db, older_than=7 * 86400, now_ns=now)
    counts = ("sessions_removed", "traces_removed", "spans_removed")
    assert [getattr(planned, c) for c in counts] == [getattr(done, c) for c in counts]
    assert (planned.oldest_removed, planned.newest_removed) == (
        done.oldest_removed,
        done.newest_removed,
    )
    assert done.spans_removed == len(before) - 1
    assert sessions_in(db) == {"new"}


# --- by size -------------------------------------------------------------------------------


def test_prune_by_size_removes_the_oldest_until_the_store_fits(db):
    exporter = SQLiteSpanExporter(db)
    for number in range(60):  # 60 sessions of 20 spans of 2 KB, one a minute
        end = NOW - (60 - number) * 60 * S
        batch = [span(end, session=f"s{number:02}", payload=2000) for _ in range(20)]
        assert exporter.export(batch) is SpanExportResult.SUCCESS
    exporter.shutdown()
    size = db.stat().st_size
    assert size > 2_000_000
    limit = size // 2
    report = prune(db, max_bytes=limit)
    left = sorted(sessions_in(db))
    assert report.bytes_after <= limit < report.bytes_before
    assert db.stat().st_size <= limit
    assert 20 <= len(left) < 60
    # Oldest first: what is left is the newest, contiguous to the last.
    assert left == [f"s{number:02}" for number in range(60 - len(left), 60)]
    assert report.sessions_removed == 60 - len(left)
    assert report.spans_removed == 20 * report.sessions_removed
    assert_every_command_reads(db, left[0])


def test_the_cli_prunes_by_size(db):
    now = time.time_ns()
    write(db, *(span(now - n * S, session=f"s{n}", payload=4000) for n in range(300)))
    code, out, err = cli("prune", "--store", db, "--max-size", "500KB")
    assert code == 0, err
    assert out.startswith("Removed ")
    assert db.stat().st_size <= 500_000
    left = sessions_in(db)
    assert "s0" in left and "s299" not in left


# --- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named", "fix"),
    [
        (["--older-than", "7x"], "--older-than '7x' is not an age", "such as 90m, 12h, 7d"),
        (["--older-than", "0d"], "--older-than must be more than 0", "such as 90m"),
        (["--older-than", "7"], "--older-than '7' is not an age", "a number and a unit"),
        (["--max-size", "-5"], "--max-size '-5' is not a size", "such as 500MB"),
        (["--max-size", "0"], "--max-size must be more than 0 bytes", "such as 500MB"),
        (["--max-size", "lots"], "--max-size 'lots' is not a size", "such as 500MB"),
        ([], "give --older-than AGE, --max-size SIZE, or both", "--help"),
    ],
)
def test_bad_arguments_exit_2_with_the_fix(db, arguments, named, fix):
    write(db, span(NOW - 30 * DAY, session="s"))
    code, out, err = cli("prune", "--store", db, *arguments)
    assert code == 2
    assert out == ""
    assert named in err and fix in err
    assert sessions_in(db) == {"s"}


def test_pruning_a_missing_store_names_it(tmp_path):
    code, _, err = cli("prune", "--store", tmp_path / "none.db", "--older-than", "1d")
    assert code == 2 and "none.db" in err and err.count("\n") == 1
    assert not (tmp_path / "none.db").exists()


def test_the_api_refuses_no_limit(db):
    write(db, span(NOW, session="s"))
    with pytest.raises(ValueError, match="older_than"):
        prune(db)


def test_an_age_older_than_time_itself_removes_nothing(db):
    write(db, span(NOW - 30 * DAY, session="s"))
    report = prune(db, older_than=parse_age("9" * 300 + "w"), now_ns=NOW)
    assert report.sessions_removed == 0 and sessions_in(db) == {"s"}


def test_what_a_program_writes_while_prune_runs_is_respected(db, monkeypatch):
    """Between listing the units and removing them, another program writes: a session that is
    active again stays, a new sub-session of an old family goes with it, and an old session
    that now names a live parent stays with that family."""
    write(
        db,
        span(NOW - 30 * DAY, session="resumed"),
        span(NOW - 30 * DAY, session="old"),
        span(NOW - 30 * DAY, session="adopted"),
    )
    listed = _retention._units

    def list_then_write(conn):
        units = listed(conn)
        if not hasattr(list_then_write, "done"):
            list_then_write.done = True
            write(
                db,
                span(NOW - 60 * S, session="resumed"),
                span(NOW - 30 * DAY, session="old.late-child", parent="old"),
                span(NOW - 60 * S, session="live-parent"),
                span(NOW - 30 * DAY, session="adopted", parent="live-parent"),
            )
        return units

    monkeypatch.setattr(_retention, "_units", list_then_write)
    report = prune(db, older_than=7 * 86400, now_ns=NOW)
    assert sessions_in(db) == {"resumed", "live-parent", "adopted"}
    assert (report.sessions_removed, report.spans_removed) == (2, 2)
    with SessionStore(db) as store:
        assert store.session("resumed").span_count == 2
        assert store.session("live-parent").subsessions == ("adopted",)
    assert_consistent(db)


# --- pruning while a program writes ----------------------------------------------------------

# Exports new sessions (ending now) until told to stop; prints how many spans it stored.
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
    from sessiontrace.store import SQLiteSpanExporter

    db, stop = sys.argv[1], sys.argv[2]
    exporter = SQLiteSpanExporter(db)
    stored, batch = 0, 0
    print("ready", flush=True)
    while not os.path.exists(stop) or batch < 5:
        now = time.time_ns()
        attributes = {"session.id": f"fresh-{batch}", "user.id": "ada", "input.value": "y" * 500}
        if batch % 3:  # families too: a sub-session of the batch before
            attributes["sessiontrace.parent_session.id"] = f"fresh-{batch - 1}"
        spans = [
            ReadableSpan(
                name="fresh",
                context=SpanContext((1 << 100) + batch * 1000 + n % 10,
                                    (1 << 50) + batch * 1000 + n,
                                    is_remote=False, trace_flags=TraceFlags(1)),
                resource=Resource.create({}),
                attributes=attributes,
                start_time=now - 1000, end_time=now, status=Status(StatusCode.UNSET),
            )
            for n in range(50)
        ]
        if exporter.export(spans).name != "SUCCESS":
            sys.exit(f"batch {batch} failed")
        stored += len(spans)
        batch += 1
    exporter.shutdown()
    print(stored, batch, flush=True)
    """
)


def _environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SESSIONTRACE_"))
    }


def test_prune_while_a_writer_exports_new_sessions(db, tmp_path):
    now = time.time_ns()
    old = []
    for number in range(400):  # old families and traces, to be pruned in many transactions
        old.append(span(now - (30 + number % 5) * DAY, session=f"old-{number}"))
        old.append(span(now - 31 * DAY, session=f"old-{number}.child", parent=f"old-{number}"))
        old.append(span(now - 30 * DAY))
    write(db, *old)
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(stop)],
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        removed = 0
        rounds = 0
        deadline = time.monotonic() + 60
        while rounds < 15 and time.monotonic() < deadline:
            report = prune(db, older_than=3600)
            removed += report.sessions_removed + report.traces_removed
            rounds += 1
        stop.touch()
        out, err = writer.communicate(timeout=120)
    finally:
        writer.kill()
    assert writer.returncode == 0, err
    stored, batches = map(int, out.split())
    assert removed == 400 * 2 + 400
    # Nothing the writer stored is gone, and nothing old is left.
    assert raw(db, "SELECT COUNT(*) FROM spans WHERE name = 'fresh'") == [(stored,)]
    assert raw(db, "SELECT COUNT(*) FROM spans WHERE name != 'fresh'") == [(0,)]
    assert len(sessions_in(db)) == batches
    assert_every_command_reads(db, "fresh-0")


# --- the background pruner ------------------------------------------------------------------


@pytest.fixture
def quick_start(monkeypatch):
    monkeypatch.setattr(_pruner, "FIRST_DELAY_SECONDS", 0.05)


def wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_exporter_prunes_in_the_background_while_exports_go_on(db, quick_start):
    exporter = SQLiteSpanExporter(db, max_age=3600, prune_interval=0.2)
    try:
        now = time.time_ns()
        old = [span(now - 2 * DAY, session=f"old-{n}", payload=200) for n in range(300)]
        assert exporter.export(old) is SpanExportResult.SUCCESS
        results = []
        number = 0

        def old_gone() -> bool:
            nonlocal number
            number += 1
            results.append(exporter.export([span(time.time_ns(), session=f"new-{number}")]))
            return not any(s.startswith("old-") for s in sessions_in(db))

        assert wait_for(old_gone), "the background pruner did not remove the old sessions"
    finally:
        exporter.shutdown()
    assert set(results) == {SpanExportResult.SUCCESS}
    assert sessions_in(db) == {f"new-{n}" for n in range(1, number + 1)}
    assert_consistent(db)


def test_the_pruner_thread_stops_with_the_exporter(db, quick_start):
    exporter = SQLiteSpanExporter(db, max_age=3600, prune_interval=0.1)
    assert exporter.export([span(time.time_ns(), session="s")]) is SpanExportResult.SUCCESS
    thread = exporter._pruner._thread
    assert thread is not None and thread.is_alive()
    exporter.shutdown()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_background_pruner_makes_no_spans_of_its_own(db, quick_start):
    """A sqlite3 instrumentation sees the pruner's connections with instrumentation
    suppressed, as it sees the exporter's."""
    _install_audit_hook()
    seen: list[tuple[str, bool]] = []

    def listener(event: str, args: tuple) -> None:
        if event == "sqlite3.connect" and os.fsdecode(args[0]) == os.fspath(db):
            suppressed = bool(otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY))
            seen.append((threading.current_thread().name, suppressed))

    exporter = SQLiteSpanExporter(db, max_age=3600, prune_interval=0.1)
    _LISTENERS.append(listener)
    try:
        assert exporter.export([span(time.time_ns() - 2 * DAY, session="old")]).name == "SUCCESS"
        assert wait_for(lambda: exporter._pruner.last_report is not None)
    finally:
        _LISTENERS.remove(listener)
        exporter.shutdown()
    pruner = [suppressed for name, suppressed in seen if name == "sessiontrace-store-pruner"]
    assert pruner and all(pruner), seen


_LISTENERS: list[Any] = []
_HOOKED = []


def _install_audit_hook() -> None:
    # Audit hooks cannot be removed: one is installed once and forwards to the listeners.
    if not _HOOKED:
        sys.addaudithook(lambda event, args: [each(event, args) for each in list(_LISTENERS)])
        _HOOKED.append(True)


def test_a_failing_prune_is_logged_and_never_raises(tmp_path, caplog, quick_start):
    blocker = tmp_path / "not-a-store.db"
    blocker.write_bytes(b"this is not SQLite" * 100)
    pruner = _pruner.BackgroundPruner(blocker, max_age=3600, interval=0.1)
    assert pruner.prune_now() is None
    assert pruner.prune_now() is None
    warnings_logged = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings_logged) == 1
    assert "could not prune the store" in warnings_logged[0].getMessage()


# --- settings: configure() and the environment -----------------------------------------------


def store_exporter(provider: TracerProvider) -> SQLiteSpanExporter:
    pipeline = getattr(provider, _PIPELINE_ATTRIBUTE)
    found = [p.exporter for p in pipeline.exporters if isinstance(p.exporter, SQLiteSpanExporter)]
    assert len(found) == 1
    return found[0]


def test_configure_hands_the_limits_to_the_store_exporter(db, quick_start):
    provider = configure(
        store_path=db,
        store_max_age="1s",
        store_max_bytes="5MB",
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        batch=False,
    )
    try:
        pruner = store_exporter(provider)._pruner
        assert pruner is not None
        assert (pruner.max_age, pruner.max_bytes) == (1.0, 5_000_000)
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span(
            "old", attributes={_keys.OI_SESSION_ID: "old"}, start_time=time.time_ns() - DAY
        ) as old:
            old.end(end_time=time.time_ns() - DAY + S)
        assert wait_for(lambda: "old" not in sessions_in(db))
    finally:
        provider.shutdown()


def test_the_environment_variables_set_the_limits(db, monkeypatch):
    monkeypatch.setenv("SESSIONTRACE_STORE_MAX_AGE", "2h")
    monkeypatch.setenv("SESSIONTRACE_STORE_MAX_BYTES", "1GiB")
    provider = configure(store_path=db, tracer_provider=TracerProvider(shutdown_on_exit=False))
    try:
        pruner = store_exporter(provider)._pruner
        assert (pruner.max_age, pruner.max_bytes) == (7200.0, 1 << 30)
    finally:
        provider.shutdown()


def test_without_limits_there_is_no_pruner(db):
    provider = configure(store_path=db, tracer_provider=TracerProvider(shutdown_on_exit=False))
    try:
        assert store_exporter(provider)._pruner is None
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"store_max_age": "7x"}, ValueError, r"configure\(store_max_age=...\) '7x' is not an age"),
        ({"store_max_age": -1}, ValueError, r"store_max_age=...\) must be more than 0"),
        ({"store_max_age": [7]}, TypeError, r"store_max_age=...\) must be seconds"),
        ({"store_max_bytes": "500XB"}, ValueError, r"store_max_bytes=...\) '500XB' is not a size"),
        ({"store_max_bytes": 0}, ValueError, r"store_max_bytes=...\) must be more than 0"),
        ({"store_max_bytes": 1.5}, TypeError, r"store_max_bytes=...\) must be bytes"),
    ],
)
def test_bad_limits_in_configure_name_the_argument(db, arguments, error, message):
    provider = TracerProvider(shutdown_on_exit=False)
    with pytest.raises(error, match=message):
        configure(store_path=db, tracer_provider=provider, **arguments)
    assert not hasattr(provider, _PIPELINE_ATTRIBUTE)


@pytest.mark.parametrize("variable", ["SESSIONTRACE_STORE_MAX_AGE", "SESSIONTRACE_STORE_MAX_BYTES"])
def test_a_bad_environment_value_is_warned_about_and_ignored(db, monkeypatch, variable):
    monkeypatch.setenv(variable, "soon")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        provider = configure(store_path=db, tracer_provider=TracerProvider(shutdown_on_exit=False))
    try:
        assert store_exporter(provider)._pruner is None
    finally:
        provider.shutdown()
    (warning,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert variable in str(warning.message) and "'soon'" in str(warning.message)


# --- fork ------------------------------------------------------------------------------------

FORK = textwrap.dedent(
    """
    import os, sys, threading, time
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
    from sessiontrace.store import SQLiteSpanExporter, _pruner
    _pruner.FIRST_DELAY_SECONDS = 0.05

    def span(number, session, end):
        return ReadableSpan(name="s", context=SpanContext(number, number, is_remote=False,
                            trace_flags=TraceFlags(1)), resource=Resource.create({}),
                            attributes={"session.id": session}, start_time=end - 1000,
                            end_time=end, status=Status(StatusCode.UNSET))

    def pruner_threads():
        return [t for t in threading.enumerate() if t.name == "sessiontrace-store-pruner"]

    exporter = SQLiteSpanExporter(sys.argv[1], max_age=3600, prune_interval=0.1)
    assert exporter.export([span(1, "parent", time.time_ns())]).name == "SUCCESS"
    parent_thread = exporter._pruner._thread
    assert parent_thread.is_alive()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            assert pruner_threads() == []  # threads do not survive fork
            exporter._pruner.last_report = None  # the parent's, copied by fork
            old = time.time_ns() - 2 * 86400 * 10**9
            assert exporter.export([span(2, "child-old", old)]).name == "SUCCESS"
            thread = exporter._pruner._thread
            assert thread is not parent_thread and thread.is_alive(), "no pruner in the child"
            assert pruner_threads() == [thread]
            deadline = time.monotonic() + 30
            while exporter._pruner.last_report is None:
                assert time.monotonic() < deadline, "the child's pruner never pruned"
                time.sleep(0.05)
            print("child pruned", flush=True)
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert parent_thread.is_alive()
    exporter.shutdown()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_after_fork_the_child_exporter_runs_its_own_pruner(db):
    result = subprocess.run(
        [sys.executable, "-c", FORK, str(db)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "child pruned" in result.stdout
    assert sessions_in(db) == {"parent"}  # "child-old" was pruned


# --- ages and sizes as text --------------------------------------------------------------------

AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 1024, "GiB": 1 << 30}


@given(amount=st.integers(1, 10**6), unit=st.sampled_from(sorted(AGE_UNITS)), upper=st.booleans())
def test_ages_read_as_written(amount, unit, upper):
    text = f"{amount}{unit.upper() if upper else unit}"
    assert parse_age(text) == amount * AGE_UNITS[unit]
    assert parse_age(f" {amount} {unit} ") == amount * AGE_UNITS[unit]
    assert parse_age(amount * AGE_UNITS[unit]) == amount * AGE_UNITS[unit]


@given(amount=st.integers(1, 10**9), unit=st.sampled_from(sorted(SIZE_UNITS)))
def test_sizes_read_as_written(amount, unit):
    assert parse_size(f"{amount}{unit}") == amount * SIZE_UNITS[unit]
    assert parse_size(f"{amount}{unit.lower()}") == amount * SIZE_UNITS[unit]
    assert parse_size(amount * SIZE_UNITS[unit]) == amount * SIZE_UNITS[unit]


_anything = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.eE+-_ smhdwkKMGTiBb\u0663\u00b2\t"),
    st.from_regex(r"\A\d{1,400}(\.\d{0,30})?\s?[a-zA-Z]{0,4}\Z"),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(),
    st.lists(st.integers(), max_size=2),
)


@given(value=_anything)
def test_garbage_ages_and_sizes_raise_only_value_or_type_errors(value):
    for parse, what in ((parse_age, "store_max_age"), (parse_size, "store_max_bytes")):
        try:
            result = parse(value, what)
        except (ValueError, TypeError) as error:
            assert what in str(error)
        else:
            assert result > 0
            assert isinstance(result, float if parse is parse_age else int)
            if parse is parse_age:
                assert result < float("inf")


def test_prune_report_line_for_nothing_removed(db):
    write(db, span(time.time_ns(), session="s"))
    code, out, _ = cli("prune", "--store", db, "--max-size", "1TB")
    assert code == 0 and out.startswith(f"Nothing to remove from {db} (")


def test_a_store_killed_while_pruning_stays_whole(tmp_path):
    """SIGKILL while prune is removing: every session left is whole (all spans or none)."""
    now = time.time_ns()
    # A machine fast enough to finish before the kill gets a bigger store, not a skip.
    for sessions in (5000, 20000, 80000):
        db = tmp_path / f"killed-{sessions}.db"
        batch = []
        for number in range(sessions):
            batch += [
                span(now - 30 * DAY, session=f"s{number}", trace=10**6 + number) for _ in range(4)
            ]
        write(db, *batch)
        command = ["prune", "--store", str(db), "--older-than", "1d"]
        process = subprocess.Popen(
            [sys.executable, "-m", "sessiontrace", *command], env=_environment()
        )
        try:
            # Kill once the first transactions have committed, while more are to come.
            def started(db: Path = db, sessions: int = sessions) -> bool:
                return bool(raw(db, "SELECT COUNT(*) FROM sessions")[0][0] < sessions)

            assert wait_for(started, 60)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            process.kill()
        left = raw(db, "SELECT COUNT(*) FROM sessions")[0][0]
        if process.returncode == -signal.SIGKILL and left > 0:
            break
    else:
        pytest.fail("prune finished every store before it could be killed mid-way")
    counts = raw(db, "SELECT session_id, COUNT(*) FROM spans GROUP BY 1")
    assert len(counts) == left
    assert {count for _, count in counts} == {4}
    assert raw(db, "PRAGMA integrity_check") == [("ok",)]
    assert_consistent(db)
    assert prune(db, older_than=86400).sessions_removed == left
