"""store/_paging: SessionStore.page() filters, orders and pages in SQL as the listing would."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.stored import store_tracer, timed
from sessiontrace import _keys
from sessiontrace.store import SessionStore

STEP = {_keys.SPAN_TYPE: "step", _keys.STEP_INDEX: 0}


@pytest.fixture
def store(db: Path) -> Path:
    with store_tracer(db) as tracer:
        with timed(tracer, "turn", 0, 10, root=True, **{"session.id": "plain-ok"}):
            pass
        with timed(tracer, "turn", 20, 30, root=True, error="boom",
                   **{"session.id": "plain-error", "user.id": "bob"}):  # fmt: skip
            pass
        with timed(tracer, "step 0", 40, 50, root=True, **{"session.id": "run-going"}, **STEP):
            pass
        for index, (session, status) in enumerate((("run-ok", "ok"), ("run-failed", "error"))):
            start = 60 + 20 * index
            named = {"session.id": session, "sessiontrace.session.name": "trip"}
            with timed(tracer, "step 0", start, start + 5, root=True, **named, **STEP):
                pass
            with timed(tracer, "sessiontrace.summary", start + 6, start + 7, root=True,
                       **{"session.id": session, _keys.SPAN_TYPE: "summary",
                          _keys.STATUS: status}):  # fmt: skip
                pass
    return db


def test_each_status_filter_finds_exactly_the_sessions_the_listing_gives_that_status(store):
    with SessionStore(store) as reader:
        listed = {s.session_id: s.status for s in reader.sessions()}
        assert set(listed.values()) == {"ok", "error", "running"}
        for status in ("ok", "error", "running"):
            page = reader.page(status=status)
            assert {s.session_id for s in page.sessions} == {
                session for session, found in listed.items() if found == status
            }
            assert page.total == len(page.sessions)


def test_order_paging_and_text(store):
    with SessionStore(store) as reader:
        newest = reader.page(limit=2)
        assert [s.session_id for s in newest.sessions] == ["run-failed", "run-ok"]
        assert (newest.total, newest.offset, newest.limit) == (5, 0, 2)
        oldest = reader.page(sort="last_end", limit=2, offset=1)
        assert [s.session_id for s in oldest.sessions] == ["plain-error", "run-going"]
        assert [s.session_id for s in reader.page(text="RUN-", sort="session_id").sessions] == [
            "run-failed",
            "run-going",
            "run-ok",
        ]
        assert reader.page(text="%").total == 0  # LIKE's wildcards are matched as text
        assert reader.page(text="_").total == 0
        assert [s.session_id for s in reader.page(user_id="bob").sessions] == ["plain-error"]


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"limit": 0}, ValueError, "limit must be from 1 to 500, got 0"),
        ({"limit": True}, TypeError, "limit must be a whole number, got bool"),
        ({"offset": -1}, ValueError, "offset must be from 0"),
        ({"status": "done"}, ValueError, "status must be one of running, ok, error"),
        ({"sort": "size"}, ValueError, "sort must be one of last_end, first_start"),
        ({"user_id": 7}, TypeError, "user_id must be a str or None, got int"),
        ({"top_level": "yes"}, TypeError, "top_level must be True or False"),
    ],
)
def test_a_bad_argument_raises_at_the_call_naming_it(store, arguments, error, words):
    with SessionStore(store) as reader, pytest.raises(error) as raised:
        reader.page(**arguments)
    assert words in str(raised.value)
