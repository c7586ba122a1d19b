"""The CLI's shared view model (cli/_view.py) on a real store: find, fields, span trees, runs.

The tracked and plain sessions are the ones test_replay.py builds; the others are written
span by span here, each test with its own store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_replay import AGENT, CHILD, PLAIN, build_agent, build_plain, in_session, step_span

from helpers.stored import store_tracer, timed
from sessiontrace import _keys
from sessiontrace.cli._errors import CommandError
from sessiontrace.cli._view import (
    LATEST,
    MAX_DEPTH,
    family_fields,
    fields,
    find,
    kind_of,
    load,
    span_tree,
)
from sessiontrace.store import SessionNotFoundError, SessionStore, steps


def replay_sessions(db: Path) -> SessionStore:
    """The tracked AGENT run (with its sub-session CHILD) and the plain PLAIN, then opened."""
    with store_tracer(db) as t:
        build_plain(t)
        build_agent(t)
    return SessionStore(db)


@pytest.fixture
def store(db) -> Iterator[SessionStore]:
    with replay_sessions(db) as opened:
        yield opened


def sessions(db: Path, *specs: tuple[str, str | None, int]) -> SessionStore:
    """One 10 ms root span per (session, parent session, start ms), then the store opened."""
    with store_tracer(db) as t:
        for session_id, parent, start in specs:
            extra = {_keys.PARENT_SESSION_ID: parent} if parent else {}
            attributes = in_session(session_id, **extra)
            with timed(t, session_id, start, start + 10, root=True, **attributes):
                pass
    return SessionStore(db)


def tree(step) -> list[tuple[str, int]]:
    return [(span.name, depth) for span, depth in span_tree(step)]


# --- finding a session -------------------------------------------------------------------


def test_find_reads_a_session_by_its_id(store):
    assert find(store, PLAIN).session_id == PLAIN
    assert find(store, CHILD).parent_session_id == AGENT
    with pytest.raises(SessionNotFoundError):
        find(store, "no such session")


def test_latest_is_the_newest_top_level_session_not_a_newer_sub_session(db):
    with sessions(db, ("old", None, 0), ("parent", None, 100), ("child", "parent", 200)) as store:
        assert store.sessions()[0].session_id == "child"  # the most recently active
        assert find(store, LATEST).session_id == "parent"


def test_a_session_named_latest_wins_over_the_word(db):
    with sessions(db, (LATEST, None, 0), ("newer", None, 100)) as store:
        assert find(store, LATEST).session_id == LATEST


def test_latest_in_a_store_without_sessions_is_a_command_error(db):
    with store_tracer(db) as t, timed(t, "no session here", 0, 1, root=True):
        pass
    with SessionStore(db) as store, pytest.raises(CommandError, match="holds no sessions yet") as e:
        find(store, LATEST)
    assert e.value.exit_code == 1


# --- header fields -----------------------------------------------------------------------


def test_fields_align_the_values_and_continue_a_list_under_its_first_line():
    labelled: list[tuple[str, str | list[str]]] = [("user", "ada"), ("sub-sessions", ["a", "b"])]
    assert fields(labelled) == [
        "  user          ada",
        "  sub-sessions  a",
        "                b",
    ]
    assert fields([("x", "1")], indent="") == ["x  1"]


def test_family_fields_name_the_parent_and_the_first_five_sub_sessions(db):
    children = [(f"c{n}", "p", 100 + n * 20) for n in range(7)]
    with sessions(db, ("p", None, 0), *children, ("alone", None, 500)) as store:
        assert family_fields(store.session("p")) == [
            ("sub-sessions", "c0, c1, c2, c3, c4 and 2 more")
        ]
        assert family_fields(store.session("c3")) == [("parent", "p")]
        assert family_fields(store.session("alone")) == []


def test_family_fields_escape_the_ids_they_show(db):
    with sessions(db, ("p\x1b[2J", None, 0), ("kid", "p\x1b[2J", 20)) as store:
        assert family_fields(store.session("kid")) == [("parent", "p\\x1b[2J")]


# --- span trees and kinds ----------------------------------------------------------------


def test_span_tree_is_depth_first_with_siblings_in_start_order(store):
    assert tree(steps(store, AGENT)[1]) == [
        ("step 1: search", 0),
        ("search_flights", 1),
        ("GET /flights", 2),
        ("chat claude-haiku", 1),
        ("book", 1),
    ]


def test_a_span_whose_parent_is_not_in_the_step_hangs_under_the_step(db):
    with store_tracer(db) as t:
        with step_span(t, "s", 0, "plan", 0, 100):
            with timed(t, "inside", 10, 20, **in_session("s", 0)):
                pass
        # Another trace's root, stamped with the step's index (as W3C baggage carries it).
        with timed(t, "elsewhere", 30, 40, root=True, **in_session("s", 0)):
            pass
    with SessionStore(db) as store:
        assert tree(steps(store, "s")[0]) == [("step 0: plan", 0), ("inside", 1), ("elsewhere", 1)]


def test_an_open_step_lists_its_spans_from_depth_0(db):
    with store_tracer(db) as t:
        with step_span(t, "s", 0, "done", 0, 10):
            pass
        # Step 1 has not ended: its own span is not stored yet, the spans inside it are.
        with timed(t, "tool", 20, 40, root=True, **in_session("s", 1)):
            with timed(t, "call", 25, 35, **in_session("s", 1)):
                pass
        with timed(t, "later", 50, 60, root=True, **in_session("s", 1)):
            pass
    with SessionStore(db) as store:
        open_step = steps(store, "s")[1]
        assert open_step.span is None
        assert tree(open_step) == [("tool", 0), ("call", 1), ("later", 0)]


def test_spans_whose_parents_loop_are_listed_once_each_under_the_step(db):
    with store_tracer(db) as t:
        with step_span(t, "s", 0, "plan", 0, 100):
            with timed(t, "first", 10, 20, **in_session("s", 0)):
                pass
            with timed(t, "second", 30, 40, **in_session("s", 0)):
                pass
    # A damaged (or foreign) store: each of the two names the other as its parent.
    with sqlite3.connect(db) as conn:
        ids = dict(conn.execute("SELECT name, span_id FROM spans").fetchall())
        for child, parent in (("first", "second"), ("second", "first")):
            conn.execute(
                "UPDATE spans SET parent_span_id = ? WHERE span_id = ?", (ids[parent], ids[child])
            )
    conn.close()
    with SessionStore(db) as store:
        assert tree(steps(store, "s")[0]) == [("step 0: plan", 0), ("first", 1), ("second", 2)]


def test_kind_of_prefers_the_openinference_kind_then_a_model_call_then_the_span_kind(db):
    with store_tracer(db) as t:
        for name, extra in [
            ("tool", {_keys.OI_SPAN_KIND: "TOOL"}),
            ("tokens only", {_keys.GENAI_INPUT_TOKENS: 3}),
            ("plain", {}),
            ("empty kind", {_keys.OI_SPAN_KIND: ""}),
        ]:
            with timed(t, name, 0, 1, root=True, **in_session("s", **extra)):
                pass
    with SessionStore(db) as store:
        kinds = {span.name: kind_of(span) for span in store.spans("s")}
    assert kinds == {
        "tool": "TOOL",
        "tokens only": "LLM",
        "plain": "INTERNAL",
        "empty kind": "INTERNAL",
    }


# --- a session as replayed ---------------------------------------------------------------


def test_load_reads_steps_summary_and_each_sub_session_under_its_step(store):
    run = load(store, AGENT)
    assert (run.tracked, run.name, run.session.session_id) == (True, "trip", AGENT)
    assert [step.index for step in run.steps] == [0, 1, 2, 3]
    assert run.steps[2].children == (CHILD,)
    assert list(run.sub) == [CHILD] and run.loose == []
    assert [span.name for span in run.outside] == ["between steps"]
    child = run.sub[CHILD]
    assert (child.name, child.sub, child.summary is not None) == ("researcher", {}, True)
    # The totals a tracker's own are compared with include the sub-sessions.
    assert run.totals == run.session.with_subsessions and run.totals.sessions == 2
    assert child.totals == child.session


def test_a_plain_session_loads_as_one_untracked_step_per_trace(store):
    run = load(store, PLAIN)
    assert (run.tracked, run.summary, run.name) == (False, None, None)
    assert [step.name for step in run.steps] == ["chat.turn", "chat.turn"]
    assert run.outside == [] and run.tracker_cost() is None and run.tracker_note() is None


def test_load_stops_at_max_depth(db):
    chain = [(f"s{n}", f"s{n - 1}" if n else None, n * 100) for n in range(MAX_DEPTH + 2)]
    with sessions(db, *chain) as store:
        run = load(store, "s0")
    depth = 0
    while run.sub:
        (run,) = run.sub.values()
        depth += 1
    # The last level loaded still names its sub-session, which is not read.
    assert (depth, run.session.session_id, run.loose) == (MAX_DEPTH, f"s{MAX_DEPTH}", ["s4"])


def test_load_stops_at_a_loop_of_parents(db):
    with sessions(db, ("a", "b", 0), ("b", "a", 100)) as store:
        run = load(store, "a")
    assert list(run.sub) == ["b"]
    assert (run.sub["b"].loose, run.sub["b"].sub) == (["a"], {})


def test_the_tracker_cost_shows_only_when_the_stored_spans_report_another(store):
    run = load(store, AGENT)
    # The tracker priced the run; no stored span reports a cost.
    assert run.tracker_cost() == 0.0012
    assert run.priced_by == "priced by the tracker, with 1 sub-session"
    assert run.sub[CHILD].tracker_cost() is None  # its summary has no cost


def test_the_tracker_note_says_when_the_tracker_counted_other_spans_than_the_store(db):
    with store_tracer(db) as t:
        with step_span(t, "s", 0, "plan", 0, 100):
            with timed(t, "chat", 10, 20, **in_session("s", 0, **{_keys.OI_TOKENS_TOTAL: 5})):
                pass
        counts = {_keys.SUMMARY_PREFIX + "total_tokens": 8, _keys.SUMMARY_PREFIX + "llm_calls": 2}
        attributes = in_session("s", **{_keys.SPAN_TYPE: "summary", _keys.STATUS: "ok", **counts})
        with timed(t, "sessiontrace.summary", 100, 100, root=True, **attributes):
            pass
    with SessionStore(db) as store:
        note = load(store, "s").tracker_note()
    assert note is not None
    assert note.startswith("the tracker counted 8 tokens and 2 LLM calls as its spans ended; ")
    assert "the store holds 5 and 1" in note
