"""store/_paging: SessionStore.page() filters, orders and pages in SQL as the listing would."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.stored import stamping_tracer, store_tracer, timed
from sessiontrace import _keys, using_attributes, using_tags
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
        ({"tag": ["beta"]}, TypeError, "tag must be a str or None, got list"),
        ({"tag": b"beta"}, TypeError, "tag must be a str or None, got bytes"),
        ({"top_level": "yes"}, TypeError, "top_level must be True or False"),
    ],
)
def test_a_bad_argument_raises_at_the_call_naming_it(store, arguments, error, words):
    with SessionStore(store) as reader, pytest.raises(error) as raised:
        reader.page(**arguments)
    assert words in str(raised.value)


# --- the tag filter ------------------------------------------------------------------------

HOSTILE_TAG = "50%_off \"quoted\" 'single' <b>&amp;</b>\\ é 🏷"  # what using_tags takes
# What other instrumentation may write straight into the attribute, which using_tags refuses.
CONTROL_TAG = "line\nbreak\x00nul\x1b[31m\u2028\ud7ff"


@pytest.fixture
def tagged(db: Path) -> Path:
    with stamping_tracer(db, "paging-tags") as tracer:
        with using_attributes(session_id="a-web", user_id="ada", tags=["web"]):
            with timed(tracer, "turn", 0, 10, root=True):
                pass
            with using_tags(["beta"]), timed(tracer, "turn", 20, 30, root=True, error="boom"):
                pass
        with using_attributes(session_id="b-beta", user_id="bob", tags=["beta", "web"]):
            with timed(tracer, "turn", 40, 50, root=True):
                pass
        with using_attributes(session_id="c-none", user_id="ada"):
            with timed(tracer, "turn", 60, 70, root=True):
                pass
        with using_attributes(session_id="d-hostile", tags=[HOSTILE_TAG, "%", "_"]):
            with timed(tracer, "turn", 80, 90, root=True):
                pass
            with timed(tracer, "turn", 91, 92, root=True, **{_keys.LANGFUSE_TAGS: [CONTROL_TAG]}):
                pass
    return db


def _ids(page) -> list[str]:
    return [summary.session_id for summary in page.sessions]


def test_the_tag_filter_keeps_the_sessions_any_of_whose_spans_carry_the_tag(tagged):
    with SessionStore(tagged) as reader:
        assert _ids(reader.page(tag="web", sort="session_id")) == ["a-web", "b-beta"]
        # a-web has beta on its second trace only: a session's tags are its spans' union.
        assert _ids(reader.page(tag="beta", sort="session_id")) == ["a-web", "b-beta"]
        assert reader.page(tag="nope").total == 0
        assert reader.page(tag="WEB").total == 0  # exact: no case folding
        assert reader.page(tag="we").total == 0  # and no substring
        assert reader.page(tag="").total == 4  # like text, an empty tag filters nothing
        listed = {summary.session_id: summary.tags for summary in reader.sessions()}
        assert listed == {
            "a-web": ("beta", "web"),
            "b-beta": ("beta", "web"),
            "c-none": (),
            "d-hostile": tuple(sorted([HOSTILE_TAG, CONTROL_TAG, "%", "_"])),
        }
        assert reader.session("a-web").tags == ("beta", "web")


def test_the_tag_filter_combines_with_the_other_filters_and_counts_the_total(tagged):
    with SessionStore(tagged) as reader:
        page = reader.page(tag="web", user_id="ada")
        assert (_ids(page), page.total) == (["a-web"], 1)
        page = reader.page(tag="beta", status="error")
        assert (_ids(page), page.total) == (["a-web"], 1)
        page = reader.page(tag="beta", status="ok")
        assert (_ids(page), page.total) == (["b-beta"], 1)
        page = reader.page(tag="web", text="B-")
        assert (_ids(page), page.total) == (["b-beta"], 1)
        page = reader.page(tag="web", top_level=True, sort="-last_end", limit=1)
        assert (_ids(page), page.total, page.limit) == (["b-beta"], 2, 1)
        page = reader.page(tag="web", sort="-last_end", limit=1, offset=1)
        assert (_ids(page), page.total, page.offset) == (["a-web"], 2, 1)
        page = reader.page(tag="web", offset=5)
        assert (_ids(page), page.total) == ([], 2)
        assert reader.page(tag="web", user_id="bob", status="error").total == 0


def test_a_tag_with_wildcards_quotes_html_and_control_characters_is_matched_exactly(tagged):
    # The stamping processor keeps a key the span already has: the control tag goes in under
    # Langfuse's key beside the stamped tags (in both keys), and the session has all of them.
    with SessionStore(tagged) as reader:
        for tag in (HOSTILE_TAG, CONTROL_TAG, "%", "_"):
            page = reader.page(tag=tag)
            assert (_ids(page), page.total) == (["d-hostile"], 1), repr(tag)
        for near in (HOSTILE_TAG[:-1], HOSTILE_TAG + " ", CONTROL_TAG.split("\x00")[0], "%%",
                     "\\%", "*", "' OR 1=1 --"):  # fmt: skip
            assert reader.page(tag=near).total == 0, repr(near)


def test_tags_in_either_key_and_only_their_str_values_count(db):
    with store_tracer(db) as tracer:
        with timed(tracer, "oi", 0, 1, root=True,
                   **{"session.id": "s", _keys.OI_TAGS: ["oi", "", "both"]}):  # fmt: skip
            pass
        with timed(tracer, "lf", 2, 3, root=True,
                   **{"session.id": "s", _keys.LANGFUSE_TAGS: ("lf", "both")}):  # fmt: skip
            pass
        with timed(tracer, "scalar", 4, 5, root=True,
                   **{"session.id": "s", _keys.OI_TAGS: "not-an-array"}):  # fmt: skip
            pass
        with timed(tracer, "numbers", 6, 7, root=True,
                   **{"session.id": "s", _keys.LANGFUSE_TAGS: [1, 2]}):  # fmt: skip
            pass
        with timed(tracer, "no session", 8, 9, root=True, **{_keys.OI_TAGS: ["orphan"]}):
            pass
    with SessionStore(db) as reader:
        assert reader.session("s").tags == ("both", "lf", "oi")
        assert reader.page(tag="orphan").total == 0
        assert reader.page(tag="not-an-array").total == 0


_tags = st.sampled_from(["a", "b", "%", "_", HOSTILE_TAG])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sessions=st.lists(
        st.tuples(st.sampled_from(["s0", "s1", "s2", "s3"]), st.lists(_tags, max_size=3)),
        min_size=1,
        max_size=10,
    ),
    wanted=_tags,
    limit=st.integers(1, 3),
)
def test_random_tags_page_as_a_filter_of_the_listing_would(tmp_path_factory, sessions, wanted,
                                                           limit):  # fmt: skip
    db = tmp_path_factory.mktemp("tags") / "sessions.db"
    with stamping_tracer(db, "paging-tags") as tracer:
        for index, (session_id, tags) in enumerate(sessions):
            with using_attributes(session_id=session_id, tags=tags):
                with timed(tracer, "turn", index * 10, index * 10 + 5, root=True):
                    pass
    expected: dict[str, set[str]] = {}
    for session_id, tags in sessions:
        expected.setdefault(session_id, set()).update(tags)
    with SessionStore(db) as reader:
        listed = reader.sessions()
        assert {s.session_id: set(s.tags) for s in listed} == expected
        assert all(list(s.tags) == sorted(s.tags) for s in listed)
        matching = [s.session_id for s in listed if wanted in s.tags]  # newest first
        seen: list[str] = []
        offset = 0
        while True:
            page = reader.page(tag=wanted, limit=limit, offset=offset)
            assert page.total == len(matching)
            if not page.sessions:
                break
            seen += _ids(page)
            offset += limit
        assert seen == matching
