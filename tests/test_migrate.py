"""Stores written by the previous release: refused with the way on, or upgraded in place.

``tests/data/store_v2.db`` is a real layout-2 store written by revision 3891440's configure()
and SQLiteSpanExporter (``tests/data/make_store_v2.py`` says how), and
``store_v2_expected.json`` is what that version's reader listed for it. Every test works on a
copy: the reader refuses it with one line naming ``sessiontrace migrate --store PATH``; the
command upgrades it (progress on stderr, a summary on stdout), after which every command
reads it and shows the old numbers; a second run changes nothing; the exporter upgrades a v2
file itself; a migration killed with SIGKILL is finished by the next; a newer layout is
refused by both.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from test_summaries import assert_consistent, by_session, make_span, raw, summary_tables

from sessiontrace.cli import main
from sessiontrace.store import SessionStore, SQLiteSpanExporter, _migrate
from sessiontrace.store._schema import QUERY_COLUMNS, SCHEMA_VERSION

DATA = Path(__file__).parent / "data"
V2_STORE = DATA / "store_v2.db"
V2_EXPECTED = json.loads((DATA / "store_v2_expected.json").read_text())
V2_SPANS = 25  # rows in store_v2.db
# The fields of a session summary that version 2 listed.
V2_FIELDS = (
    "session_id",
    "user_id",
    "trace_count",
    "span_count",
    "first_start",
    "last_end",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "error_count",
)
READ_COMMANDS = [
    ["sessions"],
    ["show", "trip-1"],
    ["replay", "trip-1"],
    ["timeline", "trip-1", "--html", "-"],
    ["doctor"],
]


@pytest.fixture
def v2(tmp_path) -> Path:
    """A copy of the layout-2 store."""
    copy = tmp_path / "old" / "sessions.db"
    copy.parent.mkdir()
    shutil.copyfile(V2_STORE, copy)
    return copy


def cli(*arguments: str | os.PathLike[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([os.fspath(argument) for argument in arguments], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def version(db: Path) -> int:
    return raw(db, "PRAGMA user_version")[0][0]


def digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


def test_the_fixture_is_a_layout_2_store_of_the_previous_release():
    assert version(V2_STORE) == 2 == V2_EXPECTED["made_by_layout"]
    assert raw(V2_STORE, "SELECT COUNT(*) FROM spans") == [(V2_SPANS,)]
    assert V2_STORE.stat().st_size < 200_000
    assert not V2_STORE.with_name(V2_STORE.name + "-wal").exists()


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda command: command[0])
def test_the_reader_refuses_a_v2_store_with_the_command_that_upgrades_it(v2, command):
    before = digest(v2)
    code, out, err = cli("--store", v2, *command)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "layout version 2" in err
    assert f"`sessiontrace migrate --store {v2}`" in err
    assert digest(v2) == before and version(v2) == 2


def test_migrate_upgrades_the_store_in_place(v2):
    code, out, err = cli("migrate", "--store", v2)
    assert code == 0, err
    assert out.count("\n") == 1
    assert out.startswith(f"Upgraded the store at {v2} from layout 2 to {SCHEMA_VERSION} in ")
    assert f"migrating {v2}: {V2_SPANS} of {V2_SPANS} spans (100%)" in err
    assert version(v2) == SCHEMA_VERSION
    assert raw(v2, "SELECT COUNT(*) FROM spans") == [(V2_SPANS,)]
    assert raw(v2, "PRAGMA integrity_check") == [("ok",)]
    assert_consistent(v2)


def test_a_migrated_store_lists_what_the_old_release_listed(v2):
    """The numbers come from the v2 code's own SessionStore, recorded when the fixture was
    made (tests/data/make_store_v2.py), not typed in by hand."""
    assert cli("migrate", "--store", v2)[0] == 0
    with SessionStore(v2) as store:
        listed = store.sessions()
        traces = {
            summary.session_id: sorted(
                [trace.trace_id, len(trace.spans)] for trace in store.traces(summary.session_id)
            )
            for summary in listed
        }
        trip, child, failed = (
            store.session("trip-1"),
            store.session("trip-1.hotels"),
            store.session("trip-2"),
        )
    got = [summary.model_dump(mode="json") for summary in listed]
    old = V2_EXPECTED["sessions"]
    assert [s["session_id"] for s in got] == [s["session_id"] for s in old]
    for mine, theirs in zip(got, old, strict=True):
        assert {f: mine[f] for f in V2_FIELDS} == {f: theirs[f] for f in V2_FIELDS}
        assert mine["duration_seconds"] == pytest.approx(theirs["duration_seconds"])
    assert traces == V2_EXPECTED["traces"]
    # What layout 3 adds, read from the old spans' attributes.
    assert (trip.name, trip.status, trip.subsessions) == ("plan-trip", "ok", ("trip-1.hotels",))
    assert (child.parent_session_id, child.name) == ("trip-1", "hotels")
    assert (failed.status, failed.name) == ("error", "book-flight")
    assert trip.llm_calls == 2 and child.llm_calls == 1
    assert trip.with_subsessions is not None
    assert trip.with_subsessions.prompt_tokens == trip.prompt_tokens + child.prompt_tokens
    assert by_session_statuses(v2) == {
        "trip-1": "ok",
        "trip-1.hotels": "ok",
        "trip-2": "error",
        "chat-1": "ok",
        "chat-2": "error",
        "chat-3": "ok",
    }
    # Every step span got its index, every session span its key mask.
    assert raw(
        v2,
        "SELECT COUNT(*) FROM spans WHERE json_extract(attributes, '$.\"sessiontrace.step.index\"')"
        " IS NOT NULL AND step_index IS NULL",
    ) == [(0,)]
    assert raw(v2, "SELECT COUNT(*) FROM spans WHERE session_id IS NOT NULL AND key_mask = 0") == [
        (0,)
    ]


def by_session_statuses(db: Path) -> dict[str, str]:
    with SessionStore(db) as store:
        return {summary.session_id: summary.status for summary in store.sessions()}


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda command: command[0])
def test_every_command_reads_a_migrated_store(v2, command, tmp_path):
    assert cli("migrate", "--store", v2)[0] == 0
    if command[0] == "timeline":
        command = [*command[:-1], str(tmp_path / "trip.html")]
    code, out, err = cli("--store", v2, *command)
    # doctor exits 1 when it finds something to report (chat-3's request span has no session).
    assert code in ((0, 1) if command[0] == "doctor" else (0,)), err
    assert "error" not in err.lower() and "warning" not in err.lower(), err
    if command[0] == "timeline":
        assert "trip-1" in (tmp_path / "trip.html").read_text()
    elif command[0] in ("show", "replay"):
        assert "trip-1" in out
    elif command[0] == "sessions":
        assert all(s["session_id"] in out for s in V2_EXPECTED["sessions"])


def test_migrating_twice_changes_nothing(v2):
    assert cli("migrate", "--store", v2)[0] == 0
    with closing(sqlite3.connect(v2)) as conn:
        tables = summary_tables(conn)
    code, out, err = cli("migrate", "--store", v2)
    assert code == 0
    assert out == f"The store at {v2} is already at layout {SCHEMA_VERSION}.\n"
    assert err == ""
    with closing(sqlite3.connect(v2)) as conn:
        assert summary_tables(conn) == tables


def test_the_exporter_upgrades_a_v2_store_and_then_stores_new_spans(v2, caplog):
    exporter = SQLiteSpanExporter(v2)
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        result = exporter.export(
            [make_span(0xABC, 0xDEF, session="chat-1", user="ada", prompt=4, completion=1)]
        )
    exporter.shutdown()
    assert result is SpanExportResult.SUCCESS
    assert version(v2) == SCHEMA_VERSION
    assert any("upgrading the store" in record.getMessage() for record in caplog.records)
    sessions = by_session(assert_consistent(v2))
    old = {s["session_id"]: s for s in V2_EXPECTED["sessions"]}
    assert sessions["chat-1"]["span_count"] == old["chat-1"]["span_count"] + 1
    assert sessions["chat-1"]["prompt_tokens"] == old["chat-1"]["prompt_tokens"] + 4
    assert cli("--store", v2, "sessions")[0] == 0


def test_a_missing_store_and_a_file_that_is_not_a_store(tmp_path):
    code, out, err = cli("migrate", "--store", tmp_path / "nowhere.db")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "nowhere.db" in err
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = digest(other)
    code, out, err = cli("migrate", "--store", other)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "not a sessiontrace store" in err
    assert digest(other) == before
    assert raw(other, "SELECT name FROM sqlite_master") == [("notes",)]


def test_a_store_from_a_newer_release_is_refused_by_migrate_and_the_reader(tmp_path):
    newer = tmp_path / "newer.db"
    exporter = SQLiteSpanExporter(newer)
    assert exporter.export([make_span(1, 1, session="s")]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = digest(newer)
    for arguments in (["migrate"], ["sessions"]):
        code, out, err = cli("--store", newer, *arguments)
        assert code == 2, arguments
        assert out == "" and err.count("\n") == 1
        assert "layout version 99" in err and "upgrade sessiontrace" in err
    assert digest(newer) == before and version(newer) == 99


def test_a_big_migration_prints_progress_lines(v2, monkeypatch):
    bigger(v2, copies=40)  # 1,025 spans
    monkeypatch.setattr(_migrate, "PROGRESS_INTERVAL_SECONDS", 0)
    monkeypatch.setattr(_migrate, "CHUNK_ROWS", 100)
    code, out, err = cli("migrate", "--store", v2)
    assert code == 0
    lines = [line for line in err.split("\r") if line]
    assert len(lines) >= 10
    done = [int(line.split(": ")[1].split(" of ")[0].replace(",", "")) for line in lines]
    assert done == sorted(done) and done[-1] == 1025
    assert lines[-1].rstrip("\n").endswith("1,025 of 1,025 spans (100%)")
    assert "from layout 2 to" in out


# --- an interrupted migration ----------------------------------------------------------------


def bigger(db: Path, copies: int) -> int:
    """Add ``copies`` copies of every span of a v2 store, each in its own traces and sessions
    (ids and attributes changed alike), the way the old exporter would have stored them."""
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(spans)")]
        changed = {
            "trace_id": "substr(trace_id, 1, 24) || printf('%08x', n)",
            "session_id": "CASE WHEN session_id IS NULL THEN NULL ELSE session_id || '~' || n END",
            "attributes": "CASE WHEN session_id IS NULL THEN attributes ELSE json_set(attributes, "
            "'$.\"session.id\"', session_id || '~' || n, '$.\"gen_ai.conversation.id\"', "
            "session_id || '~' || n) END",
        }
        select = ", ".join(changed.get(column, column) for column in columns)
        conn.execute("BEGIN")
        conn.execute(
            f"WITH RECURSIVE copies(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM copies "
            f"WHERE n < {copies}) INSERT INTO spans ({', '.join(columns)}) "
            f"SELECT {select} FROM spans, copies"
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0])


def test_a_migration_killed_midway_is_finished_by_the_next(v2, tmp_path):
    copies = 3200
    spans = bigger(v2, copies=copies)  # 80,025 spans: several seconds of work, killed after one
    control = tmp_path / "control.db"
    shutil.copyfile(v2, control)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONTRACE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sessiontrace", "migrate", "--store", str(v2)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        seen = b""
        while b"migrating" not in seen:  # the first progress line: it is filling in columns
            chunk = os.read(process.stderr.fileno(), 4096)
            assert chunk, f"migrate ended before its first progress line: {seen!r}"
            seen += chunk
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert version(v2) == 2, "a half-done migration must not claim the new layout"
    filled = raw(v2, "SELECT COUNT(*) FROM spans WHERE key_mask != 0")[0][0]
    assert filled > 0, "killed before it started: the test proves nothing"
    code, _, err = cli("--store", v2, "sessions")
    assert code == 2 and "sessiontrace migrate --store" in err

    code, out, err = cli("migrate", "--store", v2)
    assert code == 0, err
    assert "from layout 2 to" in out
    assert cli("migrate", "--store", control)[0] == 0
    assert version(v2) == SCHEMA_VERSION
    assert raw(v2, "SELECT COUNT(*) FROM spans") == [(spans,)]
    assert raw(v2, "PRAGMA integrity_check") == [("ok",)]
    # The same as a migration that ran through (which recounts the tables from the spans):
    # the query columns of every span, and every summary table.
    query = f"SELECT trace_id, span_id, {', '.join(QUERY_COLUMNS)} FROM spans ORDER BY 1, 2"
    assert raw(v2, query) == raw(control, query)
    with closing(sqlite3.connect(v2)) as finished, closing(sqlite3.connect(control)) as whole:
        tables = summary_tables(finished)
        assert tables == summary_tables(whole)  # no span has a cost: exact
    assert len(tables["sessions"]) == 6 * (copies + 1)
    code, out, _ = cli("--store", v2, "sessions")
    assert code == 0 and "trip-1~1600" in out
