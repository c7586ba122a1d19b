"""Session summaries read from the store's ``sessions`` table: one row per session.

The queries here never aggregate spans: the exporter keeps the table current as it writes
(``_summaries.py``), so listing every session reads one row each, and the newest sessions
come first straight off an index, so a limit stops early.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from sessiontrace.store._models import SessionStatus, SessionSummary, SessionTotals, utc_from_ns
from sessiontrace.store._summaries import whole_sum

Rows = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]

SUMMARY_SELECT = """
SELECT
    s.session_id, s.name, s.parent_session_id, s.span_count, s.trace_count, s.error_count,
    s.llm_calls, s.first_start_ns, s.last_end_ns, s.prompt_tokens, s.completion_tokens,
    s.total_tokens, s.cost_usd, s.tracked, s.ended_ns, s.ended_status, s.user_id,
    s.user_count, EXISTS (SELECT 1 FROM sessions AS c WHERE c.parent_session_id = s.session_id),
    (SELECT json_group_array(t.tag) FROM session_tags AS t WHERE t.session_id = s.session_id)
FROM sessions AS s
"""

NEWEST_FIRST = " ORDER BY s.last_end_ns DESC, s.session_id"

_CHILDREN = (
    "SELECT session_id FROM sessions WHERE parent_session_id = ? "
    "ORDER BY first_start_ns, session_id"
)

# Every session below the given one; UNION (not UNION ALL) stops at a cycle of parents.
_TREE = """
WITH RECURSIVE tree (id) AS (
    SELECT ? UNION SELECT c.session_id FROM sessions AS c JOIN tree ON c.parent_session_id = tree.id
)
"""

_ROLLUP = (
    _TREE
    + """
SELECT COUNT(*), SUM(span_count), SUM(llm_calls), SUM(error_count), MAX(last_end_ns),
    {tokens}, TOTAL(cost_usd) + (CASE WHEN COUNT(cost_usd) = 0 THEN NULL ELSE 0 END),
    (SELECT COUNT(DISTINCT trace_id) FROM spans WHERE session_id IN tree)
FROM sessions WHERE session_id IN tree
""".format(
        # The same exact, saturating sum as the sessions' own counts.
        tokens=", ".join(
            whole_sum(column) for column in ("prompt_tokens", "completion_tokens", "total_tokens")
        )
    )
)


def summarize(rows: Rows, row: tuple[Any, ...]) -> SessionSummary:
    """The summary of one row of :data:`SUMMARY_SELECT`, with its sub-sessions' totals.

    ``rows`` runs a query on the store (the reader's lenient ``_rows``).
    """
    return SessionSummary(**summary_fields(rows, row))


def summarize_all(rows: Rows, found: list[tuple[Any, ...]]) -> list[SessionSummary]:
    """:func:`summarize` of many rows, validated in one call (a third quicker at 10,000)."""
    return _SUMMARY_LIST.validate_python([summary_fields(rows, row) for row in found])


_SUMMARY_LIST = TypeAdapter(list[SessionSummary])


def summary_fields(rows: Rows, row: tuple[Any, ...]) -> dict[str, Any]:
    """The fields of the :class:`SessionSummary` of one row of :data:`SUMMARY_SELECT`."""
    (
        session_id,
        name,
        parent,
        spans,
        traces,
        errors,
        llm_calls,
        first_ns,
        last_ns,
        prompt,
        completion,
        total,
        cost,
        tracked,
        ended_ns,
        ended_status,
        user_id,
        user_count,
        has_children,
        tags,
    ) = row
    status: SessionStatus = "error" if errors else "ok"
    if tracked:
        status = "running" if ended_ns is None else ("error" if ended_status == "error" else "ok")
    children: tuple[str, ...] = ()
    rollup = None
    if has_children:
        children = tuple(child for (child,) in rows(_CHILDREN, (session_id,)))
        rollup = _rollup(rows, session_id)
    return dict(
        session_id=session_id,
        name=name,
        parent_session_id=parent,
        status=status,
        user_id=user_id,
        user_count=user_count,
        trace_count=traces,
        span_count=spans,
        llm_calls=llm_calls,
        first_start=utc_from_ns(first_ns),
        last_end=utc_from_ns(last_ns),
        duration_seconds=max(last_ns - first_ns, 0) / 1e9,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cost_usd=cost,
        error_count=errors,
        tags=_tags(tags),
        subsessions=children,
        with_subsessions=rollup,
    )


def _tags(found: Any) -> tuple[str, ...]:
    # json_group_array of the session's tags: a JSON array of str ("[]" without any), sorted
    # here (code point order, which is SQLite's order of their UTF-8 bytes too).
    try:
        tags = json.loads(found) if isinstance(found, str) else None
    except ValueError:
        return ()
    if not isinstance(tags, list):
        return ()
    return tuple(sorted(tag for tag in tags if isinstance(tag, str)))


def _rollup(rows: Rows, session_id: str) -> SessionTotals:
    (sessions, spans, calls, errors, last_ns, prompt, completion, total, cost, traces) = rows(
        _ROLLUP, (session_id,)
    )[0]
    return SessionTotals(
        sessions=sessions,
        trace_count=traces,
        span_count=spans,
        llm_calls=calls,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cost_usd=cost,
        error_count=errors,
        last_end=utc_from_ns(last_ns),
    )
