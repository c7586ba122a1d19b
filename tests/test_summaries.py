"""The store's summary tables, kept at ingest, equal a recount of its spans.

``sessions``, ``session_users`` and ``session_tags`` are updated batch by batch
in the exporter's transaction (``store/_summaries.add``); ``rebuild_all`` recounts them from
the spans. Every test writes through the real SQLiteSpanExporter into a real file and then
compares every column of the two tables with a recount made on a copy of the same file:
sessions spread over many batches, spans exported again with other values (the replace
path), SessionTracker runs with a sub-session and each status, missing and enormous token
counts, random batches from hypothesis, two writer processes interleaving batches of the
same sessions, and a writer killed with SIGKILL in the middle of its batches.

The helpers ``summary_tables`` and ``assert_consistent`` are also used by test_migrate.py and
test_retention.py.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from helpers.stored import MS, T0
from sessiontrace import SessionTracker, _keys
from sessiontrace.cli import main
from sessiontrace.store import SessionStore, SQLiteSpanExporter
from sessiontrace.store._summaries import rebuild_all

BIGGEST = 2**63 - 1  # SQLite's largest integer, and the largest token count a span may report

# Each summary table and the order that makes two copies comparable row by row.
TABLES = {
    "sessions": "session_id",
    "session_users": "session_id, user_id",
    "session_tags": "session_id, tag",
}

RESOURCE = Resource.create({"service.name": "summaries"})


# --- comparing the kept tables with a recount ----------------------------------------------


def summary_tables(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of the summary tables, as dicts, in a fixed order."""
    found = {}
    for table, order in TABLES.items():
        cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
        names = [column[0] for column in cursor.description]
        found[table] = [dict(zip(names, row, strict=True)) for row in cursor]
    return found


def recounted(db: Path) -> dict[str, list[dict[str, Any]]]:
    """The summary tables ``rebuild_all`` makes from the spans of ``db``, on a copy."""
    with closing(sqlite3.connect(db)) as source:
        with closing(sqlite3.connect(":memory:", isolation_level=None)) as copy:
            source.backup(copy)
            copy.execute("BEGIN")
            rebuild_all(copy)
            copy.execute("COMMIT")
            return summary_tables(copy)


def _approx(row: dict[str, Any]) -> dict[str, Any]:
    # Costs are float sums: added batch by batch, or in one pass, they differ in the last bits.
    return {
        key: pytest.approx(value, rel=1e-9) if isinstance(value, float) else value
        for key, value in row.items()
    }


def assert_consistent(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Assert that the kept summary tables of ``db`` equal a recount; return them."""
    with closing(sqlite3.connect(db)) as conn:
        kept = summary_tables(conn)
        # Counts stay whole numbers: an overflowing sum must not turn into a float.
        for column in ("prompt_tokens", "completion_tokens", "total_tokens"):
            kinds = conn.execute(f"SELECT DISTINCT typeof({column}) FROM sessions").fetchall()
            assert {kind for (kind,) in kinds} <= {"integer", "null"}, column
    rebuilt = recounted(db)
    for table in TABLES:
        kept_keys = [_key(table, row) for row in kept[table]]
        rebuilt_keys = [_key(table, row) for row in rebuilt[table]]
        assert kept_keys == rebuilt_keys, f"{table}: different rows"
        for mine, theirs in zip(kept[table], rebuilt[table], strict=True):
            assert mine == _approx(theirs), f"{table}: kept {mine} but a recount gives {theirs}"
    return kept


def _key(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[column.strip()] for column in TABLES[table].split(","))


def by_session(tables: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {row["session_id"]: row for row in tables["sessions"]}


def trace_count(tables: dict[str, list[dict[str, Any]]], session: str) -> int:
    return int(by_session(tables)[session]["trace_count"])


def unsessioned(db: Path) -> dict[str, int]:
    """How many spans outside any session each trace has, read off their index."""
    rows = raw(
        db,
        "SELECT trace_id, COUNT(*) FROM spans INDEXED BY spans_unsessioned "
        "WHERE session_id IS NULL GROUP BY trace_id",
    )
    return dict(rows)


def raw(db: Path, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, parameters).fetchall()


# --- spans with chosen ids, times and values -----------------------------------------------


def make_span(
    trace: int,
    span: int,
    *,
    session: str | None = None,
    user: str | None = None,
    start_ms: int = 0,
    end_ms: int | None = None,
    error: bool = False,
    prompt: int | None = None,
    completion: int | None = None,
    total: int | None = None,
    cost: float | None = None,
    name: str = "work",
    **extra: Any,
) -> ReadableSpan:
    """A finished span of the real SDK with these ids and values (OpenInference keys)."""
    attributes: dict[str, Any] = dict(extra)
    for key, value in (
        (_keys.OI_SESSION_ID, session),
        (_keys.OI_USER_ID, user),
        (_keys.OI_TOKENS_PROMPT, prompt),
        (_keys.OI_TOKENS_COMPLETION, completion),
        (_keys.OI_TOKENS_TOTAL, total),
        (_keys.OI_COST_TOTAL, cost),
    ):
        if value is not None:
            attributes[key] = value
    return ReadableSpan(
        name=name,
        context=SpanContext(trace, span, is_remote=False, trace_flags=TraceFlags(1)),
        resource=RESOURCE,
        attributes=attributes,
        start_time=T0 + start_ms * MS,
        end_time=T0 + (start_ms + 1 if end_ms is None else end_ms) * MS,
        status=Status(StatusCode.ERROR, "failed") if error else Status(StatusCode.UNSET),
    )


def export_batches(db: Path, batches: list[list[ReadableSpan]]) -> None:
    exporter = SQLiteSpanExporter(db)
    try:
        for batch in batches:
            assert exporter.export(batch) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


# --- batches through the exporter ----------------------------------------------------------


def test_a_session_spread_over_many_batches_is_counted_once_per_span(db):
    batches = []
    for batch in range(12):
        spans = []
        for index in range(25):
            number = batch * 25 + index
            spans.append(
                make_span(
                    1 + number % 9,  # nine traces, each met in many batches
                    1 + number,
                    session=f"s{number % 3}",
                    user=f"u{number % 4}",
                    start_ms=number,
                    end_ms=number + 5 + number % 7,
                    error=number % 11 == 0,
                    prompt=number,
                    completion=2 * number,
                    cost=0.001 * (number % 5),
                )
            )
        batches.append(spans)
    export_batches(db, batches)
    tables = assert_consistent(db)
    sessions = by_session(tables)
    numbers = range(300)
    for session in ("s0", "s1", "s2"):
        mine = [n for n in numbers if f"s{n % 3}" == session]
        row = sessions[session]
        assert row["span_count"] == len(mine)
        assert trace_count(tables, session) == len({1 + n % 9 for n in mine})
        assert row["error_count"] == sum(n % 11 == 0 for n in mine)
        assert row["prompt_tokens"] == sum(mine)
        assert row["completion_tokens"] == 2 * sum(mine)
        assert row["total_tokens"] == 3 * sum(mine)
        assert row["llm_calls"] == len(mine)
        assert row["first_start_ns"] == T0 + min(mine) * MS
        assert row["last_end_ns"] == max(T0 + (n + 5 + n % 7) * MS for n in mine)
    users = Counter((f"s{n % 3}", f"u{n % 4}") for n in numbers)
    assert {(r["session_id"], r["user_id"]): r["span_count"] for r in tables["session_users"]} == (
        dict(users)
    )
    assert sum(row["trace_count"] for row in tables["sessions"]) == 9  # a trace, one session
    assert sum(row["span_count"] for row in tables["sessions"]) == 300


def test_a_span_exported_again_with_other_values_replaces_the_first(db):
    first = [
        make_span(1, 1, session="before", user="ada", prompt=10, completion=5, cost=0.5),
        make_span(1, 2, session="before", user="ada", prompt=1, start_ms=3),
        make_span(2, 3, session="stays", user="bob", prompt=7),
    ]
    again = [
        # The same ids: it moves to another session with other counts, user and status.
        make_span(1, 1, session="after", user="cy", prompt=100, error=True, start_ms=1),
        # The same ids and values, sent twice in one batch.
        make_span(2, 3, session="stays", user="bob", prompt=7),
        make_span(2, 3, session="stays", user="bob", prompt=7),
    ]
    export_batches(db, [first, again])
    tables = assert_consistent(db)
    sessions = by_session(tables)
    assert raw(db, "SELECT COUNT(*) FROM spans") == [(3,)]
    assert (sessions["before"]["span_count"], sessions["before"]["prompt_tokens"]) == (1, 1)
    assert sessions["before"]["cost_usd"] is None
    assert sessions["after"]["span_count"] == 1
    assert (sessions["after"]["prompt_tokens"], sessions["after"]["error_count"]) == (100, 1)
    assert (sessions["stays"]["span_count"], sessions["stays"]["prompt_tokens"]) == (1, 7)
    users = {(r["session_id"], r["user_id"]): r["span_count"] for r in tables["session_users"]}
    assert users == {("after", "cy"): 1, ("before", "ada"): 1, ("stays", "bob"): 1}


def test_a_span_moved_out_of_its_only_session_removes_that_session(db):
    export_batches(
        db,
        [
            [make_span(5, 1, session="lonely", user="ada", prompt=3)],
            [make_span(5, 1, prompt=3)],  # the same span, now without a session
        ],
    )
    tables = assert_consistent(db)
    assert tables["sessions"] == [] and tables["session_users"] == []
    assert unsessioned(db) == {f"{5:032x}": 1}


def test_a_duplicate_in_a_later_chunk_of_one_big_batch(db):
    # The exporter writes up to 64 rows per statement: the copy of span 10 lands in a later
    # chunk, after the first one was already counted as new.
    batch = [
        make_span(1 + n % 5, 1 + n, session=f"s{n % 4}", user="ada", prompt=n, start_ms=n)
        for n in range(600)
    ]
    batch.append(make_span(1 + 10 % 5, 11, session="moved", user="bob", prompt=1000))
    export_batches(db, [batch])
    sessions = by_session(assert_consistent(db))
    assert raw(db, "SELECT COUNT(*) FROM spans") == [(600,)]
    assert sessions["moved"]["span_count"] == 1
    assert sessions["s2"]["span_count"] == 149  # 150 spans with n % 4 == 2, minus n == 10
    assert sessions["s2"]["prompt_tokens"] == sum(n for n in range(600) if n % 4 == 2) - 10


def test_tokens_never_reported_stay_null_and_later_counts_are_added(db):
    export_batches(
        db,
        [
            [
                make_span(1, 1, session="none"),
                make_span(1, 2, session="later"),
                make_span(2, 3, session="prompt-only", prompt=12),
                make_span(3, 4, session="genai", **{_keys.GENAI_INPUT_TOKENS: 4}),
            ],
            [
                make_span(1, 5, session="none", start_ms=2),
                make_span(1, 6, session="later", prompt=3, completion=4, cost=0.25),
                make_span(3, 7, session="genai", **{_keys.GENAI_OUTPUT_TOKENS: 6}),
            ],
        ],
    )
    sessions = by_session(assert_consistent(db))

    def counts(session: str) -> tuple[Any, ...]:
        row = sessions[session]
        columns = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "llm_calls")
        return tuple(row[column] for column in columns)

    assert counts("none") == (None, None, None, None, 0)
    assert counts("later") == (3, 4, 7, 0.25, 1)
    assert counts("prompt-only") == (12, None, 12, None, 1)
    assert counts("genai") == (4, 6, 10, None, 2)
    with SessionStore(db) as store:
        summary = store.session("none")
    assert (summary.prompt_tokens, summary.total_tokens, summary.cost_usd) == (None, None, None)


def test_token_counts_near_sqlite_largest_integer(db):
    """Sums past 2**63 - 1 stop there (no float, no failed batch), and sums below it are
    exact, in one batch or across many."""
    export_batches(
        db,
        [
            [
                make_span(1, 1, session="one-batch", prompt=BIGGEST, completion=2**62),
                make_span(1, 2, session="one-batch", prompt=BIGGEST, completion=2**62),
                make_span(2, 3, session="across", prompt=2**62, completion=2**53 + 1),
                make_span(3, 4, session="exact", prompt=2**53 + 1),
            ],
            [make_span(2, 5, session="across", prompt=2**62, completion=1)],
            [make_span(2, 6, session="across", prompt=2**62, completion=1)],
            [make_span(3, 7, session="exact", prompt=1)],
            [make_span(3, 8, session="exact", prompt=BIGGEST - 2**53 - 2)],
        ],
    )
    sessions = by_session(assert_consistent(db))
    one = sessions["one-batch"]
    assert (one["prompt_tokens"], one["completion_tokens"]) == (BIGGEST, 2**63 - 1)
    # Each of those spans' own prompt + completion is past the limit: its total is unknown.
    assert one["total_tokens"] is None
    across = sessions["across"]
    assert (across["prompt_tokens"], across["completion_tokens"]) == (BIGGEST, 2**53 + 3)
    assert sessions["exact"]["prompt_tokens"] == BIGGEST
    with SessionStore(db) as store:
        assert store.session("across").completion_tokens == 2**53 + 3
        assert store.session("one-batch").prompt_tokens == BIGGEST


def test_a_sum_one_below_the_limit_is_kept_exactly(db):
    export_batches(
        db,
        [
            [make_span(1, 1, session="s", prompt=2**62)],
            [
                make_span(1, 2, session="s", prompt=2**62 - 2),
                make_span(1, 3, session="s", prompt=1),
            ],
        ],
    )
    assert by_session(assert_consistent(db))["s"]["prompt_tokens"] == BIGGEST


# --- tracker runs --------------------------------------------------------------------------


def test_tracker_runs_with_a_sub_session_and_each_status(db, spans, tracer):
    """Real SessionTracker runs (finished, failed, still running) with a child tracker,
    stamped by the session processor, then exported to the store in three batches."""
    with SessionTracker("trip", name="plan-trip", user_id="ada") as run:
        with run.step("plan"):
            with tracer.start_as_current_span(
                "llm", attributes={_keys.OI_TOKENS_PROMPT: 30, _keys.OI_TOKENS_COMPLETION: 12}
            ):
                pass
        with run.child("search", session_id="trip.search") as child:
            with child.step("look"):
                with tracer.start_as_current_span(
                    "llm", attributes={_keys.OI_TOKENS_PROMPT: 5, _keys.OI_COST_TOTAL: 0.01}
                ):
                    pass
        with run.step("book"):
            pass
    with pytest.raises(RuntimeError, match="no seats"):
        with SessionTracker("fails", name="book-flight") as failing:
            with failing.step("pay"):
                raise RuntimeError("no seats")
    running = SessionTracker("running", name="still-going").start()
    with running.step("first"):
        pass
    finished = spans.all()  # "running" has no summary span yet
    running.end()
    assert len(finished) >= 10
    third = len(finished) // 3
    export_batches(db, [finished[:third], finished[third : 2 * third], finished[2 * third :]])

    sessions = by_session(assert_consistent(db))
    assert set(sessions) == {"trip", "trip.search", "fails", "running"}
    assert [sessions[s]["tracked"] for s in sorted(sessions)] == [1, 1, 1, 1]
    assert (sessions["trip"]["ended_status"], sessions["fails"]["ended_status"]) == ("ok", "error")
    assert sessions["trip.search"]["ended_status"] == "ok"
    assert (sessions["running"]["ended_ns"], sessions["running"]["ended_status"]) == (None, None)
    assert sessions["trip.search"]["parent_session_id"] == "trip"
    assert sessions["trip"]["parent_session_id"] is None
    assert (sessions["trip"]["name"], sessions["trip.search"]["name"]) == ("plan-trip", "search")
    assert sessions["trip"]["prompt_tokens"] == 30
    assert sessions["trip.search"]["cost_usd"] == pytest.approx(0.01)
    with SessionStore(db) as store:
        trip = store.session("trip")
        statuses = {summary.session_id: summary.status for summary in store.sessions()}
    assert statuses == {"trip": "ok", "trip.search": "ok", "fails": "error", "running": "running"}
    assert trip.subsessions == ("trip.search",)
    assert trip.with_subsessions is not None
    assert trip.with_subsessions.sessions == 2
    assert trip.with_subsessions.prompt_tokens == 35
    assert trip.with_subsessions.span_count == (
        sessions["trip"]["span_count"] + sessions["trip.search"]["span_count"]
    )


def test_the_latest_summary_span_decides_a_tracker_status(db):
    summary = {_keys.SPAN_TYPE: "summary"}
    export_batches(
        db,
        [
            [
                make_span(1, 1, session="a", end_ms=10, error=True, **summary),
                make_span(2, 2, session="b", end_ms=10, **summary),
            ],
            [
                make_span(1, 3, session="a", end_ms=20, **summary),  # later: ok wins
                make_span(2, 4, session="b", end_ms=5, error=True, **summary),  # earlier: ignored
            ],
        ],
    )
    sessions = by_session(assert_consistent(db))
    assert (sessions["a"]["ended_status"], sessions["a"]["ended_ns"]) == ("ok", T0 + 20 * MS)
    assert (sessions["b"]["ended_status"], sessions["b"]["ended_ns"]) == ("ok", T0 + 10 * MS)


def test_two_summary_spans_ending_at_the_same_time(db):
    # A tie: the error wins, whichever was written first, batch by batch and in a recount.
    summary = {_keys.SPAN_TYPE: "summary"}
    export_batches(
        db,
        [
            [make_span(1, 1, session="tie", end_ms=10, **summary)],
            [make_span(1, 2, session="tie", end_ms=10, error=True, **summary)],
            [
                make_span(2, 3, session="tie-in-batch", end_ms=10, error=True, **summary),
                make_span(2, 4, session="tie-in-batch", end_ms=10, **summary),
            ],
        ],
    )
    sessions = by_session(assert_consistent(db))
    assert sessions["tie"]["ended_status"] == "error"
    assert sessions["tie-in-batch"]["ended_status"] == "error"


def test_session_keys_masks_and_flags(db):
    oi, genai = _keys.OI_SESSION_ID, _keys.GENAI_CONVERSATION_ID
    many = {f"extra.{n}": n for n in range(130)}
    export_batches(
        db,
        [
            [
                make_span(1, 1, **{oi: "k", genai: "k"}),
                make_span(1, 2, **{oi: "k"}),
                make_span(1, 3),  # no session: not in the masks
                make_span(2, 4, **{oi: "k", genai: "other"}),  # two sessions named
                make_span(3, 5, session="k", **many),  # at the attribute limit
            ]
        ],
    )
    tables = assert_consistent(db)
    row = by_session(tables)["k"]
    assert (row["conflicts"], row["full_spans"]) == (1, 1)
    assert row["key_mask_or"] != row["key_mask_and"]
    assert row["trace_count"] == 3 and unsessioned(db) == {f"{1:032x}": 1}


# --- random batches ------------------------------------------------------------------------

_counts = st.one_of(
    st.none(), st.integers(0, 1000), st.sampled_from([2**53 + 1, 2**62, BIGGEST - 1, BIGGEST])
)
_span_specs = st.fixed_dictionaries(
    {
        "trace": st.integers(1, 4),
        "span": st.integers(1, 12),  # few ids, so spans are often sent again
        "session": st.sampled_from([None, "s0", "s1", "s2", "s3"]),
        "user": st.sampled_from([None, "ada", "bob"]),
        "start_ms": st.integers(0, 50),
        "length": st.integers(0, 50),
        "error": st.booleans(),
        "prompt": _counts,
        "completion": _counts,
        "total": st.one_of(st.none(), st.integers(0, 5000)),
        "cost": st.one_of(st.none(), st.floats(0, 10, allow_nan=False)),
        "parent": st.sampled_from([None, "s0", "s1"]),
        "name": st.sampled_from([None, "run-a", "run-b"]),
        "type": st.sampled_from([None, "step", "summary"]),
        "step": st.one_of(st.none(), st.integers(0, 3)),
        # Tags in either key, with values that are not tags, beside a NaN (written as NaN,
        # which SQLite's JSON functions refuse) or a mapping holding a key of the same name.
        "tags": st.sampled_from([None, ["a"], ["a", "b"], ["b", "", "c"], [1, 2], "a"]),
        "langfuse_tags": st.sampled_from([None, ["c"], ("a", "d")]),
        "odd": st.sampled_from([None, float("nan"), {_keys.OI_TAGS: ["nested"]}]),
    }
)


def _spec_span(spec: dict[str, Any]) -> ReadableSpan:
    extra: dict[str, Any] = {}
    for key, value in (
        ("odd", spec["odd"]),  # first, so a mapping's key of the same name comes before
        (_keys.PARENT_SESSION_ID, spec["parent"]),
        (_keys.SESSION_NAME, spec["name"]),
        (_keys.SPAN_TYPE, spec["type"]),
        (_keys.STEP_INDEX, spec["step"]),
        (_keys.OI_TAGS, spec["tags"]),
        (_keys.LANGFUSE_TAGS, spec["langfuse_tags"]),
    ):
        if value is not None:
            extra[key] = value
    return make_span(
        spec["trace"],
        spec["span"],
        session=spec["session"],
        user=spec["user"],
        start_ms=spec["start_ms"],
        end_ms=spec["start_ms"] + spec["length"],
        error=spec["error"],
        prompt=spec["prompt"],
        completion=spec["completion"],
        total=spec["total"],
        cost=spec["cost"],
        **extra,
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(_span_specs, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40)))
def test_random_batches_give_what_a_recount_gives(tmp_path_factory, specs, cuts):
    db = tmp_path_factory.mktemp("random") / "sessions.db"
    spans = [_spec_span(spec) for spec in specs]
    edges = sorted({0, len(spans), *(cut for cut in cuts if cut < len(spans))})
    batches = [spans[start:end] for start, end in itertools.pairwise(edges) if end > start]
    export_batches(db, batches)
    tables = assert_consistent(db)
    last = {(s["trace"], s["span"]): s for s in specs}  # the last copy of each span wins
    assert raw(db, "SELECT COUNT(*) FROM spans") == [(len(last),)]
    expected = Counter(s["session"] for s in last.values() if s["session"] is not None)
    assert {row["session_id"]: row["span_count"] for row in tables["sessions"]} == expected
    tags = {
        (s["session"], tag)
        for s in last.values()
        if s["session"] is not None
        for key in ("tags", "langfuse_tags")
        if isinstance(s[key], (list, tuple))
        for tag in s[key]
        if isinstance(tag, str) and tag
    }
    assert {(row["session_id"], row["tag"]) for row in tables["session_tags"]} == tags


# --- writers in other processes ------------------------------------------------------------

# A writer process: batches of spans with ids fixed by (process, batch, index), exported
# through the real exporter. It prints a line after each committed batch.
WRITER = """
import os, sys, time
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from sessiontrace.store import SQLiteSpanExporter

db, process, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
go, first_batch = sys.argv[5] or None, int(sys.argv[6])
resource = Resource.create({"service.name": f"writer-{process}"})
exporter = SQLiteSpanExporter(db)

def span(batch, index):
    number = batch * size + index
    attributes = {
        "session.id": f"s{number % 7}",
        "user.id": f"u{(number + process) % 3}",
        "llm.token_count.prompt": number % 100,
        "llm.token_count.completion": process + 1,
        "process": process,
        "input.value": "x" * 300,
    }
    if number % 13 == 0:
        del attributes["session.id"]
    return ReadableSpan(
        name=f"p{process}",
        context=SpanContext(1 + batch * 10 + index % 10, (process << 40) | (batch << 20) | index,
                            is_remote=False, trace_flags=TraceFlags(1)),
        resource=resource,
        attributes=attributes,
        start_time=1_700_000_000_000_000_000 + number * 1000,
        end_time=1_700_000_000_000_000_000 + number * 1000 + 500,
        status=Status(StatusCode.ERROR if number % 17 == 0 else StatusCode.UNSET),
    )

print("ready", flush=True)
while go is not None and not os.path.exists(go):
    time.sleep(0.005)
for batch in range(first_batch, first_batch + batches):
    result = exporter.export([span(batch, index) for index in range(size)])
    if result.name != "SUCCESS":
        sys.exit(f"batch {batch} failed")
    print(batch, flush=True)
exporter.shutdown()
"""


def writer(db: Path, process: int, batches: int, size: int, go: Path | None = None, first=0):
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SESSIONTRACE_"))
    }
    arguments = [str(db), str(process), str(batches), str(size), str(go or ""), str(first)]
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def expected_sessions(process_batches: dict[int, range], size: int) -> dict[str, dict[str, int]]:
    """What the WRITER processes stored, per session: spans, traces, tokens and errors."""
    totals: dict[str, dict[str, Any]] = {}
    for process, batches in process_batches.items():
        for batch in batches:
            for index in range(size):
                number = batch * size + index
                if number % 13 == 0:
                    continue
                row = totals.setdefault(
                    f"s{number % 7}",
                    {"spans": 0, "traces": set(), "prompt": 0, "completion": 0, "errors": 0},
                )
                row["spans"] += 1
                row["traces"].add(1 + batch * 10 + index % 10)
                row["prompt"] += number % 100
                row["completion"] += process + 1
                row["errors"] += number % 17 == 0
    return {session: {**row, "traces": len(row["traces"])} for session, row in totals.items()}


def test_two_processes_writing_the_same_sessions_at_once(tmp_path):
    db = tmp_path / "sessions.db"
    go = tmp_path / "go"
    batches, size = 40, 150
    writers = [writer(db, process, batches, size, go) for process in (0, 1)]
    try:
        for each in writers:
            assert each.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [each.communicate(timeout=240) for each in writers]
    finally:
        for each in writers:
            each.kill()
    assert [each.returncode for each in writers] == [0, 0], [err for _, err in outputs]
    # Both wrote the same batches' numbers: the same sessions and (shared) traces.
    order = [
        p
        for (p,) in raw(
            db, "SELECT json_extract(attributes, '$.process') FROM spans ORDER BY rowid"
        )
    ]
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 2, "the two writers did not interleave; the test proves nothing"
    tables = assert_consistent(db)
    want = expected_sessions({0: range(batches), 1: range(batches)}, size)
    got = {
        row["session_id"]: {
            "spans": row["span_count"],
            "traces": trace_count(tables, row["session_id"]),
            "prompt": row["prompt_tokens"],
            "completion": row["completion_tokens"],
            "errors": row["error_count"],
        }
        for row in tables["sessions"]
    }
    assert got == want
    stamped = sum(row["span_count"] for row in tables["sessions"])
    assert stamped + sum(unsessioned(db).values()) == 2 * batches * size


def test_a_writer_killed_mid_batch_leaves_no_half_counted_batch(tmp_path):
    """SIGKILL lands while the writer is inside its big transactions: what was committed is
    counted whole, the rest is gone, and the store still reads."""
    db = tmp_path / "sessions.db"
    size = 4000
    stored_batches: list[int] = []
    next_batch = 0
    randomness = random.Random(9)
    for round_ in range(3):
        process = writer(db, 0, 1000, size, first=next_batch)
        try:
            assert process.stdout.readline().strip() == "ready"
            committed = [int(process.stdout.readline())]  # at least one batch per round
            time.sleep(randomness.uniform(0.05, 0.4))
            process.send_signal(signal.SIGKILL)
            output, _ = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == -signal.SIGKILL, f"round {round_}: the writer ended itself"
        committed += [int(line) for line in output.split()]
        stored_batches += committed
        next_batch = committed[-1] + 10  # the next round writes other ids
    spans = raw(db, "SELECT COUNT(*) FROM spans")[0][0]
    assert spans % size == 0, "part of a batch was stored"
    assert spans >= len(stored_batches) * size
    assert raw(db, "PRAGMA integrity_check") == [("ok",)]
    tables = assert_consistent(db)
    stamped = sum(row["span_count"] for row in tables["sessions"])
    assert stamped + sum(unsessioned(db).values()) == spans
    assert (
        sum(row["span_count"] for row in tables["sessions"])
        == raw(db, "SELECT COUNT(*) FROM spans WHERE session_id IS NOT NULL")[0][0]
    )
    # Every batch stored is whole, and each one the writer reported is there.
    span_ids = raw(db, "SELECT span_id FROM spans")
    batches = Counter(int(span_id, 16) >> 20 & 0xFFFFF for (span_id,) in span_ids)
    assert set(batches.values()) == {size}
    assert set(stored_batches) <= set(batches)
    out, err = _cli(db, "sessions")
    assert err == "" and "s0" in out


def _cli(db: Path, *arguments: str) -> tuple[str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = main(["--store", str(db), *arguments], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    return out.getvalue(), err.getvalue()
