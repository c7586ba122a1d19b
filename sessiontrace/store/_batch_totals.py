"""One batch's totals per session, taken in memory for ``_summaries.add``.

The rows a batch just inserted are grouped by session and each group is turned into
columns, so the totals are taken by builtins at C speed (``min``, ``sum``, ``tuple.count``,
``Counter``) rather than span by span: 0.9 us a span for the whole pass, against 2.6 us
unrolled (measured in benchmarks/store_upkeep.py). What a session had before the batch is
read from the store: its row in ``sessions``, and which of the batch's traces it already had
(off the ``spans_session_trace`` index). A span flagged ``FLAG_REPEATED_CALL`` counts as a
span (and an error) but adds no tokens, LLM call or cost: another span counted its call.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sessiontrace.store._columns import (
    FLAG_CONFLICTING_KEYS,
    FLAG_FULL,
    FLAG_LLM_CALL,
    FLAG_REPEATED_CALL,
    KEY_BITS,
)
from sessiontrace.store._schema import COLUMNS, in_chunks

Row = Sequence[Any]

SUMMARY_SPAN = "summary"
"""The ``sessiontrace.span_type`` of a tracker's summary span."""

MAX_COUNT = 2**63 - 1
"""SQLite's largest integer: where a token total stops."""

_AT = {name: COLUMNS.index(name) for name in COLUMNS}
_ALL_KEYS = sum(KEY_BITS.values())
TRACE_AT, SESSION_AT, _USER = _AT["trace_id"], _AT["session_id"], _AT["user_id"]
_START, _END, _STATUS = _AT["start_ns"], _AT["end_ns"], _AT["status_code"]
_TOKENS = (_AT["prompt_tokens"], _AT["completion_tokens"], _AT["total_tokens"])
_NAME, _PARENT, _TYPE, _STEP = (
    _AT["session_name"],
    _AT["parent_session_id"],
    _AT["span_type"],
    _AT["step_index"],
)
_COST, _FLAGS, _MASK = _AT["cost_usd"], _AT["flags"], _AT["key_mask"]


def stored_sessions(
    conn: sqlite3.Connection, session_ids: list[str]
) -> dict[str, tuple[int, str | None, int]]:
    # Each session's span count, user and user count before this batch (absent: a new one).
    found: dict[str, tuple[int, str | None, int]] = {}
    for chunk, marks in in_chunks(session_ids):
        for session_id, *before in conn.execute(
            "SELECT session_id, span_count, user_id, user_count FROM sessions "
            f"WHERE session_id IN ({marks})",
            chunk,
        ):
            found[session_id] = tuple(before)
    return found


def new_traces(
    conn: sqlite3.Connection, session_id: str, batch: Counter[str], stored_spans: int
) -> int:
    """How many of the session's traces in this batch it had no span in before.

    Those are the traces whose spans in the store (this batch's are inserted already) are all
    from this batch; they are read off the spans_session_trace index. A new session needs no
    look. A small one is read whole, in one pass along the index; for a big one each trace is
    sought (a seek costs about as much as reading 50 entries along the index).
    """
    if stored_spans == 0:
        return len(batch)
    if stored_spans <= _SEEK_COST * len(batch):
        stored = dict(conn.execute(_SESSION_TRACES, (session_id,)).fetchall())
        return sum(stored.get(trace_id) == count for trace_id, count in batch.items())
    new = 0
    for chunk, marks in in_chunks(list(batch)):
        for trace_id, count in conn.execute(
            _SESSION_TRACES_AMONG.format(marks=marks), (session_id, *chunk)
        ):
            new += count == batch[trace_id]
    return new


_SEEK_COST = 50
_SESSION_TRACES = "SELECT trace_id, COUNT(*) FROM spans WHERE session_id = ? GROUP BY trace_id"
_SESSION_TRACES_AMONG = (
    "SELECT trace_id, COUNT(*) FROM spans WHERE session_id = ? AND trace_id IN ({marks}) "
    "GROUP BY trace_id"
)


def session_values(
    session_id: str,
    group: list[Row],
    columns: tuple[tuple[Any, ...], ...],
    new_traces: int,
    user: tuple[str | None, int],
) -> tuple[Any, ...]:
    # One session's spans of this batch as a sessions row (in _SESSION_COLUMNS order).
    count = len(group)
    flags = columns[_FLAGS]
    by_flags = {value: flags.count(value) for value in set(flags)}
    masks = set(columns[_MASK])
    mask_or, mask_and = 0, _ALL_KEYS
    for mask in masks:
        mask_or |= mask
        mask_and &= mask
    span_types = columns[_TYPE]
    ended = None
    if SUMMARY_SPAN in span_types:  # the tracker's summary span: its end and status
        ended = max(
            row[_END] * 2 + (row[_STATUS] == "ERROR")
            for row in group
            if row[_TYPE] == SUMMARY_SPAN
        )
    costs = columns[_COST]
    tokens = tuple(columns[at] for at in _TOKENS)
    if any(value & FLAG_REPEATED_CALL for value in by_flags):  # rare: leave the repeats out
        kept = [not flag & FLAG_REPEATED_CALL for flag in flags]
        costs = tuple(cost for cost, keep in zip(costs, kept, strict=True) if keep)
        tokens = tuple(
            tuple(n for n, keep in zip(counts, kept, strict=True) if keep) for counts in tokens
        )
    return (
        session_id,
        min(filter(None, columns[_NAME]), default=None),
        min(filter(None, columns[_PARENT]), default=None),
        count,
        columns[_STATUS].count("ERROR"),
        sum(n for value, n in by_flags.items() if value & _CALL_BITS == FLAG_LLM_CALL),
        min(columns[_START]),
        max(columns[_END]),
        *(_count_sum(counts) for counts in tokens),
        None if costs.count(None) == len(costs) else sum(filter(None, costs), 0.0),
        int(span_types.count(None) != count or columns[_STEP].count(None) != count),
        None if ended is None else ended // 2,
        mask_or,
        mask_and,
        sum(n for value, n in by_flags.items() if value & FLAG_CONFLICTING_KEYS),
        sum(n for value, n in by_flags.items() if value & FLAG_FULL),
        new_traces,
        *user,
        None if ended is None else ("error" if ended % 2 else "ok"),
    )


_CALL_BITS = FLAG_LLM_CALL | FLAG_REPEATED_CALL


def _count_sum(counts: tuple[int | None, ...]) -> int | None:
    # The sum of the token counts reported (None: none was), saturating at SQLite's largest.
    if counts.count(None) == len(counts):
        return None
    return min(sum(filter(None, counts)), MAX_COUNT)


def user_values(
    session_id: str, columns: tuple[tuple[Any, ...], ...]
) -> list[tuple[str, str, int, int]]:
    # (session, user, spans, first start) for each user named in this batch of the session.
    named = columns[_USER]
    distinct = set(named)
    if len(distinct) == 1:  # the usual case: one user (or none) on every span
        (user_id,) = distinct
        return [] if user_id is None else [(session_id, user_id, len(named), min(columns[_START]))]
    found: dict[str, list[int]] = {}
    for user_id, start in zip(named, columns[_START], strict=True):
        if user_id is None:
            continue
        user = found.get(user_id)
        if user is None:
            found[user_id] = [1, start]
        else:
            user[0] += 1
            user[1] = min(user[1], start)
    return [(session_id, user_id, *user) for user_id, user in found.items()]  # type: ignore[misc]
