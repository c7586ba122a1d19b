"""store/_tags: a session's tags, kept at ingest in session_tags, equal a recount of its spans.

The spans go through the real OpenTelemetry SDK (a TracerProvider with sessiontrace's own
processor stamping the tags) and the real SQLiteSpanExporter into a file; every test then
compares the kept table with what ``rebuild_all`` makes from the spans (``assert_consistent``).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from test_summaries import assert_consistent, export_batches, make_span, raw

from helpers.stored import MS, T0, stamping_tracer, timed
from sessiontrace import _keys, using_attributes
from sessiontrace.cli import main
from sessiontrace.store import SessionStore
from sessiontrace.store._errors import StoreFormatError
from sessiontrace.store._retention import prune
from sessiontrace.store._schema import _SUMMARY_COLUMNS, SESSION_TABLES
from sessiontrace.store._span_rows import to_json
from sessiontrace.store._summaries import rebuild_all
from sessiontrace.store._tags import tags_of


def stored_tags(db: Path) -> set[tuple[str, str]]:
    return set(raw(db, "SELECT session_id, tag FROM session_tags"))


# --- reading a span's tags off its attribute JSON ------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"session.id": "s", "tag.tags": ["a", "b"]}, ["a", "b"]),
        ({"tag.tags": ("a",), "langfuse.trace.tags": ["b", "a"]}, ["a", "b", "a"]),
        ({"langfuse.trace.tags": ["only"]}, ["only"]),
        ({"tag.tags": ["", "a", 'é "q" \\ \n\x00']}, ["a", 'é "q" \\ \n\x00']),
        ({"tag.tags": [1, True, None, 2.5]}, []),
        ({"tag.tags": "scalar"}, []),
        ({"tag.tags": []}, []),
        ({}, []),
        # The key's text inside a value, or inside another key, is not the key.
        ({"input.value": '{"tag.tags":["no"]}', "x": ',"tag.tags":["no"]'}, []),
        ({'x"tag.tags': ["no"], "tag.tags": ["yes"]}, ["yes"]),
        ({"input.value": '{"tag.tags":["no"]}', "tag.tags": ["yes"]}, ["yes"]),
        # A mapping value (the SDK takes them) with a key of that name: not the span's tags.
        ({"m": {"tag.tags": ["nested"]}}, []),
        ({"m": {"tag.tags": ["nested"]}, "tag.tags": ["top"]}, ["top"]),
        ({"m": [{"langfuse.trace.tags": ["n"]}], "langfuse.trace.tags": ["t"]}, ["t"]),
        ({"nan": float("nan"), "inf": float("inf"), "tag.tags": ["kept"]}, ["kept"]),
    ],
)
def test_tags_of_reads_exactly_the_top_level_keys(attributes, expected):
    text = to_json(attributes)
    assert list(tags_of(text)) == expected
    cache: dict[str, tuple[str, ...]] = {}
    assert list(tags_of(text, cache)) == list(tags_of(text, cache)) == expected
    whole = json.loads(text)  # what a full decode of the document gives
    every = [
        tag
        for key in (_keys.OI_TAGS, _keys.LANGFUSE_TAGS)
        if isinstance(whole.get(key), list)
        for tag in whole[key]
        if isinstance(tag, str) and tag
    ]
    assert list(tags_of(text)) == every


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"tag.tags":',
        '{"tag.tags":[',
        '{"tag.tags":["a"',
        '{"tag.tags":["a",}',
        '{"x":{"tag.tags":["a"]',  # a "{" before the key, and the whole does not decode
        '{"tag.tags":["\\ud800"]}',
        "[" * 100_000 + '"tag.tags":',
        '{"x":1,"tag.tags":' + "[" * 100_000,
    ],
)
def test_malformed_text_gives_no_tags_and_never_raises(text):
    assert tags_of(text) == ()
    assert tags_of(text, {}) == ()


# --- kept at ingest, and rebuilt ------------------------------------------------------------


def test_the_per_session_tables_are_every_summary_table():
    assert set(SESSION_TABLES) == set(_SUMMARY_COLUMNS)


def test_ingest_through_the_sdk_keeps_the_union_a_rebuild_gives(db):
    with stamping_tracer(db, "session-tags") as tracer:
        for turn in range(30):
            session = f"chat-{turn % 4}"
            tags = [f"t{turn % 5}", "shared"] if turn % 3 else []
            with using_attributes(session_id=session, tags=tags):
                with timed(tracer, "turn", turn * 10, turn * 10 + 5, root=True,
                           **{"input.value": '{"tag.tags":["not-a-tag"]}'}):  # fmt: skip
                    with timed(tracer, "llm", turn * 10 + 1, turn * 10 + 2,
                               **{"m": {"tag.tags": ["nested"]}}):  # fmt: skip
                        pass
        with timed(tracer, "unsessioned", 400, 401, root=True, **{_keys.OI_TAGS: ["orphan"]}):
            pass
        with timed(tracer, "nan", 402, 403, root=True,
                   **{"session.id": "chat-nan", "n": float("nan"),
                      _keys.LANGFUSE_TAGS: ["with-nan"]}):  # fmt: skip
            pass
    tables = assert_consistent(db)
    expected = {
        (f"chat-{turn % 4}", tag)
        for turn in range(30)
        if turn % 3
        for tag in (f"t{turn % 5}", "shared")
    }
    expected.add(("chat-nan", "with-nan"))
    assert {(row["session_id"], row["tag"]) for row in tables["session_tags"]} == expected
    with SessionStore(db) as reader:
        for session in ("chat-0", "chat-1", "chat-2", "chat-3"):
            mine = sorted(tag for found, tag in expected if found == session)
            assert reader.session(session).tags == tuple(mine)
        assert reader.session("chat-2").tags == ("shared", "t0", "t1", "t2", "t4")
        assert reader.session("chat-nan").tags == ("with-nan",)


def test_a_span_exported_again_without_its_tags_takes_them_away(db):
    first = [
        make_span(1, 1, session="s", **{_keys.OI_TAGS: ["old", "both"]}),
        make_span(1, 2, session="s", **{_keys.LANGFUSE_TAGS: ["both"]}),
    ]
    again = [
        make_span(1, 1, session="s", **{_keys.OI_TAGS: ["new"]}),
        make_span(2, 3, session="moved", **{_keys.OI_TAGS: ["old"]}),
    ]
    moved = [make_span(1, 2, session="other", **{_keys.LANGFUSE_TAGS: ["both"]})]
    export_batches(db, [first, again, moved])
    assert_consistent(db)
    assert stored_tags(db) == {("s", "new"), ("moved", "old"), ("other", "both")}


def test_pruning_a_session_removes_its_tags(db):
    old = make_span(1, 1, session="old", start_ms=0, **{_keys.OI_TAGS: ["gone"]})
    new = make_span(2, 2, session="new", start_ms=10**7, **{_keys.OI_TAGS: ["kept"]})
    export_batches(db, [[old, new]])
    report = prune(db, older_than=100, now_ns=T0 + (10**7 + 2) * MS)
    assert report.sessions_removed == 1
    assert_consistent(db)
    assert stored_tags(db) == {("new", "kept")}


def test_a_layout_3_store_without_session_tags_gets_its_summaries_rebuilt(db):
    export_batches(db, [[make_span(1, 1, session="s", **{_keys.OI_TAGS: ["a", "b"]})]])
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("DROP TABLE session_tags")  # as a store this change's predecessor wrote
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    with pytest.raises(StoreFormatError, match="sessiontrace migrate"):
        SessionStore(db)
    # The next writer rebuilds the summaries from the spans, tags included.
    export_batches(db, [[make_span(1, 2, session="s", **{_keys.LANGFUSE_TAGS: ["c"]})]])
    assert_consistent(db)
    assert stored_tags(db) == {("s", "a"), ("s", "b"), ("s", "c")}
    with SessionStore(db) as reader:
        assert reader.page(tag="a").total == 1


def test_sessiontrace_migrate_adds_the_tags_of_an_older_layout_3_store(db, capsys):
    export_batches(db, [[make_span(1, 1, session="s", **{_keys.OI_TAGS: ["a"]})]])
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("DROP INDEX session_tags_tag")
    assert main(["migrate", "--store", str(db)]) == 0
    assert stored_tags(db) == {("s", "a")}
    assert raw(db, "SELECT 1 FROM sqlite_master WHERE name = 'session_tags_tag'") == [(1,)]


def test_sessions_json_lists_each_sessions_tags(db, capsys):
    export_batches(db, [[make_span(1, 1, session="s", **{_keys.OI_TAGS: ["b", "a", "b"]})]])
    capsys.readouterr()
    assert main(["sessions", "--json", "--store", str(db)]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["tags"] == ["a", "b"]


def test_the_tag_filter_reads_the_tag_index(db):
    export_batches(db, [[make_span(1, 1, session="s", **{_keys.OI_TAGS: ["a"]})]])
    plan = raw(
        db,
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM sessions AS s WHERE s.session_id IN "
        "(SELECT t.session_id FROM session_tags AS t WHERE t.tag = ?)",
        "a",
    )
    assert any("session_tags_tag" in row[-1] for row in plan), plan


def test_a_rebuild_reads_rows_another_program_wrote_without_failing(db):
    export_batches(db, [[make_span(1, 1, session="ours", **{_keys.OI_TAGS: ["a"]})]])
    foreign = [
        # JSON with spaces, a tag SQLite cannot store (a lone surrogate), a nested key.
        ("f1", '{"m": {"tag.tags": ["nested"]}, "tag.tags": ["spaced", "\\ud800", "b"]}'),
        ("f2", b'{"tag.tags":["caf\xe9"]}'),  # not UTF-8
        ("f3", '{"tag.tags":["unclosed"'),
        ("f4", '{"langfuse.trace.tags":["NaN", NaN]}'),
    ]
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for number, (session, attributes) in enumerate(foreign, start=10):
            conn.execute(
                "INSERT INTO spans (trace_id, span_id, name, kind, start_ns, end_ns, "
                "status_code, session_id, attributes, resource, events) "
                "VALUES (?, ?, 'x', 'INTERNAL', 1, 2, 'UNSET', ?, CAST(? AS TEXT), '{}', '[]')",
                (f"{number:032x}", f"{number:016x}", session, attributes),
            )
        conn.execute("BEGIN")
        rebuild_all(conn)
        conn.execute("COMMIT")
    assert stored_tags(db) == {
        ("ours", "a"),
        ("f1", "spaced"),
        ("f1", "b"),
        ("f2", "caf\ufffd"),
        ("f4", "NaN"),
    }
