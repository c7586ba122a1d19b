"""The SQLite store: what the exporter writes and what SessionStore reads back."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import timezone

import pydantic
import pytest
from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from sessiontrace import _keys
from sessiontrace.store import (
    SCHEMA_VERSION,
    SessionNotFoundError,
    SessionStore,
    SQLiteSpanExporter,
    StoreFormatError,
    StoreNotFoundError,
)

T0 = 1_700_000_000_000_000_000  # ns; every span below starts at T0 + an offset in ms
MS = 1_000_000


@pytest.fixture
def db(tmp_path):
    # A directory that does not exist yet: the exporter creates it on demand.
    return tmp_path / "nested" / "sessions.db"


@pytest.fixture
def provider(db) -> Iterator[TracerProvider]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "store-tests"}), shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    yield provider
    provider.shutdown()


@pytest.fixture
def st_tracer(provider) -> trace.Tracer:
    return provider.get_tracer("store-tests", "1.2.3")


@pytest.fixture
def memory() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    """A tracer whose spans are only kept in memory, to hand to an exporter by hand."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("memory"), exporter
    provider.shutdown()


@pytest.fixture
def store(db, provider) -> Callable[[], SessionStore]:
    """Open the store once the test has written it; closed at teardown."""
    opened: list[SessionStore] = []

    def open_store() -> SessionStore:
        opened.append(SessionStore(db))
        return opened[-1]

    yield open_store
    for each in opened:
        each.close()


@contextmanager
def timed(tracer, name, start_ms, end_ms, **attributes):
    """A span from T0+start_ms to T0+end_ms, current while the block runs."""
    kind = attributes.pop("kind", SpanKind.INTERNAL)
    span = tracer.start_span(name, kind=kind, attributes=attributes, start_time=T0 + start_ms * MS)
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=True):
            yield span
    finally:
        span.end(end_time=T0 + end_ms * MS)


def in_session(session_id, user_id=None, **extra):
    attributes = {_keys.OI_SESSION_ID: session_id, **extra}
    if user_id is not None:
        attributes[_keys.OI_USER_ID] = user_id
    return attributes


def raw_rows(db, sql, *params):
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


# --- what the exporter writes ------------------------------------------------------------


def test_first_export_creates_a_versioned_wal_store(db, st_tracer):
    assert not db.parent.exists()
    with timed(st_tracer, "hello", 0, 1):
        pass
    assert db.is_file()
    assert raw_rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw_rows(db, "PRAGMA journal_mode") == [("wal",)]
    indexed = {row[0] for row in raw_rows(db, "SELECT sql FROM sqlite_master WHERE type='index'")}
    assert any("(session_id, trace_id)" in (sql or "") for sql in indexed)


def test_a_span_is_stored_with_everything_a_reader_needs(db, st_tracer):
    try:
        with (
            timed(st_tracer, "parent", 0, 50),
            timed(
                st_tracer,
                "llm call",
                10,
                40,
                kind=SpanKind.CLIENT,
                **in_session("chat-1", "alice", tags=("a", "b")),
            ),
        ):
            raise ValueError("model overloaded")
    except ValueError:
        pass
    rows = raw_rows(
        db,
        "SELECT trace_id, span_id, parent_span_id, kind, start_ns, end_ns, status_code, "
        "status_message, session_id, user_id, attributes, resource, scope, events "
        "FROM spans WHERE name = 'llm call'",
    )
    assert len(rows) == 1
    (trace_id, span_id, parent_id, kind, start, end, status, message, session, user) = rows[0][:10]
    attributes, resource, scope, events = rows[0][10:]
    (parent_span_id,) = raw_rows(db, "SELECT span_id FROM spans WHERE name = 'parent'")[0]
    assert len(trace_id) == 32 and int(trace_id, 16)
    assert len(span_id) == 16 and int(span_id, 16)
    assert parent_id == parent_span_id
    assert (kind, start, end) == ("CLIENT", T0 + 10 * MS, T0 + 40 * MS)
    assert (status, message) == ("ERROR", "ValueError: model overloaded")
    assert (session, user) == ("chat-1", "alice")
    assert json.loads(attributes)["tags"] == ["a", "b"]
    assert json.loads(resource)["service.name"] == "store-tests"
    assert scope == "store-tests"
    (event,) = json.loads(events)
    assert event["name"] == "exception"
    assert event["attributes"]["exception.message"] == "model overloaded"


def test_session_and_user_are_read_from_every_dialect_in_order(db, st_tracer):
    with timed(st_tracer, "genai", 0, 1, **{_keys.GENAI_CONVERSATION_ID: "g"}):
        pass
    with timed(
        st_tracer,
        "langfuse",
        0,
        1,
        **{_keys.LANGFUSE_SESSION_ID: "l", _keys.LANGFUSE_USER_ID: "lu"},
    ):
        pass
    with timed(
        st_tracer,
        "traceloop",
        0,
        1,
        **{_keys.TRACELOOP_SESSION_ID: "t", _keys.TRACELOOP_USER_ID: "tu"},
    ):
        pass
    # OpenInference comes first when a span carries several dialects.
    with timed(
        st_tracer,
        "both",
        0,
        1,
        **{_keys.OI_SESSION_ID: "oi", _keys.LANGFUSE_SESSION_ID: "other"},
    ):
        pass
    with timed(st_tracer, "no session", 0, 1):
        pass
    rows = dict(
        (name, (session, user))
        for name, session, user in raw_rows(db, "SELECT name, session_id, user_id FROM spans")
    )
    assert rows == {
        "genai": ("g", None),
        "langfuse": ("l", "lu"),
        "traceloop": ("t", "tu"),
        "both": ("oi", None),
        "no session": (None, None),
    }


def test_exporting_the_same_span_again_replaces_it(db, memory):
    tracer, captured = memory
    with timed(tracer, "once", 0, 1, **in_session("s")):
        pass
    exporter = SQLiteSpanExporter(db)
    assert exporter.export(captured.get_finished_spans()) is SpanExportResult.SUCCESS
    assert exporter.export(captured.get_finished_spans()) is SpanExportResult.SUCCESS
    assert raw_rows(db, "SELECT COUNT(*) FROM spans") == [(1,)]
    exporter.shutdown()


def test_export_after_shutdown_fails_without_raising(db, memory):
    tracer, captured = memory
    with timed(tracer, "late", 0, 1):
        pass
    exporter = SQLiteSpanExporter(db)
    assert exporter.force_flush() is True
    exporter.shutdown()
    assert exporter.export(captured.get_finished_spans()) is SpanExportResult.FAILURE
    assert not db.exists()


def test_a_failing_write_returns_failure_and_is_logged_once(tmp_path, memory, caplog):
    tracer, captured = memory
    with timed(tracer, "lost", 0, 1):
        pass
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    exporter = SQLiteSpanExporter(blocker / "sessions.db")
    with caplog.at_level(logging.DEBUG, logger="sessiontrace"):
        for _ in range(3):
            assert exporter.export(captured.get_finished_spans()) is SpanExportResult.FAILURE
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(blocker) in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2


# Audit hooks cannot be removed, so one hook is installed once and forwards to whichever
# listeners the running test registered.
_AUDIT_LISTENERS: list[Callable[[str, tuple], None]] = []
_AUDIT_INSTALLED = False


def _forward_audit_event(event: str, args: tuple) -> None:
    for listener in list(_AUDIT_LISTENERS):
        listener(event, args)


def test_the_store_writes_with_instrumentation_suppressed(db, memory):
    """A sqlite3 instrumentation would make no spans for the store's own writes."""
    global _AUDIT_INSTALLED
    if not _AUDIT_INSTALLED:
        sys.addaudithook(_forward_audit_event)
        _AUDIT_INSTALLED = True
    spans_tracer, captured = memory
    with timed(spans_tracer, "user work", 0, 1):
        pass
    to_export = captured.get_finished_spans()
    captured.clear()

    # What sqlite3 / DB-API instrumentations do on every connection: skip it when suppressed.
    connects: list[bool] = []

    def instrument(event: str, args: tuple) -> None:
        if event == "sqlite3.connect" and os.fsdecode(args[0]) == os.fspath(db):
            suppressed = bool(context.get_value(_SUPPRESS_INSTRUMENTATION_KEY))
            connects.append(suppressed)
            if not suppressed:
                spans_tracer.start_span("sqlite3.connect").end()

    _AUDIT_LISTENERS.append(instrument)
    try:
        exporter = SQLiteSpanExporter(db)
        assert exporter.export(to_export) is SpanExportResult.SUCCESS
        exporter.shutdown()
        assert connects and all(connects)
        assert captured.get_finished_spans() == ()
        # The control: the same check does record a connection made by the program itself.
        sqlite3.connect(db).close()
        assert [span.name for span in captured.get_finished_spans()] == ["sqlite3.connect"]
    finally:
        _AUDIT_LISTENERS.remove(instrument)
    assert context.get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None


def test_batches_from_many_threads_all_arrive(db):
    """Two providers (say, two workers) batch into one file from eight threads."""
    providers = []
    for _ in range(2):
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(
            BatchSpanProcessor(
                SQLiteSpanExporter(db), max_export_batch_size=7, schedule_delay_millis=5
            )
        )
        providers.append(provider)
    per_thread = 40
    start = threading.Barrier(8)

    def work(number: int) -> None:
        tracer = providers[number % 2].get_tracer("threads")
        start.wait()
        for step in range(per_thread):
            with tracer.start_as_current_span(
                f"step {step}", attributes=in_session(f"thread-{number}", f"user-{number}")
            ):
                pass

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for provider in providers:
        provider.shutdown()
    with SessionStore(db) as store:
        summaries = store.sessions()
    assert sorted(s.session_id for s in summaries) == [f"thread-{n}" for n in range(8)]
    assert {s.span_count for s in summaries} == {per_thread}
    assert {s.trace_count for s in summaries} == {per_thread}
    assert all(s.user_id == "user-" + s.session_id.split("-")[1] for s in summaries)


def test_many_exporters_can_create_one_store_at_once(tmp_path, memory):
    """Workers started together all create, then write, the same new file."""
    tracer, captured = memory
    for n in range(3):
        with timed(tracer, f"span {n}", n, n + 1, **in_session("s")):
            pass
    spans = captured.get_finished_spans()
    workers, rounds = 8, 10
    for round_ in range(rounds):  # a fresh file each round: the race is on creation
        db = tmp_path / f"round-{round_}.db"
        start = threading.Barrier(workers)
        results: list[SpanExportResult] = []

        def export(db=db, start=start, results=results) -> None:
            exporter = SQLiteSpanExporter(db)
            start.wait()
            results.extend(exporter.export([span]) for span in spans)

        threads = [threading.Thread(target=export) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [SpanExportResult.SUCCESS] * workers * len(spans)
        assert raw_rows(db, "SELECT COUNT(*) FROM spans") == [(len(spans),)]


# --- what the reader returns -------------------------------------------------------------


def test_token_totals_take_one_dialect_per_span(st_tracer, store):
    counts = {
        "openinference": {
            _keys.OI_TOKENS_PROMPT: 10,
            _keys.OI_TOKENS_COMPLETION: 5,
            _keys.OI_TOKENS_TOTAL: 15,
        },
        "genai": {_keys.GENAI_INPUT_TOKENS: 7, _keys.GENAI_OUTPUT_TOKENS: 3},  # total 10
        "both dialects": {  # counted once: 100/50/150
            _keys.OI_TOKENS_PROMPT: 100,
            _keys.OI_TOKENS_COMPLETION: 50,
            _keys.OI_TOKENS_TOTAL: 150,
            _keys.GENAI_INPUT_TOKENS: 100,
            _keys.GENAI_OUTPUT_TOKENS: 50,
        },
        "traceloop": {
            _keys.TRACELOOP_PROMPT_TOKENS: 1,
            _keys.TRACELOOP_COMPLETION_TOKENS: 2,
            _keys.TRACELOOP_TOTAL_TOKENS: 3,
        },
        "no total": {_keys.OI_TOKENS_PROMPT: 4, _keys.OI_TOKENS_COMPLETION: 6},  # total 10
        "no tokens": {},
    }
    for offset, (name, tokens) in enumerate(counts.items()):
        with timed(st_tracer, name, offset, offset + 1, **in_session("tok", **tokens)):
            pass
    with timed(st_tracer, "quiet", 0, 1, **in_session("no-tokens")):
        pass

    summary = store().session("tok")
    assert (summary.prompt_tokens, summary.completion_tokens, summary.total_tokens) == (
        10 + 7 + 100 + 1 + 4,
        5 + 3 + 50 + 2 + 6,
        15 + 10 + 150 + 3 + 10,
    )
    quiet = store().session("no-tokens")
    assert (quiet.prompt_tokens, quiet.completion_tokens, quiet.total_tokens) == (None,) * 3


def test_sessions_are_summarised_newest_activity_first(st_tracer, store):
    # "early": two traces, three spans, one error; active from 0 to 300 ms.
    with timed(st_tracer, "turn 1", 0, 100, **in_session("early", "alice")):
        with timed(st_tracer, "tool", 10, 20, **in_session("early", "bob")):
            pass
    try:
        with timed(st_tracer, "turn 2", 200, 300, **in_session("early", "alice")):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    # "late" starts first but is active last.
    with timed(st_tracer, "long turn", -50, 900, **in_session("late")):
        pass

    summaries = store().sessions()
    assert [s.session_id for s in summaries] == ["late", "early"]
    early = summaries[1]
    assert (early.trace_count, early.span_count, early.error_count) == (2, 3, 1)
    assert early.user_id == "alice"  # the most common user among its spans
    assert early.first_start.tzinfo == timezone.utc
    assert early.first_start.timestamp() == pytest.approx(T0 / 1e9)
    assert (early.last_end - early.first_start).total_seconds() == pytest.approx(0.3)
    assert early.duration_seconds == pytest.approx(0.3)
    assert summaries[0].user_id is None
    assert [s.session_id for s in store().sessions(limit=1)] == ["late"]
    assert store().session("early") == early


def test_spans_come_in_start_order(st_tracer, store):
    for name, start in (("third", 30), ("first", 10), ("second", 20)):
        with timed(st_tracer, name, start, start + 5, **in_session("s")):
            pass
    spans = store().spans("s")
    assert [span.name for span in spans] == ["first", "second", "third"]
    assert spans[0].duration_ms == pytest.approx(5.0)
    assert spans[0].end_ns - spans[0].start_ns == 5 * MS
    assert spans[0].kind == "INTERNAL" and spans[0].status_code == "UNSET"


def test_traces_include_their_spans_outside_the_session(st_tracer, store):
    with timed(st_tracer, "request", 0, 100):  # started before the session was entered
        with timed(st_tracer, "chat", 10, 90, **in_session("s")):
            with timed(st_tracer, "llm", 20, 80, **in_session("s")):
                pass
    with timed(st_tracer, "later turn", 200, 250, **in_session("s")):
        pass
    with timed(st_tracer, "another session", 300, 400, **in_session("other")):
        pass

    traces = store().traces("s")
    assert [[span.name for span in t.spans] for t in traces] == [
        ["request", "chat", "llm"],
        ["later turn"],
    ]
    first = traces[0]
    assert [root.name for root in first.roots] == ["request"]
    assert [child.name for child in first.children(first.roots[0].span_id)] == ["chat"]
    assert first.spans[0].session_id is None
    assert first.duration_ms == pytest.approx(100.0)
    assert traces[0].start < traces[1].start
    # The session's own spans, and its summary, count only spans that carry its id.
    assert [span.name for span in store().spans("s")] == ["chat", "llm", "later turn"]
    assert store().session("s").span_count == 3


def test_a_span_whose_parent_was_not_stored_is_a_root(st_tracer, store):
    remote = SpanContext(trace_id=0x1234, span_id=0x99, is_remote=True, trace_flags=TraceFlags(1))
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    span = st_tracer.start_span(
        "handler", context=parent, attributes=in_session("s"), start_time=T0
    )
    span.end(end_time=T0 + MS)
    (stored,) = store().traces("s")
    assert stored.spans[0].parent_span_id == f"{0x99:016x}"
    assert [root.name for root in stored.roots] == ["handler"]


def test_unknown_session_names_the_id_the_store_and_the_fix(db, st_tracer, store):
    with timed(st_tracer, "x", 0, 1, **in_session("known")):
        pass
    opened = store()
    for lookup in (opened.session, opened.spans, opened.traces):
        with pytest.raises(SessionNotFoundError) as caught:
            lookup("missing-id")
        message = str(caught.value)
        assert "missing-id" in message
        assert str(db) in message
        assert "sessiontrace sessions" in message
        assert isinstance(caught.value, LookupError)


def test_results_are_immutable(st_tracer, store):
    with timed(st_tracer, "x", 0, 1, **in_session("s")):
        pass
    summary = store().session("s")
    with pytest.raises(pydantic.ValidationError):
        summary.span_count = 99
    with pytest.raises(pydantic.ValidationError):
        store().spans("s")[0].name = "renamed"


def test_reading_sees_spans_written_after_the_store_was_opened(st_tracer, store):
    with timed(st_tracer, "first", 0, 1, **in_session("s")):
        pass
    opened = store()
    with timed(st_tracer, "second", 2, 3, **in_session("s")):
        pass
    assert opened.session("s").span_count == 2


def test_a_missing_store_says_where_it_looked_and_how_to_fix_it(tmp_path):
    path = tmp_path / "nowhere" / "sessions.db"
    with pytest.raises(StoreNotFoundError) as caught:
        SessionStore(path)
    assert isinstance(caught.value, FileNotFoundError)
    assert caught.value.filename == str(path)
    message = str(caught.value)
    assert str(path) in message
    assert "sessiontrace.configure()" in message and "--store PATH" in message
    assert not path.exists()  # reading never creates a store


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreFormatError, match="not a sessiontrace store"):
        SessionStore(garbage)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(StoreFormatError, match="not a sessiontrace store"):
        SessionStore(other)
    with pytest.raises(StoreFormatError, match="not a file"):
        SessionStore(tmp_path)


def test_a_store_from_a_newer_version_is_refused_by_reader_and_exporter(tmp_path, memory):
    newer = tmp_path / "newer.db"
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreFormatError, match="newer"):
        SessionStore(newer)
    tracer, captured = memory
    with timed(tracer, "x", 0, 1):
        pass
    exporter = SQLiteSpanExporter(newer)
    assert exporter.export(captured.get_finished_spans()) is SpanExportResult.FAILURE
    assert raw_rows(newer, "SELECT name FROM sqlite_master") == []
