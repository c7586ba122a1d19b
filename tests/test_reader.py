"""SessionStore on damaged and locked-down stores: malformed rows, read-only files, losses.

Every store is written by the real SQLiteSpanExporter; a test then damages one row with
sqlite3 the way another tool or a bad disk could. For NULLs in columns the layout declares
NOT NULL, the store is created with the same columns minus the constraints (an older or
foreign writer), and the exporter then writes into it. Read-only stores are read by a forked
child that drops root for the ``nobody`` user, since root ignores file permissions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context

from helpers.stored import MS, T0, store_tracer
from sessiontrace import _keys
from sessiontrace.cli import main
from sessiontrace.store import SCHEMA_VERSION, SessionStore, StoredLoss
from sessiontrace.store._schema import COLUMNS, SUMMARY_TABLES, ensure_schema
from sessiontrace.store._summaries import rebuild_all

S = 1_000_000_000
NOBODY = 65534
NAMES = ["a-root", "a-one", "a-two", "b-root"]


def span(tracer, name, start_ms, *, session="s1", root=False, **attributes):
    attributes = {_keys.OI_SESSION_ID: session, _keys.OI_USER_ID: "ada", **attributes}
    return tracer.start_as_current_span(
        name,
        context=Context() if root else None,
        attributes=attributes,
        start_time=T0 + start_ms * MS,
        end_on_exit=False,
    )


def write_session(db: Path, session: str = "s1", offset_ms: int = 0) -> None:
    """Two traces: a-root with children a-one and a-two, then b-root."""
    with store_tracer(db) as t:
        with span(t, "a-root", offset_ms, session=session, root=True) as root:
            for index, name in enumerate(("a-one", "a-two")):
                start = offset_ms + 10 + index * 10
                with span(t, name, start, session=session, **{_keys.OI_INPUT_VALUE: name}) as s:
                    s.add_event("retry", {"attempt": 1}, timestamp=T0 + (start + 1) * MS)
                    s.end(end_time=T0 + (start + 5) * MS)
            root.end(end_time=T0 + (offset_ms + 40) * MS)
        with span(t, "b-root", offset_ms + 100, session=session, root=True) as other:
            other.end(end_time=T0 + (offset_ms + 110) * MS)


def relaxed(db: Path) -> None:
    """The spans table without NOT NULL, as a foreign or older writer might have made it."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    columns = ", ".join(COLUMNS)
    conn.execute(f"CREATE TABLE spans ({columns}, PRIMARY KEY (trace_id, span_id))")
    conn.execute(
        "CREATE TABLE losses (id INTEGER PRIMARY KEY, kind, reason, destination, count, "
        "first_ns, last_ns, message, pid)"
    )
    conn.execute("CREATE INDEX spans_session_id ON spans (session_id)")
    for statement in SUMMARY_TABLES:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()


def damage(db: Path, name: str, column: str, sql_value: str) -> str:
    """Set ``column`` of the span called ``name`` to ``sql_value``; returns its span id."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        span_id = conn.execute("SELECT span_id FROM spans WHERE name = ?", (name,)).fetchone()[0]
        conn.execute(f"UPDATE spans SET {column} = {sql_value} WHERE span_id = ?", (span_id,))
        # As a program writing the store by hand must: bring the summary tables up to date.
        rebuild_all(conn)
    finally:
        conn.close()
    return span_id


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "sessions.db"
    relaxed(path)
    write_session(path)
    return path


# --- malformed rows ----------------------------------------------------------------------

DAMAGE = [
    ("attributes", "'{not json'", "attributes is not JSON"),
    ("attributes", "'[1, 2]'", "attributes is JSON list, not an object"),
    ("attributes", "'" + "[" * 100_000 + "'", "attributes is not JSON"),
    ("attributes", "NULL", "attributes is NULL, not JSON text"),
    ("attributes", """'{"a": """ + "[" * 300 + "]" * 300 + "}'", "nested deeper than 64 levels"),
    ("resource", "x'ff00'", "resource is not valid UTF-8"),
    ("events", "'{}'", "events is JSON dict, not a list"),
    ("events", """'[1, {"name": 5, "timestamp": "x"}, {"timestamp": 1e400}]'""", "3 events"),
    ("events", """'[{"name": "e", "timestamp": 100000000000000000000000}]'""", "1 event malformed"),
    ("name", "CAST(x'ff6869' AS TEXT)", "name is not valid UTF-8"),
    ("name", "NULL", "name is NULL"),
    ("kind", "x'00'", "kind is a blob, not text"),
    ("status_code", "NULL", "status_code is NULL"),
    ("start_ns", "'abc'", "start_ns is not a whole number ('abc')"),
    ("end_ns", "1.5", "end_ns is not a whole number (1.5)"),
    ("prompt_tokens", "'lots'", "prompt_tokens is not a whole number"),
    ("total_tokens", "x'01'", "total_tokens is not a whole number"),
    ("status_message", "CAST(x'c328' AS TEXT)", "status_message is not valid UTF-8"),
]


@pytest.mark.parametrize(("column", "value", "problem"), DAMAGE, ids=lambda v: str(v)[:30])
def test_one_bad_row_is_read_degraded_and_reported(db, column, value, problem):
    span_id = damage(db, "a-one", column, value)
    with SessionStore(db) as store:
        traces = store.traces("s1")
        assert len(store.spans("s1")) == 4
        (bad,) = store.bad_rows
    spans = {s.span_id: s for trace in traces for s in trace.spans}
    assert len(spans) == 4  # the damaged span is still there, with the bad value replaced
    assert span_id in bad.row and not bad.skipped
    assert any(problem in text for text in bad.problems), bad.problems
    others = [s for s in spans.values() if s.span_id != span_id]
    assert sorted(s.name for s in others) == ["a-root", "a-two", "b-root"]
    assert all(s.events or s.name != "a-two" for s in others)  # neighbours intact


@pytest.mark.parametrize(("column", "value", "problem"), DAMAGE, ids=lambda v: str(v)[:30])
def test_every_command_shows_the_rest_and_warns_once(db, column, value, problem):
    span_id = damage(db, "a-one", column, value)
    for command in (["show", "s1"], ["replay", "s1"], ["timeline", "s1", "--html", "-"]):
        code, out, err = run("--store", str(db), *command)
        assert code == 0, (command, err)
        assert "a-two" in out and "b-root" in out, command
        lines = err.splitlines()
        assert len(lines) == 1, (command, err)
        assert lines[0].startswith("sessiontrace: warning: span row trace ")
        assert span_id in lines[0] and problem in lines[0]
    more = (["show", "s1", "--json"], ["replay", "s1", "--json"], ["replay", "s1", "--full"])
    for command in more:
        code, out, err = run("--store", str(db), *command)
        assert code == 0 and "b-root" in out, (command, err)
    code, out, err = run("--store", str(db), "sessions")
    assert code == 0 and "s1" in out
    # The summaries of a damaged row look clean: only a read of every span meets it.
    code, out, _ = run("--store", str(db), "doctor", "--every-span")
    assert code == 1
    assert "Rows that cannot be read whole: 1" in out and span_id in out
    document = json.loads(run("--store", str(db), "doctor", "s1", "--json")[1])
    (bad,) = document["bad_rows"]
    assert span_id in bad["row"] and problem in " ".join(bad["problems"])
    assert document["problem_count"] >= 1


def test_a_row_without_ids_is_left_out_and_named_by_its_rowid(db):
    damage(db, "a-one", "trace_id", "NULL")
    with SessionStore(db) as store:
        names = [s.name for s in store.spans("s1")]
        (bad,) = store.bad_rows
    assert sorted(names) == ["a-root", "a-two", "b-root"]
    assert bad.skipped and bad.row.endswith("(trace ? span " + bad.row.split("span ")[-1])
    code, out, err = run("--store", str(db), "replay", "s1")
    assert code == 0 and "b-root" in out
    assert "left out" in err and "trace_id" not in out


def test_numbers_out_of_range_in_the_summary_do_not_break_the_listing(db):
    damage(db, "a-one", "prompt_tokens", str(2**62))
    damage(db, "a-two", "prompt_tokens", str(2**62))  # SUM would overflow; TOTAL does not
    damage(db, "b-root", "start_ns", "'soon'")
    with SessionStore(db) as store:
        (summary,) = store.sessions()
    assert summary.prompt_tokens is not None and summary.prompt_tokens > 2**62
    assert summary.span_count == 4


ANY_VALUE = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.sampled_from(['{"a": 1}', "[]", '[{"name": 1}]', "{", "null", '"x"', "1e999", "[[[["]),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "sessions.db"
    relaxed(path)
    write_session(path)
    return path


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(NAMES), st.sampled_from(COLUMNS), ANY_VALUE),
        min_size=1,
        max_size=4,
    )
)
def test_no_damage_to_any_column_makes_a_command_fail(template, changes):
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "sessions.db"
        shutil.copy(template, db)
        conn = sqlite3.connect(db, isolation_level=None)
        for name, column, value in changes:
            # Two rows cannot share ids: not a damage a store can hold.
            with contextlib.suppress(sqlite3.IntegrityError):
                conn.execute(f"UPDATE spans SET {column} = ? WHERE name = ?", (value, name))
        conn.close()
        with SessionStore(db) as store:
            for summary in store.sessions():
                store.traces(summary.session_id)
                store.spans(summary.session_id)
        commands = [["sessions"], ["show", "latest"], ["replay", "latest"], ["doctor"]]
        for command in [*commands, ["timeline", "latest", "--html", "-"]]:
            code, _, err = run("--store", str(db), *command)
            assert code in (0, 1), (command, err)
            assert all(line.startswith("sessiontrace: ") for line in err.splitlines()), err


# --- read-only stores --------------------------------------------------------------------


def as_other_user(fn: Callable[[], Any]) -> Any:
    """``fn()`` run by a user the files' permissions apply to: ``nobody`` in a fork if root."""
    if os.getuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, send the result back, never return to pytest
        os.close(read_end)
        code = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = json.dumps(fn())
        except BaseException as exc:
            payload, code = json.dumps({"child error": repr(exc)}), 1
        with os.fdopen(write_end, "w") as pipe:
            pipe.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(payload)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` may enter (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="sessiontrace-ro-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for item in [path, *path.iterdir()]:
            item.chmod(0o700 if item.is_dir() else 0o600)
        shutil.rmtree(path)


def lock_down(directory: Path, file_mode: int = 0o444) -> None:
    for item in directory.iterdir():
        item.chmod(file_mode)
    directory.chmod(0o555)


def cli(*argv: str) -> Callable[[], list[Any]]:
    return lambda: list(run(*argv))


@pytest.fixture(autouse=True, scope="module")
def _warm_up(tmp_path_factory) -> None:
    # Run every command once in this process, so the forked child, which may no longer read
    # the interpreter's files once it is nobody, has nothing left to import.
    db = tmp_path_factory.mktemp("warm") / "sessions.db"
    write_session(db)
    for command in (["sessions"], ["show", "s1"], ["doctor"], ["sessions", "--json"]):
        run("--store", str(db), *command)


def test_a_checkpointed_store_in_a_read_only_directory_opens(shared_dir):
    db = shared_dir / "sessions.db"
    write_session(db)
    lock_down(shared_dir)
    assert sorted(p.name for p in shared_dir.iterdir()) == ["sessions.db"]  # no -wal, -shm
    code, out, err = as_other_user(cli("--store", str(db), "sessions"))
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith("s1 ")
    code, out, err = as_other_user(cli("--store", str(db), "show", "s1"))
    assert code == 0 and "a-two" in out


def test_a_live_store_with_its_wal_and_shm_is_read_whole(shared_dir):
    db = shared_dir / "sessions.db"
    write_session(db)
    holder = sqlite3.connect(db)  # another reader keeps the log from being checkpointed away
    holder.execute("SELECT 1 FROM spans").fetchall()
    try:
        write_session(db, "s2", offset_ms=1000)
        assert (shared_dir / "sessions.db-wal").stat().st_size > 0
        lock_down(shared_dir)
        code, out, err = as_other_user(cli("--store", str(db), "sessions"))
    finally:
        holder.close()
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["s2", "s1"]


def test_a_pending_log_without_shm_is_read_as_far_as_it_can_be_and_said(shared_dir, tmp_path):
    live = tmp_path / "sessions.db"
    write_session(live)
    holder = sqlite3.connect(live)
    holder.execute("SELECT 1 FROM spans").fetchall()
    try:
        write_session(live, "s2", offset_ms=1000)
        # What a writer that died leaves behind: the file and its log, no -shm.
        shutil.copy(live, shared_dir / "sessions.db")
        shutil.copy(live.with_name("sessions.db-wal"), shared_dir / "sessions.db-wal")
    finally:
        holder.close()
    lock_down(shared_dir)
    db = shared_dir / "sessions.db"
    code, out, err = as_other_user(cli("--store", str(db), "sessions"))
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["s1"]  # s2 is in the log
    assert err.startswith("sessiontrace: note: the newest spans are in sessions.db-wal")
    assert f"write access to {shared_dir}" in err and "--store PATH" in err


def test_a_store_whose_tables_are_all_in_an_unreadable_log_is_an_access_error(
    shared_dir, tmp_path
):
    live = tmp_path / "sessions.db"
    holder = sqlite3.connect(live)  # open before the first write: nothing is checkpointed
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("SELECT count(*) FROM sqlite_master").fetchall()  # joins the WAL index
    try:
        write_session(live)
        shutil.copy(live, shared_dir / "sessions.db")
        shutil.copy(live.with_name("sessions.db-wal"), shared_dir / "sessions.db-wal")
    finally:
        holder.close()
    lock_down(shared_dir)
    code, out, err = as_other_user(cli("--store", str(shared_dir / "sessions.db"), "sessions"))
    assert (code, out) == (2, "")
    assert "not a sessiontrace store" not in err
    assert "sessions.db-wal" in err and "run as the user that wrote the store" in err


def test_an_unreadable_file_says_permission_denied(shared_dir):
    db = shared_dir / "sessions.db"
    write_session(db)
    lock_down(shared_dir, file_mode=0)
    code, out, err = as_other_user(cli("--store", str(db), "sessions"))
    assert (code, out) == (2, "")
    assert err.startswith(f"sessiontrace: error: permission denied reading {db}; run as")
    assert err.count("\n") == 1


def test_a_directory_that_cannot_be_entered_says_so(shared_dir):
    inner = shared_dir / "private"
    inner.mkdir()
    write_session(inner / "sessions.db")
    inner.chmod(0o700)
    code, out, err = as_other_user(cli("--store", str(inner / "sessions.db"), "sessions"))
    inner.chmod(0o755)
    assert (code, out) == (2, "")
    assert f"cannot look inside {inner}: permission denied" in err


# --- losses ------------------------------------------------------------------------------


def add_losses(db: Path, rows: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    ensure_schema(conn)  # the store's own layout, losses table included
    conn.executemany(
        "INSERT INTO losses (kind, reason, destination, count, first_ns, last_ns, message, pid) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.close()


def test_losses_are_read_oldest_first_and_filtered_by_time(tmp_path):
    db = tmp_path / "sessions.db"
    write_session(db)
    add_losses(
        db,
        [
            ("dropped", "queue-full", "store", 5, 2 * S, 2.5 * S, "raise the queue size", 7),
            ("repaired", "unencodable-text", "store", 2, S, S, "fix the encoding", 7),
        ],
    )
    with SessionStore(db) as store:
        losses = store.losses()
        assert [loss.first_ns for loss in losses] == [S, 2 * S]
        assert store.losses(since_ns=S + 1) == [losses[1]]
        assert store.losses(since_ns=int(2.5 * S)) == [losses[1]]
        assert store.losses(since_ns=int(2.5 * S) + 1) == []
    dropped = losses[1]
    assert isinstance(dropped, StoredLoss)
    assert (dropped.kind, dropped.reason, dropped.destination, dropped.count) == (
        "dropped",
        "queue-full",
        "store",
        5,
    )
    assert (dropped.message, dropped.pid, dropped.last.timestamp()) == (
        "raise the queue size",
        7,
        2.5,
    )


def test_a_store_without_the_losses_table_has_none(tmp_path):
    db = tmp_path / "sessions.db"
    write_session(db)
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE IF EXISTS losses")
    conn.commit()
    conn.close()
    with SessionStore(db) as store:
        assert store.losses() == []


@pytest.mark.parametrize(
    ("since", "error"),
    [("1", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError)],
)
def test_losses_since_ns_is_checked(tmp_path, since, error):
    db = tmp_path / "sessions.db"
    write_session(db)
    with SessionStore(db) as store, pytest.raises(error, match="since_ns must be"):
        store.losses(since_ns=since)


def test_a_malformed_loss_record_is_left_out_and_named(db):
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "INSERT INTO losses (kind, reason, destination, count, first_ns, last_ns, message, pid) "
        "VALUES ('dropped', 'queue-full', 'store', 'many', 1, 2, 'm', 1), "
        "('dropped', 'queue-full', 'store', 3, 1, 2, 'm', 1)"
    )
    conn.close()
    with SessionStore(db) as store:
        assert [loss.count for loss in store.losses()] == [3]
        (bad,) = store.bad_rows
    assert bad.table == "losses" and bad.row == "id 1" and bad.skipped
    assert "count is not a whole number ('many')" in bad.message


# Attribute keys the commands read meaning from, each given values of any JSON shape.
MEANINGFUL_KEYS = [
    _keys.OI_SPAN_KIND,
    _keys.OI_INPUT_VALUE,
    _keys.OI_OUTPUT_VALUE,
    _keys.OI_MODEL_NAME,
    _keys.GENAI_REQUEST_MODEL,
    _keys.GENAI_OPERATION,
    _keys.OI_TOKENS_TOTAL,
    _keys.GENAI_INPUT_TOKENS,
    _keys.SPAN_TYPE,
    _keys.SESSION_NAME,
    _keys.PARENT_SESSION_ID,
    _keys.STEP_INDEX,
    _keys.STEP_NAME,
    _keys.STATE,
    _keys.STATUS,
    _keys.SUMMARY_PREFIX + "steps",
    _keys.SUMMARY_PREFIX + "cost_usd",
    _keys.SUMMARY_PREFIX + "duration_ms",
    _keys.OI_COST_TOTAL,
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(["step", "summary", "session", "LLM", "ok", "error", "s1", '{"a": 1}']),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from(NAMES),
            st.dictionaries(st.sampled_from(MEANINGFUL_KEYS), JSON_VALUES, min_size=1, max_size=5),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_attributes_of_any_shape_never_make_a_command_fail(template, changes):
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "sessions.db"
        shutil.copy(template, db)
        conn = sqlite3.connect(db, isolation_level=None)
        for name, extra in changes:
            (raw,) = conn.execute("SELECT attributes FROM spans WHERE name = ?", (name,)).fetchone()
            attributes = {**json.loads(raw), **extra}
            conn.execute(
                "UPDATE spans SET attributes = ? WHERE name = ?", (json.dumps(attributes), name)
            )
        conn.close()
        for command in (
            ["show", "s1"],
            ["replay", "s1", "--full"],
            ["replay", "s1", "--json"],
            ["timeline", "s1", "--html", "-"],
            ["doctor", "s1", "--json"],
        ):
            code, out, err = run("--store", str(db), *command)
            assert code in (0, 1), (command, err)
            assert out, command


# --- what the store's other readers ask for ----------------------------------------------


def test_subsession_starts_are_the_children_first_started_first_to_the_nanosecond(tmp_path):
    path = tmp_path / "family.db"
    parent = {_keys.PARENT_SESSION_ID: "trip"}
    with store_tracer(path) as t:
        with span(t, "plan", 0, session="trip", root=True) as root:
            root.end(end_time=T0 + 100 * MS)
        # Started later, written first; and a start that is not a whole microsecond.
        with span(t, "book", 50, session="book", root=True, **parent) as late:
            late.end(end_time=T0 + 60 * MS)
        with t.start_as_current_span(
            "search",
            context=Context(),
            attributes={_keys.OI_SESSION_ID: "search", **parent},
            start_time=T0 + 20 * MS + 7,
            end_on_exit=False,
        ) as early:
            early.end(end_time=T0 + 30 * MS)
        # A session that names itself as its parent is not its own sub-session.
        with span(t, "loop", 70, session="loop", root=True, **{_keys.PARENT_SESSION_ID: "loop"}):
            pass
    with SessionStore(path) as store:
        starts = store.subsession_starts("trip")
        assert list(starts.items()) == [("search", T0 + 20 * MS + 7), ("book", T0 + 50 * MS)]
        assert list(starts) == [child.session_id for child in store.subsessions("trip")]
        assert store.subsession_starts("loop") == {}
        assert store.subsession_starts("no such session") == {}
