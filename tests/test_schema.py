"""The store's layout: what a new file looks like, and that reads of one session use indexes.

Timing a read at a million spans belongs in benchmarks/store_scale.py; what a test can check
without a clock is the plan SQLite makes: a read of one session, one trace or the newest
sessions must search an index, never scan the spans table.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from sessiontrace import _keys
from sessiontrace.store import SCHEMA_VERSION, SessionStore
from sessiontrace.store._listing import NEWEST_FIRST, SUMMARY_SELECT
from sessiontrace.store._retention import _SESSIONLESS_TRACES
from sessiontrace.store._schema import PAGE_SIZE, ensure_schema, summaries_current
from tests.helpers.stored import MS, T0, store_tracer


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "sessions.db"
    with store_tracer(path) as tracer:
        for number in range(3):
            span = tracer.start_span(
                "turn",
                attributes={_keys.OI_SESSION_ID: f"s{number}", _keys.OI_USER_ID: "ada"},
                start_time=T0 + number * MS,
            )
            span.end(end_time=T0 + (number + 1) * MS)
    return path


def plan(db: Path, sql: str, parameters: tuple[object, ...]) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, parameters)]


def test_a_new_store_has_large_pages_incremental_vacuum_and_the_current_version(db):
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_no_index_repeats_another_or_the_primary_key(db):
    with closing(sqlite3.connect(db)) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            indexes = []
            for _, name, *_ in conn.execute(f"PRAGMA index_list({table})"):
                columns = tuple(row[2] for row in conn.execute(f"PRAGMA index_info({name})"))
                indexes.append((name, columns))
            for name, columns in indexes:
                for other, other_columns in indexes:
                    # An index whose columns begin another's serves nothing the longer one
                    # does not (the trace_id index of layout 1 began the primary key).
                    if name != other:
                        assert other_columns[: len(columns)] != columns, (table, name, other)


@pytest.mark.parametrize(
    ("what", "sql", "parameters"),
    [
        ("newest sessions", SUMMARY_SELECT + NEWEST_FIRST + " LIMIT 20", ()),
        ("one session's summary", SUMMARY_SELECT + " WHERE s.session_id = ?", ("s1",)),
        ("one session's spans", "SELECT * FROM spans WHERE session_id = ?", ("s1",)),
        (
            "one session's traces",
            "SELECT * FROM spans WHERE trace_id IN "
            "(SELECT trace_id FROM spans WHERE session_id = ?)",
            ("s1",),
        ),
        (
            "sub-sessions",
            "SELECT session_id FROM sessions WHERE parent_session_id = ?",
            ("s1",),
        ),
        ("traces outside any session (prune)", _SESSIONLESS_TRACES, ()),
        (
            "one trace's spans outside any session (prune)",
            "SELECT COUNT(*) FROM spans WHERE trace_id = ? AND session_id IS NULL",
            ("0" * 32,),
        ),
    ],
)
def test_reads_of_one_session_search_indexes_and_never_scan_the_store(db, what, sql, parameters):
    steps = plan(db, sql, parameters)
    # "SCAN spans" reads every span; "SCAN s USING INDEX ..." walks an index in order (and
    # stops at the limit), which is what the newest-first listing should do.
    scans = [step for step in steps if step.startswith("SCAN") and "USING" not in step]
    assert not scans, (what, steps)


def test_the_listing_reads_the_summary_not_the_spans(db):
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("DELETE FROM spans")  # the summary stays: the listing must not need spans
    with SessionStore(db) as store:
        assert [summary.session_id for summary in store.sessions()] == ["s2", "s1", "s0"]


def test_ensure_schema_is_idempotent_and_keeps_the_data(db):
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        ensure_schema(conn)
        assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 3


# What earlier builds of layout 3 wrote: sessions without the recounted columns; a traces
# table, a session_traces table, and the index of spans by session only.
EARLIER_SUMMARIES = {
    "sessions without user_count": ["ALTER TABLE sessions DROP COLUMN user_count"],
    "the traces table of the first release": [
        "CREATE TABLE traces (trace_id TEXT PRIMARY KEY, span_count INTEGER NOT NULL, "
        "session_spans INTEGER NOT NULL, key_mask_or INTEGER NOT NULL, "
        "key_mask_and INTEGER NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL) "
        "WITHOUT ROWID",
        "CREATE TABLE session_traces (session_id TEXT NOT NULL, trace_id TEXT NOT NULL, "
        "PRIMARY KEY (session_id, trace_id)) WITHOUT ROWID",
        "DROP INDEX spans_unsessioned",
        "DROP INDEX spans_session_trace",
        "CREATE INDEX spans_session_id ON spans (session_id)",
    ],
}


@pytest.mark.parametrize("earlier", EARLIER_SUMMARIES)
def test_summary_tables_of_another_shape_are_refused_then_rebuilt(db, tmp_path, earlier):
    import io
    import shutil

    from sessiontrace.cli import main

    with SessionStore(db) as store:
        before = [summary.model_dump() for summary in store.sessions()]
    for suffix in ("", "-wal"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", tmp_path / f"copy.db{suffix}")
    copy = tmp_path / "copy.db"
    for path in (db, copy):
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            for statement in EARLIER_SUMMARIES[earlier]:
                conn.execute(statement)
    err = io.StringIO()
    assert main(["--store", str(db), "sessions"], stdout=io.StringIO(), stderr=err) == 2
    assert f"sessiontrace migrate --store {db}" in err.getvalue()
    assert len(err.getvalue().splitlines()) == 1
    # `migrate` rebuilds them from the spans ...
    assert main(["--store", str(db), "migrate"], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    with SessionStore(db) as store:
        assert [summary.model_dump() for summary in store.sessions()] == before
    # ... and so does a writer before its first batch, which it then stores.
    with store_tracer(copy) as tracer:
        tracer.start_span("late", attributes={_keys.OI_SESSION_ID: "s9"}, start_time=T0).end(
            end_time=T0 + 10 * MS
        )
    with SessionStore(copy) as store:
        listed = {summary.session_id: summary.model_dump() for summary in store.sessions()}
    assert listed.pop("s9")["span_count"] == 1
    assert sorted(listed.values(), key=lambda s: s["session_id"]) == sorted(
        before, key=lambda s: s["session_id"]
    )
    for path in (db, copy):
        with closing(sqlite3.connect(path)) as conn:
            assert summaries_current(conn)
            names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
            assert names.isdisjoint({"traces", "session_traces", "spans_session_id"})
            assert {"spans_unsessioned", "spans_session_trace"} <= names
