"""The default pipeline to the local store under load, across processes and forks, and with
text no encoder accepts: every span is stored, or counted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from sessiontrace.export._losses import LEDGER
from sessiontrace.store import SQLiteSpanExporter
from sessiontrace.store._schema import COLUMNS


def rows(db, query: str = "SELECT COUNT(*) FROM spans") -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(query).fetchall()


def run(script: str, db, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SESSIONTRACE_"))
    }
    environment["SESSIONTRACE_STORE_PATH"] = str(db)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


BURST = """
    import sys
    import sessiontrace
    from opentelemetry import trace
    sessiontrace.configure()
    tracer = trace.get_tracer("burst")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else {count}
    with sessiontrace.using_attributes(session_id="{session}", user_id="ada"):
        for index in range(count):
            with tracer.start_as_current_span("span", attributes={{"index": index}}):
                pass
"""


def test_a_burst_of_20000_spans_with_defaults_is_stored_whole(tmp_path):
    db = tmp_path / "sessions.db"
    run(BURST.format(count=20_000, session="burst"), db)
    assert rows(db) == [(20_000,)]
    assert rows(db, "SELECT COUNT(DISTINCT span_id) FROM spans WHERE session_id='burst'") == [
        (20_000,)
    ]
    assert rows(db, "SELECT COUNT(*) FROM losses") == [(0,)]


def test_two_processes_writing_one_store_at_once_are_stored_whole(tmp_path):
    db = tmp_path / "sessions.db"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("OTEL_")
    }
    environment["SESSIONTRACE_STORE_PATH"] = str(db)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(BURST.format(count=5_000, session=name))],
            env=environment,
        )
        for name in ("first", "second")
    ]
    assert [writer.wait(timeout=240) for writer in writers] == [0, 0]
    assert rows(db, "SELECT session_id, COUNT(*) FROM spans GROUP BY 1 ORDER BY 1") == [
        ("first", 5_000),
        ("second", 5_000),
    ]


FORKS = """
    import os, sys, threading
    import sessiontrace
    from opentelemetry import trace
    batch = sys.argv[1] == "batch"
    sessiontrace.configure(batch=batch)
    tracer = trace.get_tracer("fork")
    stop = threading.Event()

    def busy():  # a thread ending spans while the main thread forks
        while not stop.is_set():
            with tracer.start_as_current_span("background"):
                pass

    thread = threading.Thread(target=busy)
    thread.start()
    children = []
    for index in range({children}):
        pid = os.fork()
        if pid == 0:
            with sessiontrace.using_session(f"child-{{index}}"):
                for _ in range(10):
                    with tracer.start_as_current_span("in-child"):
                        pass
            trace.get_tracer_provider().force_flush()
            os._exit(0)
        children.append(pid)
    stop.set()
    thread.join()
    for pid in children:
        print(pid, flush=True)
    for pid in children:
        os.waitpid(pid, 0)
"""


@pytest.mark.parametrize("mode", ["batch", "inline"])
def test_forked_children_never_hang_and_their_spans_are_stored(tmp_path, mode):
    db = tmp_path / "sessions.db"
    children = 30
    script = textwrap.dedent(FORKS.format(children=children))
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("OTEL_")
    }
    environment["SESSIONTRACE_STORE_PATH"] = str(db)
    with subprocess.Popen(
        [sys.executable, "-c", script, mode], env=environment, stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            parent.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            # A hung child keeps the parent in waitpid: end them all, then fail.
            parent.kill()
            output, _ = parent.communicate()
            for pid in (int(line) for line in output.split()):
                os.kill(pid, signal.SIGKILL)
            pytest.fail("forked children hung")
    assert parent.returncode == 0
    stored = rows(
        db, "SELECT COUNT(*), COUNT(DISTINCT session_id) FROM spans WHERE name = 'in-child'"
    )
    assert stored == [(children * 10, children)]


def test_one_lone_surrogate_costs_only_its_characters(tmp_path):
    LEDGER.reset()
    db = tmp_path / "sessions.db"
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter := SQLiteSpanExporter(db)))
    tracer = provider.get_tracer("t")
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    batched = TracerProvider(shutdown_on_exit=False)
    batched.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
    batch_tracer = batched.get_tracer("t")
    for index in range(200):
        batch_tracer.start_span(f"ok-{index}").end()
    batch_tracer.start_span(
        os.fsdecode(b"bad-\xff"), attributes={"file": os.fsdecode(b"r\xe9sum\xe9.txt")}
    ).end()
    batched.force_flush()
    tracer.start_span("alone", attributes={"metadata": "x\ud800y"}).end()
    assert rows(db) == [(202,)]
    assert rows(db, "SELECT name, attributes FROM spans WHERE name LIKE 'bad-%'") == [
        ("bad-\ufffd", '{"file":"r\ufffdsum\ufffd.txt"}')
    ]
    # Three values repaired: the name, the file (one value, however many characters), the
    # metadata; recorded in the store with the batches that held them.
    assert LEDGER.totals() == {("repaired", "unencodable-text", "store"): 3}
    exporter.shutdown()
    assert rows(db, "SELECT kind, reason, SUM(count) FROM losses GROUP BY 1, 2") == [
        ("repaired", "unencodable-text", 3)
    ]
    batched.shutdown()
    provider.shutdown()
    LEDGER.reset()


def test_losses_are_recorded_in_the_store_with_their_fix(tmp_path):
    LEDGER.reset()
    db = tmp_path / "sessions.db"
    exporter = SQLiteSpanExporter(db)
    LEDGER.record("queue-full", "store", 1_204, "the export queue was full; raise it", log=False)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("after").end()
    (record,) = rows(db, "SELECT kind, reason, destination, count, message, pid FROM losses")
    assert record == (
        "dropped",
        "queue-full",
        "store",
        1_204,
        "the export queue was full; raise it",
        os.getpid(),
    )
    provider.shutdown()
    LEDGER.reset()


def test_a_store_that_cannot_be_written_is_counted_not_raised(tmp_path):
    LEDGER.reset()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    exporter = SQLiteSpanExporter(blocker / "sessions.db")
    from sessiontrace.export._queue import ExportQueue

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(ExportQueue(exporter, destination="store"))
    for _ in range(5):
        provider.get_tracer("t").start_span("lost").end()
    provider.shutdown()
    assert LEDGER.totals() == {("dropped", "export-failed", "store"): 5}
    LEDGER.reset()


def test_the_exporter_keeps_one_connection_across_batches(tmp_path):
    db = tmp_path / "sessions.db"
    exporter = SQLiteSpanExporter(db)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    tracer.start_span("one").end()
    first = exporter._conn
    tracer.start_span("two").end()
    assert first is not None and exporter._conn is first
    provider.shutdown()
    assert exporter._conn is None
    assert time.time() > 0


@pytest.mark.parametrize("scoped", [True, False], ids=["scoped", "fallback"])
def test_stamped_keys_survive_the_attribute_limit_into_the_store(tmp_path, monkeypatch, scoped):
    from sessiontrace import _reservation, configure, using_session
    from sessiontrace.store import SessionStore

    monkeypatch.setattr(_reservation, "SCOPED", scoped)
    db = tmp_path / "sessions.db"
    provider = configure(store_path=db, tracer_provider=TracerProvider(shutdown_on_exit=False))
    with using_session("kept-through-the-limit"):
        span = provider.get_tracer("t").start_span("full")
        for index in range(200):
            span.set_attribute(f"extra.{index}", index)
        span.end()
    provider.shutdown()
    (stored,) = SessionStore(db).sessions()
    assert stored.session_id == "kept-through-the-limit"


def test_rows_are_the_same_on_the_fast_read_path_and_the_public_one(monkeypatch):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sessiontrace import _spans
    from sessiontrace.store import _span_rows as _exporter

    assert _spans.FAST_READ  # the installed SDK passes the self-check
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("plain", attributes={"session.id": "s", "n": 1}):
        pass
    with tracer.start_as_current_span("with-event") as span:
        span.add_event("said", {"text": "hi"})
        span.set_attribute("llm.token_count.prompt", 3)
    fast = [_exporter.span_to_row(span) for span in memory.get_finished_spans()]
    monkeypatch.setattr(_spans, "FAST_READ", False)
    public = [_exporter.span_to_row(span) for span in memory.get_finished_spans()]
    assert fast == public
    events = COLUMNS.index("events")
    assert '"said"' in public[1][events] and public[1][COLUMNS.index("prompt_tokens")] == 3


def test_a_token_count_too_big_for_sqlite_costs_nothing(tmp_path):
    db = tmp_path / "sessions.db"
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    tracer = provider.get_tracer("t")
    tracer.start_span("huge", attributes={"llm.token_count.prompt": 10**30}).end()
    tracer.start_span("fine", attributes={"llm.token_count.prompt": 7}).end()
    assert rows(db, "SELECT name, prompt_tokens FROM spans ORDER BY name") == [
        ("fine", 7),
        ("huge", None),
    ]
    provider.shutdown()
