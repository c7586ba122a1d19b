"""What the timeline draws before any HTML (cli/_timeline_model.py): axis, extent, kinds, tips."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_replay import AGENT, CHILD, PLAIN, in_session, llm, step_span
from test_view import replay_sessions

from helpers.stored import MS, T0, store_tracer, timed
from sessiontrace import _keys
from sessiontrace.cli._timeline_model import (
    TOOLTIP_CHARS,
    Axis,
    badge_class,
    extent,
    has_state,
    kind_class,
    span_tip,
)
from sessiontrace.cli._view import load
from sessiontrace.store import SessionStore


@pytest.fixture
def store(db) -> Iterator[SessionStore]:
    with replay_sessions(db) as opened:
        yield opened


# --- the axis ----------------------------------------------------------------------------


def test_the_axis_maps_times_to_percent_of_the_track_and_clamps():
    axis = Axis(1_000, 5_000)
    assert [axis.x(ns) for ns in (1_000, 2_000, 5_000, 0, 9_999)] == [0.0, 25.0, 100.0, 0.0, 100.0]
    assert axis.place(2_000, 3_000) == "left:25.000%;width:25.000%"
    # A bar that ends before it starts (a damaged row) has no width, never a negative one.
    assert axis.place(3_000, 2_000) == "left:50.000%;width:0.000%"


def test_an_axis_of_no_length_does_not_divide_by_zero():
    axis = Axis(7, 7)
    assert (axis.x(7), axis.x(8)) == (0.0, 100.0)
    assert axis.ticks()[0] == (0.0, "0 ms")


def test_a_label_goes_right_of_its_bar_unless_there_is_more_room_on_the_left():
    axis = Axis(0, 100)
    assert axis.after(0, 10) == "left:calc(10.000% + 5px);right:0"
    assert axis.after(80, 95) == "right:calc(20.000% + 5px);max-width:calc(80.000% - 5px)"
    # 18% of room on the right is enough, however much is on the left.
    assert axis.after(70, 82) == "left:calc(82.000% + 5px);right:0"


@pytest.mark.parametrize(
    ("length_ms", "labels"),
    [
        (1, ["0 ms", "0.1 ms", "0.2 ms"]),
        (95, ["0 ms", "10 ms", "20 ms"]),
        (900, ["0 ms", "100 ms", "200 ms"]),
        (4_000, ["0 ms", "500 ms", "1000 ms"]),  # a step under a second: milliseconds
        (15_000, ["0 s", "2 s", "4 s"]),
        (60_000, ["0 s", "10 s", "20 s"]),
    ],
)
def test_ticks_fall_at_a_round_step_of_about_a_tenth_of_the_axis(length_ms, labels):
    ticks = Axis(0, length_ms * MS).ticks()
    assert [label for _, label in ticks[:3]] == labels
    assert 5 <= len(ticks) <= 11
    offsets = [x for x, _ in ticks]
    assert offsets == sorted(offsets) and offsets[0] == 0.0 and offsets[-1] <= 100.0


# --- what a run covers -------------------------------------------------------------------


def test_the_extent_covers_every_step_span_and_sub_session(store):
    # AGENT's first step starts at 0 ms; its summary span (900 ms) is not drawn.
    assert extent(load(store, AGENT)) == (T0, T0 + 850 * MS)
    assert extent(load(store, CHILD)) == (T0 + 520 * MS, T0 + 680 * MS)
    assert extent(load(store, PLAIN)) == (T0 - 5000 * MS, T0 - 3900 * MS)


def test_a_span_that_outlasts_its_step_and_one_between_steps_widen_the_extent(db):
    with store_tracer(db) as t:
        with step_span(t, "s", 0, "plan", 100, 200):
            with timed(t, "straggler", 150, 400, **in_session("s", 0)):
                pass
        with timed(t, "between", 0, 50, root=True, **in_session("s")):
            pass
    with SessionStore(db) as store:
        assert extent(load(store, "s")) == (T0, T0 + 400 * MS)


def test_a_run_with_nothing_to_draw_covers_one_millisecond_from_its_first_span(db):
    summary = in_session("s", **{_keys.SPAN_TYPE: "summary", _keys.STATUS: "ok"})
    with store_tracer(db) as t, timed(t, "sessiontrace.summary", 5, 5, root=True, **summary):
        pass
    with SessionStore(db) as store:
        run = load(store, "s")
    assert run.steps == [] and run.outside == []
    start, end = extent(run)
    assert abs(start - (T0 + 5 * MS)) < 1_000 and end - start == 1_000_000


# --- kinds and badges --------------------------------------------------------------------


def test_each_bar_gets_the_class_of_its_kind_and_an_error_wins(db):
    cases = {
        "llm": {_keys.OI_SPAN_KIND: "LLM"},
        "tool": {_keys.OI_SPAN_KIND: "tool"},
        "chain": {_keys.OI_SPAN_KIND: "CHAIN"},
        "agent": {_keys.OI_SPAN_KIND: "AGENT"},
        "retriever": {_keys.OI_SPAN_KIND: "RETRIEVER"},
        "plain": {},
    }
    with store_tracer(db) as t:
        for name, extra in cases.items():
            with timed(t, name, 0, 1, root=True, **in_session("s", **extra)):
                pass
        with timed(t, "failed", 0, 1, root=True, error="boom", **in_session("s", **cases["llm"])):
            pass
    with SessionStore(db) as store:
        classes = {span.name: kind_class(span) for span in store.spans("s")}
    assert classes == {
        "llm": "llm",
        "tool": "tool",
        "chain": "chain",
        "agent": "chain",
        "retriever": "other",
        "plain": "other",
        "failed": "error",
    }


def test_an_unknown_status_gets_the_running_badge():
    assert [badge_class(word) for word in ("ok", "error", "running", "UNSET", "")] == [
        "ok",
        "error",
        "running",
        "running",
        "running",
    ]


def test_has_state_looks_into_the_sub_sessions(db, store):
    assert has_state(load(store, AGENT)) is True
    assert has_state(load(store, PLAIN)) is False
    with store_tracer(db) as t:
        with timed(t, "parent turn", 1000, 1100, root=True, **in_session("p")):
            pass
        parent = {_keys.PARENT_SESSION_ID: "p"}
        with step_span(t, "kid", 0, "think", 1010, 1090, {"k": 1}, **parent):
            pass
    with SessionStore(db) as reopened:
        run = load(reopened, "p")
    assert [step.state for step in run.steps] == [None]
    assert has_state(run) is True


# --- tooltips ----------------------------------------------------------------------------


def test_a_span_tip_gives_name_kind_duration_model_tokens_status_and_io(db):
    attributes = llm(_keys.OI_MODEL_NAME, "gpt-4o-mini", (3, 2, 5), "x" * 1000, "hi\x1b[31m")
    with store_tracer(db) as t:
        failed = {"root": True, "error": "Rate\tlimit"}
        with timed(t, "chat\nnow", 0, 12, **failed, **in_session("s", **attributes)):
            pass
        with timed(t, "quiet", 20, 21, root=True, **in_session("s")):
            pass
    with SessionStore(db) as store:
        loud, quiet = store.spans("s")
    lines = span_tip(loud).split("\n")
    assert lines[:4] == [
        "chat\\nnow",
        "LLM · 12.0 ms · gpt-4o-mini",
        "tokens 3/2/5 (prompt/completion/total)",
        "error: Rate\\tlimit",
    ]
    assert lines[4] == "in: " + "x" * (TOOLTIP_CHARS - 3) + "..."
    assert lines[5] == "out: hi\\x1b[31m"
    assert len(lines) == 6
    assert span_tip(quiet) == "quiet\nINTERNAL · 1.0 ms"
