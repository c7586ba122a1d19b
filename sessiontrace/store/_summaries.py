"""Keep the store's summary tables in step with its spans, in the writer's transaction.

Each summary row is an aggregate over ``spans``, written here as SQL. :func:`add` folds the
rows a batch just inserted into ``sessions``, ``session_traces``, ``session_users`` and
``traces``: one pass over the rows in memory, then one upsert per session, user and trace that
merges the batch's numbers into the stored row, so upkeep costs the same whatever the store's
size, and listing sessions reads one row each. (Aggregating the new rows in SQL instead read
them back four times: 2-3x the cost, measured in benchmarks/store_upkeep.py.) :func:`rebuild`
recomputes chosen sessions and traces from all of their spans (after a span was replaced, or
sessions pruned), and
:func:`rebuild_all` the whole store (migration, or a store another program wrote). Both use
the same aggregates, so they agree: the tests compare them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from sessiontrace.store._columns import FLAG_CONFLICTING_KEYS, FLAG_FULL, FLAG_LLM_CALL, KEY_BITS
from sessiontrace.store._schema import COLUMNS

Row = Sequence[Any]

_SUMMARY_SPAN = "summary"
_MAX_COUNT = 2**63 - 1  # SQLite's largest integer: where a token total stops


def whole_sum(column: str) -> str:
    """SQL for the exact, saturating sum of a token count column (see the comment)."""
    # Only whole numbers from 0 count (a row another program wrote may hold text), summed
    # exactly as add() does, and a sum past 2**63 - 1 saturates there. SUM raises on overflow
    # and TOTAL is a float (2**53 + 1 + 1 gave 2**53), so each count is split into its high
    # and low 32 bits: neither sum can overflow below 2**31 spans.
    kept = f"CASE WHEN typeof({column}) = 'integer' AND {column} >= 0 THEN {column} END"
    high = f"(SUM({kept} >> 32) + (SUM({kept} & 4294967295) >> 32))"
    return (
        f"CASE WHEN COUNT({kept}) = 0 THEN NULL WHEN {high} >= 2147483648 THEN {_MAX_COUNT} "
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
    "llm_calls": (f"SUM((flags & {FLAG_LLM_CALL}) != 0)", "llm_calls + excluded.llm_calls"),
    "first_start_ns": (
        _time("start_ns", "MIN"),
        "MIN(first_start_ns, excluded.first_start_ns)",
    ),
    "last_end_ns": (_time("end_ns", "MAX"), "MAX(last_end_ns, excluded.last_end_ns)"),
    **{
        column: (
            whole_sum(column),
            f"CASE WHEN excluded.{column} IS NULL THEN {column} "
            f"ELSE MIN(COALESCE({column}, 0) + excluded.{column}, 9223372036854775807) END",
        )
        for column in ("prompt_tokens", "completion_tokens", "total_tokens")
    },
    "cost_usd": (
        _cost("cost_usd"),
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
        f"MAX(CASE WHEN span_type = '{_SUMMARY_SPAN}' AND typeof(end_ns) = 'integer' "
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
_UPSERT_TRACE = _upsert(
    "traces",
    (
        "trace_id",
        "span_count",
        "session_spans",
        "start_ns",
        "end_ns",
        "key_mask_or",
        "key_mask_and",
    ),
    "trace_id",
    [
        "span_count = span_count + excluded.span_count",
        "session_spans = session_spans + excluded.session_spans",
        "start_ns = MIN(start_ns, excluded.start_ns)",
        "end_ns = MAX(end_ns, excluded.end_ns)",
        "key_mask_or = key_mask_or | excluded.key_mask_or",
        "key_mask_and = key_mask_and & excluded.key_mask_and",
    ],
)
_ADD_SESSION_TRACE = "INSERT OR IGNORE INTO session_traces (session_id, trace_id) VALUES (?, ?)"


def _session_traces_statement(where: str) -> str:
    return (
        "INSERT OR IGNORE INTO session_traces (session_id, trace_id) "
        f"SELECT DISTINCT session_id, trace_id FROM spans "
        f"WHERE typeof(session_id) = 'text' {where}"
    )


def _users_statement(where: str) -> str:
    return (
        "INSERT OR REPLACE INTO session_users (session_id, user_id, span_count, first_start_ns) "
        f"SELECT session_id, user_id, COUNT(*), {_time('start_ns', 'MIN')} FROM spans "
        f"WHERE typeof(session_id) = 'text' AND typeof(user_id) = 'text' {where} "
        "GROUP BY session_id, user_id"
    )


def _traces_statement(where: str) -> str:
    return (
        "INSERT OR REPLACE INTO traces "
        "(trace_id, span_count, session_spans, start_ns, end_ns, key_mask_or, key_mask_and) "
        f"SELECT trace_id, COUNT(*), COUNT(session_id), {_time('start_ns', 'MIN')}, "
        f"{_time('end_ns', 'MAX')}, {_bits('MAX')}, {_bits('MIN')} "
        f"FROM spans WHERE trace_id IS NOT NULL {where} GROUP BY trace_id"
    )


_AT = {name: COLUMNS.index(name) for name in COLUMNS}
_ALL_KEYS = sum(KEY_BITS.values())


def add(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    """Fold ``rows``, just inserted into ``spans`` and none of them counted before, into the
    summary tables, inside the caller's transaction.

    One pass over the rows in Python (they are in memory already), then one upsert per
    session, user and trace of the batch. The numbers are those of the aggregates above.
    """
    trace_at, session_at, user_at = _AT["trace_id"], _AT["session_id"], _AT["user_id"]
    start_at, end_at, status_at = _AT["start_ns"], _AT["end_ns"], _AT["status_code"]
    prompt_at, completion_at, total_at = (
        _AT["prompt_tokens"],
        _AT["completion_tokens"],
        _AT["total_tokens"],
    )
    name_at, parent_at, type_at, step_at = (
        _AT["session_name"],
        _AT["parent_session_id"],
        _AT["span_type"],
        _AT["step_index"],
    )
    cost_at, flags_at, mask_at = _AT["cost_usd"], _AT["flags"], _AT["key_mask"]
    sessions: dict[str, list[Any]] = {}
    users: dict[tuple[str, str], list[int]] = {}
    traces: dict[str, list[int]] = {}
    pairs: set[tuple[str, str]] = set()
    for row in rows:
        trace_id, start, end = row[trace_at], row[start_at], row[end_at]
        trace = traces.get(trace_id)
        if trace is None:
            trace = traces[trace_id] = [0, 0, start, end, 0, _ALL_KEYS]
        trace[0] += 1
        if start < trace[2]:
            trace[2] = start
        if end > trace[3]:
            trace[3] = end
        session_id = row[session_at]
        if session_id is None:
            continue
        mask, flags = row[mask_at], row[flags_at]
        trace[1] += 1
        trace[4] |= mask
        trace[5] &= mask
        pairs.add((session_id, trace_id))
        s = sessions.get(session_id)
        if s is None:
            s = sessions[session_id] = [
                None, None, 0, 0, 0, start, end, None, None, None, None, 0, None, 0, _ALL_KEYS,
                0, 0,
            ]  # fmt: skip
        # Unrolled: this loop runs once per stored span.
        value = row[name_at]
        if value is not None and (s[0] is None or value < s[0]):
            s[0] = value
        value = row[parent_at]
        if value is not None and (s[1] is None or value < s[1]):
            s[1] = value
        s[2] += 1
        error = row[status_at] == "ERROR"
        s[3] += error
        s[4] += flags & FLAG_LLM_CALL
        if start < s[5]:
            s[5] = start
        if end > s[6]:
            s[6] = end
        value = row[prompt_at]
        if value is not None:
            s[7] = value if s[7] is None else s[7] + value
        value = row[completion_at]
        if value is not None:
            s[8] = value if s[8] is None else s[8] + value
        value = row[total_at]
        if value is not None:
            s[9] = value if s[9] is None else s[9] + value
        value = row[cost_at]
        if value is not None:
            s[10] = value if s[10] is None else s[10] + value
        span_type = row[type_at]
        if span_type is not None or row[step_at] is not None:
            s[11] = 1
            if span_type == _SUMMARY_SPAN:
                ended = end * 2 + error
                if s[12] is None or ended > s[12]:
                    s[12] = ended
        s[13] |= mask
        s[14] &= mask
        s[15] += (flags & FLAG_CONFLICTING_KEYS) != 0
        s[16] += (flags & FLAG_FULL) != 0
        user_id = row[user_at]
        if user_id is not None:
            user = users.get((session_id, user_id))
            if user is None:
                users[(session_id, user_id)] = [1, start]
            else:
                user[0] += 1
                if start < user[1]:
                    user[1] = start
    conn.executemany(_ADD_SESSION_TRACE, pairs)
    conn.executemany(_UPSERT_SESSION, [_session_values(key, s) for key, s in sessions.items()])
    conn.executemany(_UPSERT_USER, [(*key, *value) for key, value in users.items()])
    conn.executemany(_UPSERT_TRACE, [(key, *value) for key, value in traces.items()])
    _refresh_counts(conn, list(sessions))


_REFRESH_COUNTS = """
UPDATE sessions SET
    trace_count = (SELECT COUNT(*) FROM session_traces AS t
        WHERE t.session_id = sessions.session_id),
    user_id = (SELECT u.user_id FROM session_users AS u WHERE u.session_id = sessions.session_id
        ORDER BY u.span_count DESC, u.first_start_ns, u.user_id LIMIT 1),
    user_count = (SELECT COUNT(*) FROM session_users AS u
        WHERE u.session_id = sessions.session_id)
"""


def _refresh_counts(conn: sqlite3.Connection, session_ids: list[str] | None) -> None:
    """Recount the traces and users of these sessions (``None``: of every session)."""
    if session_ids is None:
        conn.execute(_REFRESH_COUNTS)
        return
    for start in range(0, len(session_ids), 500):
        chunk = session_ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        conn.execute(_REFRESH_COUNTS + f" WHERE session_id IN ({marks})", chunk)


def _session_values(session_id: str, s: list[Any]) -> tuple[Any, ...]:
    ended = s[12]
    return (
        session_id,
        *s[:7],
        *(None if count is None else min(count, _MAX_COUNT) for count in s[7:10]),
        s[10],
        s[11],
        None if ended is None else ended // 2,
        *s[13:17],
        None if ended is None else ("error" if ended % 2 else "ok"),
    )


def rebuild(
    conn: sqlite3.Connection, session_ids: Collection[str], trace_ids: Collection[str]
) -> None:
    """Recompute the summaries of these sessions and traces from all of their spans (inside
    the caller's transaction); one without spans left is removed.
    """
    sessions, traces = list(session_ids), list(trace_ids)
    for start in range(0, len(sessions), 500):
        chunk = sessions[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        where = f"AND session_id IN ({marks})"
        for table in ("sessions", "session_traces", "session_users"):
            conn.execute(f"DELETE FROM {table} WHERE session_id IN ({marks})", chunk)
        conn.execute(_sessions_statement(where), chunk)
        conn.execute(_session_traces_statement(where), chunk)
        conn.execute(_users_statement(where), chunk)
        _refresh_counts(conn, chunk)
    for start in range(0, len(traces), 500):
        chunk = traces[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        conn.execute(f"DELETE FROM traces WHERE trace_id IN ({marks})", chunk)
        where = f"AND trace_id IN ({marks})"
        conn.execute(_traces_statement(where), chunk)


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
    for table in ("sessions", "session_traces", "session_users", "traces"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute(_sessions_statement(""))
    conn.execute(_session_traces_statement(""))
    conn.execute(_users_statement(""))
    conn.execute(_traces_statement(""))
    _refresh_counts(conn, None)
