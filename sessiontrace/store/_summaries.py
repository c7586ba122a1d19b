"""Keep the store's summary tables in step with its spans, in the writer's transaction.

:func:`add` folds a batch of newly inserted rows into ``sessions``, ``session_traces``,
``session_users`` and ``traces`` with one upsert per session, user and trace of the batch,
so listing sessions reads one row each, whatever the store's size. :func:`rebuild`
recomputes chosen sessions and traces from their spans (after a span was replaced or
sessions were pruned), and :func:`rebuild_all` the whole store (migration, or a store
written by another program). Both give the same numbers: the tests compare them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from sessiontrace.store._columns import FLAG_CONFLICTING_KEYS, FLAG_FULL, FLAG_LLM_CALL, KEY_BITS
from sessiontrace.store._schema import COLUMNS

Row = Sequence[Any]

_AT = {name: COLUMNS.index(name) for name in COLUMNS}
_TRACE, _START, _END, _STATUS = _AT["trace_id"], _AT["start_ns"], _AT["end_ns"], _AT["status_code"]
_SESSION, _USER = _AT["session_id"], _AT["user_id"]
_PROMPT, _COMPLETION, _TOTAL = _AT["prompt_tokens"], _AT["completion_tokens"], _AT["total_tokens"]
_PARENT, _NAME, _TYPE = _AT["parent_session_id"], _AT["session_name"], _AT["span_type"]
_STEP, _COST, _FLAGS, _MASK = _AT["step_index"], _AT["cost_usd"], _AT["flags"], _AT["key_mask"]

_ALL_KEYS = sum(KEY_BITS.values())
_SUMMARY_SPAN = "summary"

_SESSION_FIELDS = (
    "session_id",
    "name",
    "parent_session_id",
    "span_count",
    "trace_count",
    "error_count",
    "llm_calls",
    "first_start_ns",
    "last_end_ns",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "tracked",
    "ended_ns",
    "ended_status",
    "key_mask_or",
    "key_mask_and",
    "conflicts",
    "full_spans",
)


def _plus(column: str) -> str:
    # NULL means "no span reported one": adding a batch without any keeps what was there.
    return (
        f"{column} = CASE WHEN excluded.{column} IS NULL THEN {column} "
        f"ELSE COALESCE({column}, 0) + excluded.{column} END"
    )


_UPSERT_SESSION = f"""
INSERT INTO sessions ({", ".join(_SESSION_FIELDS)})
VALUES ({", ".join("?" for _ in _SESSION_FIELDS)})
ON CONFLICT (session_id) DO UPDATE SET
    name = COALESCE(name, excluded.name),
    parent_session_id = COALESCE(parent_session_id, excluded.parent_session_id),
    span_count = span_count + excluded.span_count,
    trace_count = trace_count + excluded.trace_count,
    error_count = error_count + excluded.error_count,
    llm_calls = llm_calls + excluded.llm_calls,
    first_start_ns = MIN(first_start_ns, excluded.first_start_ns),
    last_end_ns = MAX(last_end_ns, excluded.last_end_ns),
    {_plus("prompt_tokens")},
    {_plus("completion_tokens")},
    {_plus("total_tokens")},
    {_plus("cost_usd")},
    tracked = MAX(tracked, excluded.tracked),
    ended_status = CASE WHEN excluded.ended_ns >= COALESCE(ended_ns, excluded.ended_ns)
        THEN excluded.ended_status ELSE ended_status END,
    ended_ns = COALESCE(MAX(ended_ns, excluded.ended_ns), ended_ns, excluded.ended_ns),
    key_mask_or = key_mask_or | excluded.key_mask_or,
    key_mask_and = key_mask_and & excluded.key_mask_and,
    conflicts = conflicts + excluded.conflicts,
    full_spans = full_spans + excluded.full_spans
"""

_UPSERT_USER = """
INSERT INTO session_users (session_id, user_id, span_count, first_start_ns) VALUES (?, ?, ?, ?)
ON CONFLICT (session_id, user_id) DO UPDATE SET
    span_count = span_count + excluded.span_count,
    first_start_ns = MIN(first_start_ns, excluded.first_start_ns)
"""

_UPSERT_TRACE = """
INSERT INTO traces (trace_id, span_count, session_spans, start_ns, end_ns, key_mask_or,
    key_mask_and) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    span_count = span_count + excluded.span_count,
    session_spans = session_spans + excluded.session_spans,
    key_mask_or = key_mask_or | excluded.key_mask_or,
    key_mask_and = key_mask_and & excluded.key_mask_and,
    start_ns = MIN(start_ns, excluded.start_ns),
    end_ns = MAX(end_ns, excluded.end_ns)
"""

_ADD_SESSION_TRACE = "INSERT OR IGNORE INTO session_traces (session_id, trace_id) VALUES (?, ?)"


class _Session:
    """One session's share of a batch, as the numbers the upsert adds."""

    __slots__ = (
        "completion",
        "conflicts",
        "cost",
        "ended_ns",
        "ended_status",
        "errors",
        "first",
        "full",
        "last",
        "llm_calls",
        "mask_and",
        "mask_or",
        "name",
        "parent",
        "prompt",
        "spans",
        "total",
        "traces",
        "tracked",
    )

    def __init__(self, row: Row) -> None:
        self.name: str | None = None
        self.parent: str | None = None
        self.spans = self.errors = self.llm_calls = self.conflicts = self.full = 0
        self.tracked = 0
        self.first, self.last = row[_START], row[_END]
        self.prompt: int | None = None
        self.completion: int | None = None
        self.total: int | None = None
        self.cost: float | None = None
        self.ended_ns: int | None = None
        self.ended_status: str | None = None
        self.mask_or, self.mask_and = 0, _ALL_KEYS
        self.traces: dict[str, None] = {}

    def add(self, row: Row) -> None:
        self.spans += 1
        self.name = self.name or row[_NAME]
        self.parent = self.parent or row[_PARENT]
        status, flags, mask = row[_STATUS], row[_FLAGS], row[_MASK]
        if status == "ERROR":
            self.errors += 1
        self.llm_calls += flags & FLAG_LLM_CALL
        self.conflicts += (flags & FLAG_CONFLICTING_KEYS) >> 1
        self.full += (flags & FLAG_FULL) >> 2
        self.first, self.last = min(self.first, row[_START]), max(self.last, row[_END])
        if row[_PROMPT] is not None:
            self.prompt = (self.prompt or 0) + row[_PROMPT]
        if row[_COMPLETION] is not None:
            self.completion = (self.completion or 0) + row[_COMPLETION]
        if row[_TOTAL] is not None:
            self.total = (self.total or 0) + row[_TOTAL]
        if row[_COST] is not None:
            self.cost = (self.cost or 0.0) + row[_COST]
        span_type = row[_TYPE]
        if span_type is not None or row[_STEP] is not None:
            self.tracked = 1
        if span_type == _SUMMARY_SPAN and (self.ended_ns is None or row[_END] >= self.ended_ns):
            self.ended_ns = row[_END]
            self.ended_status = "error" if status == "ERROR" else "ok"
        self.mask_or |= mask
        self.mask_and &= mask
        self.traces[row[_TRACE]] = None

    def values(self, session_id: str, new_traces: int) -> tuple[Any, ...]:
        return (
            session_id,
            self.name,
            self.parent,
            self.spans,
            new_traces,
            self.errors,
            self.llm_calls,
            self.first,
            self.last,
            _clamped(self.prompt),
            _clamped(self.completion),
            _clamped(self.total),
            self.cost,
            self.tracked,
            self.ended_ns,
            self.ended_status,
            self.mask_or,
            self.mask_and,
            self.conflicts,
            self.full,
        )


def add(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    """Fold ``rows``, just inserted into ``spans`` and none of them there before, into the
    summary tables. Runs inside the caller's transaction.
    """
    sessions: dict[str, _Session] = {}
    users: dict[tuple[str, str], list[int]] = {}
    traces: dict[str, list[int]] = {}
    for row in rows:
        session_id, start = row[_SESSION], row[_START]
        trace = traces.get(row[_TRACE])
        if trace is None:
            trace = traces[row[_TRACE]] = [0, 0, start, row[_END], 0, _ALL_KEYS]
        trace[0] += 1
        trace[2], trace[3] = min(trace[2], start), max(trace[3], row[_END])
        if session_id is None:
            continue
        trace[1] += 1
        trace[4] |= row[_MASK]
        trace[5] &= row[_MASK]
        session = sessions.get(session_id)
        if session is None:
            session = sessions[session_id] = _Session(row)
        session.add(row)
        user_id = row[_USER]
        if user_id is not None:
            user = users.get((session_id, user_id))
            if user is None:
                users[(session_id, user_id)] = [1, start]
            else:
                user[0] += 1
                user[1] = min(user[1], start)
    values = []
    for session_id, session in sessions.items():
        new_traces = 0
        for trace_id in session.traces:
            before = conn.total_changes
            conn.execute(_ADD_SESSION_TRACE, (session_id, trace_id))
            new_traces += conn.total_changes - before
        values.append(session.values(session_id, new_traces))
    conn.executemany(_UPSERT_SESSION, values)
    conn.executemany(_UPSERT_USER, [(*key, *value) for key, value in users.items()])
    conn.executemany(_UPSERT_TRACE, [(key, *value) for key, value in traces.items()])


def _clamped(count: int | None) -> int | None:
    # Each span's counts are 0..2**63-1 (see _usage); their sum may not be, and SQLite would
    # turn the overflowing addition into a float. The total saturates instead.
    return None if count is None else min(count, 2**63 - 1)


# --- recomputing from the spans ------------------------------------------------------------


def _whole(column: str) -> str:
    # Only whole numbers count (a row written by another program may hold text), and TOTAL,
    # unlike SUM, cannot overflow.
    return (
        f"CASE WHEN COUNT(CASE WHEN typeof({column}) = 'integer' THEN 1 END) = 0 THEN NULL "
        f"ELSE CAST(MIN(TOTAL(CASE WHEN typeof({column}) = 'integer' THEN {column} END), "
        f"9.2e18) AS INTEGER) END"
    )


def _bits(aggregate: str) -> str:
    # Bitwise OR (MAX of each bit) or AND (MIN) of the masks of spans that carry a session;
    # with none, OR is 0 and AND every bit, as add() starts them.
    empty = 0 if aggregate == "MAX" else 1
    return " | ".join(
        f"COALESCE({aggregate}(CASE WHEN session_id IS NOT NULL THEN key_mask & {bit} END), "
        f"{bit * empty})"
        for bit in KEY_BITS.values()
    )


_REBUILD_SESSIONS = f"""
INSERT OR REPLACE INTO sessions ({", ".join(_SESSION_FIELDS)})
SELECT
    session_id,
    (SELECT n.session_name FROM spans AS n WHERE n.session_id = s.session_id
        AND n.session_name IS NOT NULL ORDER BY n.rowid LIMIT 1),
    (SELECT p.parent_session_id FROM spans AS p WHERE p.session_id = s.session_id
        AND p.parent_session_id IS NOT NULL ORDER BY p.rowid LIMIT 1),
    COUNT(*),
    COUNT(DISTINCT trace_id),
    SUM(status_code = 'ERROR'),
    SUM((flags & {FLAG_LLM_CALL}) != 0),
    MIN(CASE WHEN typeof(start_ns) = 'integer' THEN start_ns ELSE 0 END),
    MAX(CASE WHEN typeof(end_ns) = 'integer' THEN end_ns ELSE 0 END),
    {_whole("prompt_tokens")},
    {_whole("completion_tokens")},
    {_whole("total_tokens")},
    TOTAL(cost_usd) + (CASE WHEN COUNT(cost_usd) = 0 THEN NULL ELSE 0 END),
    MAX(span_type IS NOT NULL OR step_index IS NOT NULL),
    (SELECT MAX(e.end_ns) FROM spans AS e WHERE e.session_id = s.session_id
        AND e.span_type = '{_SUMMARY_SPAN}'),
    (SELECT CASE WHEN e.status_code = 'ERROR' THEN 'error' ELSE 'ok' END FROM spans AS e
        WHERE e.session_id = s.session_id AND e.span_type = '{_SUMMARY_SPAN}'
        ORDER BY e.end_ns DESC LIMIT 1),
    {_bits("MAX")},
    {_bits("MIN")},
    SUM((flags & {FLAG_CONFLICTING_KEYS}) != 0),
    SUM((flags & {FLAG_FULL}) != 0)
FROM spans AS s
WHERE typeof(session_id) = 'text' {{where}}
GROUP BY session_id
"""

_REBUILD_SESSION_TRACES = """
INSERT OR IGNORE INTO session_traces (session_id, trace_id)
SELECT DISTINCT session_id, trace_id FROM spans
WHERE typeof(session_id) = 'text' {where}
"""

_REBUILD_USERS = """
INSERT OR REPLACE INTO session_users (session_id, user_id, span_count, first_start_ns)
SELECT session_id, user_id, COUNT(*), MIN(start_ns) FROM spans
WHERE typeof(session_id) = 'text' AND typeof(user_id) = 'text' {where}
GROUP BY session_id, user_id
"""

_REBUILD_TRACES = """
INSERT OR REPLACE INTO traces (trace_id, span_count, session_spans, start_ns, end_ns,
    key_mask_or, key_mask_and)
SELECT trace_id, COUNT(*), COUNT(session_id),
    MIN(CASE WHEN typeof(start_ns) = 'integer' THEN start_ns ELSE 0 END),
    MAX(CASE WHEN typeof(end_ns) = 'integer' THEN end_ns ELSE 0 END),
    {mask_or}, {mask_and}
FROM spans WHERE trace_id IS NOT NULL {where}
GROUP BY trace_id
""".replace("{mask_or}", _bits("MAX")).replace("{mask_and}", _bits("MIN"))


def rebuild(
    conn: sqlite3.Connection, session_ids: Collection[str], trace_ids: Collection[str]
) -> None:
    """Recompute the summaries of these sessions and traces from their spans (inside the
    caller's transaction); one without spans left is removed.
    """
    sessions, traces = list(session_ids), list(trace_ids)
    for start in range(0, len(sessions), 500):
        chunk = sessions[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for table in ("sessions", "session_traces", "session_users"):
            conn.execute(f"DELETE FROM {table} WHERE session_id IN ({marks})", chunk)
        where = f"AND session_id IN ({marks})"
        for statement in (_REBUILD_SESSIONS, _REBUILD_SESSION_TRACES, _REBUILD_USERS):
            conn.execute(statement.format(where=where), chunk)
    for start in range(0, len(traces), 500):
        chunk = traces[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        conn.execute(f"DELETE FROM traces WHERE trace_id IN ({marks})", chunk)
        conn.execute(_REBUILD_TRACES.format(where=f"AND trace_id IN ({marks})"), chunk)


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
    for statement in (_REBUILD_SESSIONS, _REBUILD_SESSION_TRACES, _REBUILD_USERS, _REBUILD_TRACES):
        conn.execute(statement.format(where=""))
