"""Keep the store's summary tables in step with its spans, in the writer's transaction.

Each summary row is an aggregate over ``spans``, written here as SQL. :func:`add` folds the
rows a batch just inserted into ``sessions`` and ``session_users`` (and ``session_tags``, in
``_tags.py``): the rows are in memory already, so their totals are taken there, a session at a
time, then one upsert per session and user merges the batch's numbers into the stored row.
Upkeep so costs the same whatever the store's size, and listing sessions reads one row each.
(Aggregating the new rows in SQL instead read them back four times: 2-3x the cost, measured
in benchmarks/store_upkeep.py.)
:func:`rebuild` recomputes chosen sessions from all of their spans (after a span was
replaced, or sessions pruned), and :func:`rebuild_all` the whole store (migration, or a store
another program wrote). Both use the same aggregates, so they agree: the tests compare them.
A span flagged ``FLAG_REPEATED_CALL`` (another span reported its model call) counts as a span
and an error, never in tokens, LLM calls or cost.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Collection, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from sessiontrace.store import _tags
from sessiontrace.store._batch_totals import (
    MAX_COUNT,
    SESSION_AT,
    SUMMARY_SPAN,
    TRACE_AT,
    new_traces,
    session_values,
    stored_sessions,
    user_values,
)
from sessiontrace.store._columns import (
    FLAG_CONFLICTING_KEYS,
    FLAG_FULL,
    FLAG_LLM_CALL,
    FLAG_REPEATED_CALL,
    KEY_BITS,
)
from sessiontrace.store._schema import SESSION_TABLES, in_chunks

Row = Sequence[Any]


def whole_sum(column: str) -> str:
    """SQL for the exact, saturating sum of a token count column (see the comment)."""
    # Only whole numbers from 0 count (a row another program wrote may hold text), summed
    # exactly as add() does, and a sum past 2**63 - 1 saturates there. SUM raises on overflow
    # and TOTAL is a float (2**53 + 1 + 1 gave 2**53), so each count is split into its high
    # and low 32 bits: neither sum can overflow below 2**31 spans.
    kept = f"CASE WHEN typeof({column}) = 'integer' AND {column} >= 0 THEN {column} END"
    high = f"(SUM({kept} >> 32) + (SUM({kept} & 4294967295) >> 32))"
    return (
        f"CASE WHEN COUNT({kept}) = 0 THEN NULL WHEN {high} >= 2147483648 THEN {MAX_COUNT} "
        f"ELSE {high} * 4294967296 + (SUM({kept} & 4294967295) & 4294967295) END"
    )


def _time(column: str, aggregate: str) -> str:
    return f"{aggregate}(CASE WHEN typeof({column}) = 'integer' THEN {column} ELSE 0 END)"


def _bits(aggregate: str) -> str:
    # Bitwise OR (MAX of each bit) or AND (MIN) of the key masks of the spans that carry a
    # session; with none, OR is 0 and AND has every bit.
    every = 0 if aggregate == "MAX" else 1
    return " | ".join(
        f"COALESCE({aggregate}(CASE WHEN session_id IS NOT NULL THEN key_mask & {bit} END), "
        f"{bit * every})"
        for bit in KEY_BITS.values()
    )


def _counted(column: str) -> str:
    # The column of a span whose call no other span counted (a NULL or odd flags: counted).
    return f"(CASE WHEN flags & {FLAG_REPEATED_CALL} THEN NULL ELSE {column} END)"


def _cost(column: str) -> str:
    return f"TOTAL({column}) + (CASE WHEN COUNT({column}) = 0 THEN NULL ELSE 0 END)"


# column: (aggregate over a session's spans, how a new aggregate merges into the stored row)
_SESSION: dict[str, tuple[str, str]] = {
    "session_id": ("session_id", ""),
    "name": ("MIN(session_name)", "COALESCE(MIN(name, excluded.name), name, excluded.name)"),
    "parent_session_id": (
        "MIN(parent_session_id)",
        "COALESCE(MIN(parent_session_id, excluded.parent_session_id), parent_session_id, "
        "excluded.parent_session_id)",
    ),
    "span_count": ("COUNT(*)", "span_count + excluded.span_count"),
    "error_count": ("SUM(status_code = 'ERROR')", "error_count + excluded.error_count"),
    "llm_calls": (
        f"SUM((flags & {FLAG_LLM_CALL | FLAG_REPEATED_CALL}) = {FLAG_LLM_CALL})",
        "llm_calls + excluded.llm_calls",
    ),
    "first_start_ns": (
        _time("start_ns", "MIN"),
        "MIN(first_start_ns, excluded.first_start_ns)",
    ),
    "last_end_ns": (_time("end_ns", "MAX"), "MAX(last_end_ns, excluded.last_end_ns)"),
    **{
        column: (
            whole_sum(_counted(column)),
            f"CASE WHEN excluded.{column} IS NULL THEN {column} "
            f"ELSE MIN(COALESCE({column}, 0) + excluded.{column}, 9223372036854775807) END",
        )
        for column in ("prompt_tokens", "completion_tokens", "total_tokens")
    },
    "cost_usd": (
        _cost(_counted("cost_usd")),
        "CASE WHEN excluded.cost_usd IS NULL THEN cost_usd "
        "ELSE COALESCE(cost_usd, 0) + excluded.cost_usd END",
    ),
    "tracked": (
        "MAX(span_type IS NOT NULL OR step_index IS NOT NULL)",
        "MAX(tracked, excluded.tracked)",
    ),
    # The tracker's summary span: its end and status, as end * 2 + 1 for an error, so one
    # MAX finds the latest (an error wins a tie) and its status together.
    "ended_ns": (
        f"MAX(CASE WHEN span_type = '{SUMMARY_SPAN}' AND typeof(end_ns) = 'integer' "
        "THEN end_ns * 2 + (status_code = 'ERROR') END)",
        "",
    ),
    "key_mask_or": (_bits("MAX"), "key_mask_or | excluded.key_mask_or"),
    "key_mask_and": (_bits("MIN"), "key_mask_and & excluded.key_mask_and"),
    "conflicts": (
        f"SUM((flags & {FLAG_CONFLICTING_KEYS}) != 0)",
        "conflicts + excluded.conflicts",
    ),
    "full_spans": (f"SUM((flags & {FLAG_FULL}) != 0)", "full_spans + excluded.full_spans"),
    # add() counts only the (session, trace) pairs that a batch adds.
    "trace_count": ("COUNT(DISTINCT trace_id)", "trace_count + excluded.trace_count"),
    # Set by add() for a new session with one user; else recounted by _refresh_counts.
    "user_id": ("NULL", ""),
    "user_count": ("0", ""),
}

_SESSION_COLUMNS = (*_SESSION, "ended_status")
_LATER_END = (
    "excluded.ended_ns IS NOT NULL AND (ended_ns IS NULL OR excluded.ended_ns > ended_ns "
    "OR (excluded.ended_ns = ended_ns AND excluded.ended_status = 'error'))"
)


def _sessions_statement(where: str) -> str:
    inner = ", ".join(f"{aggregate} AS {column}" for column, (aggregate, _) in _SESSION.items())
    outer = ", ".join("ended_ns / 2" if column == "ended_ns" else column for column in _SESSION)
    return (
        f"INSERT OR REPLACE INTO sessions ({', '.join(_SESSION_COLUMNS)}) "
        f"SELECT {outer}, CASE ended_ns % 2 WHEN 1 THEN 'error' WHEN 0 THEN 'ok' END "
        f"FROM (SELECT {inner} FROM spans WHERE typeof(session_id) = 'text' {where} "
        "GROUP BY session_id)"
    )


def _upsert(table: str, columns: tuple[str, ...], key: str, updates: list[str]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}"
    )


_UPSERT_SESSION = _upsert(
    "sessions",
    _SESSION_COLUMNS,
    "session_id",
    [
        f"ended_status = CASE WHEN {_LATER_END} THEN excluded.ended_status ELSE ended_status END",
        f"ended_ns = CASE WHEN {_LATER_END} THEN excluded.ended_ns ELSE ended_ns END",
        *(f"{column} = {rule}" for column, (_, rule) in _SESSION.items() if rule),
    ],
)
_UPSERT_USER = _upsert(
    "session_users",
    ("session_id", "user_id", "span_count", "first_start_ns"),
    "session_id, user_id",
    [
        "span_count = span_count + excluded.span_count",
        "first_start_ns = MIN(first_start_ns, excluded.first_start_ns)",
    ],
)


def _users_statement(where: str) -> str:
    return (
        "INSERT OR REPLACE INTO session_users (session_id, user_id, span_count, first_start_ns) "
        f"SELECT session_id, user_id, COUNT(*), {_time('start_ns', 'MIN')} FROM spans "
        f"WHERE typeof(session_id) = 'text' AND typeof(user_id) = 'text' {where} "
        "GROUP BY session_id, user_id"
    )


def add(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    """Fold ``rows``, just inserted into ``spans`` and none of them counted before, into the
    summary tables, inside the caller's transaction.

    The batch's totals per session are taken in memory (``_batch_totals``), then one upsert
    per session and user merges them into the stored rows. The numbers are those of the
    aggregates above.
    """
    stamped = [row for row in rows if row[SESSION_AT] is not None]
    stamped.sort(key=_BY_SESSION)  # stable: each session's rows keep their order
    sessions: list[tuple[Any, ...]] = []
    users: list[tuple[str, str, int, int]] = []
    recount: list[str] = []
    groups = [(session_id, list(group)) for session_id, group in groupby(stamped, _BY_SESSION)]
    stored = stored_sessions(conn, [session_id for session_id, _ in groups])
    for session_id, group in groups:
        columns = tuple(zip(*group, strict=True))
        spans_before, user_before, users_before = stored.get(session_id, (0, None, 0))
        added = new_traces(conn, session_id, Counter(columns[TRACE_AT]), spans_before)
        named = user_values(session_id, columns)
        users.extend(named)
        only_user: tuple[str | None, int] = (None, 0)
        if session_id not in stored and len(named) == 1:
            only_user = (named[0][1], 1)
        # Otherwise which user leads, and how many there are, can only change when the batch
        # names a user other than the session's one and only user.
        elif named and (users_before != 1 or any(user[1] != user_before for user in named)):
            recount.append(session_id)
        sessions.append(session_values(session_id, group, columns, added, only_user))
    conn.executemany(_UPSERT_SESSION, sessions)
    conn.executemany(_UPSERT_USER, users)
    _refresh_counts(conn, recount)
    _tags.add(conn, stamped)


_BY_SESSION = itemgetter(SESSION_AT)


_REFRESH_COUNTS = """
UPDATE sessions SET
    user_id = (SELECT u.user_id FROM session_users AS u WHERE u.session_id = sessions.session_id
        ORDER BY u.span_count DESC, u.first_start_ns, u.user_id LIMIT 1),
    user_count = (SELECT COUNT(*) FROM session_users AS u
        WHERE u.session_id = sessions.session_id)
"""


def _refresh_counts(conn: sqlite3.Connection, session_ids: list[str] | None) -> None:
    """Recount the users of these sessions (``None``: of every session)."""
    if session_ids is None:
        conn.execute(_REFRESH_COUNTS)
        return
    for chunk, marks in in_chunks(session_ids):
        conn.execute(_REFRESH_COUNTS + f" WHERE session_id IN ({marks})", chunk)


def rebuild(conn: sqlite3.Connection, session_ids: Collection[str]) -> None:
    """Recompute the summaries of these sessions from all of their spans (inside the caller's
    transaction); one without spans left is removed.
    """
    for chunk, marks in in_chunks(list(session_ids)):
        where = f"AND session_id IN ({marks})"
        for table in SESSION_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE session_id IN ({marks})", chunk)
        conn.execute(_sessions_statement(where), chunk)
        conn.execute(_users_statement(where), chunk)
        _refresh_counts(conn, chunk)
        _tags.rebuild(conn, chunk)


def rebuild_all(conn: sqlite3.Connection) -> None:
    """Recompute every summary table from the spans (inside the caller's transaction).

    Example:
        >>> conn = sqlite3.connect(":memory:", isolation_level=None)
        >>> from sessiontrace.store._schema import ensure_schema
        >>> ensure_schema(conn)
        >>> rebuild_all(conn)
        >>> conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
        0
    """
    for table in SESSION_TABLES:
        conn.execute(f"DELETE FROM {table}")
    conn.execute(_sessions_statement(""))
    conn.execute(_users_statement(""))
    _refresh_counts(conn, None)
    _tags.rebuild(conn, None)
