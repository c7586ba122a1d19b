"""Sessions as `sessions` lists them (cli/_families.py): families, the tree, and `latest`."""

from __future__ import annotations

from pathlib import Path

from test_view import sessions

from helpers.stored import store_tracer, timed
from sessiontrace.cli._families import families, newest
from sessiontrace.store import SessionStore


def listing(store: SessionStore, limit: int | None = None) -> list[tuple[str, str, str, int]]:
    return [
        (row.lead, row.summary.session_id, row.under, row.depth)
        for row in families(store, limit=limit)
    ]


def test_sub_sessions_follow_their_parent_depth_first_with_the_tree_drawn(db):
    with sessions(
        db,
        ("old", None, 0),
        ("p", None, 100),
        ("c1", "p", 110),
        ("g", "c1", 120),
        ("c2", "p", 130),
    ) as store:
        assert listing(store) == [
            ("", "p", "│  ", 0),
            ("├─ ", "c1", "│  │  ", 1),
            ("│  └─ ", "g", "│        ", 2),
            ("└─ ", "c2", "      ", 1),
            ("", "old", "   ", 0),
        ]
        assert [row.has_rows_below for row in families(store)] == [True, True, False, False, False]


def test_the_limit_counts_top_level_sessions_and_brings_their_families(db):
    with sessions(db, ("a", None, 0), ("b", None, 100), ("b1", "b", 110), ("c", None, 200)) as s:
        assert [row.summary.session_id for row in families(s, limit=2)] == ["c", "b", "b1"]
        assert [row.summary.session_id for row in families(s, limit=1)] == ["c"]


def test_a_session_whose_parent_is_not_in_the_store_is_top_level(db):
    with sessions(db, ("orphan", "gone", 0), ("x", None, 100)) as store:
        assert listing(store) == [("", "x", "   ", 0), ("", "orphan", "   ", 0)]


def test_a_loop_of_parents_is_listed_once_under_the_session_that_heads_it(db):
    with sessions(db, ("a", "b", 0), ("b", "a", 100), ("x", None, 200)) as store:
        ids = [(row.lead, row.summary.session_id) for row in families(store)]
    # "b" is the newer of the two, so it heads the loop; "a" follows under it, once.
    assert ids == [("", "x"), ("", "b"), ("└─ ", "a")]


def test_newest_is_the_first_session_listed(db):
    with sessions(db, ("p", None, 0), ("kid", "p", 100)) as store:
        found = newest(store)
        assert found is not None and found.session_id == "p"


def test_newest_in_a_store_without_sessions_is_none(db: Path):
    with store_tracer(db) as t, timed(t, "no session", 0, 1, root=True):
        pass
    with SessionStore(db) as store:
        assert newest(store) is None
        assert families(store) == []
