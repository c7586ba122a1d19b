"""One page of the session listing: its filters, order and paging, all done in SQL.

What ``SessionStore.page()`` and the web view's ``GET /api/sessions`` read. The filters run on
the ``sessions`` table the exporter keeps at ingest (one row per session), so a page costs the
same at 10 sessions and at 10,000. Every argument is checked before a query runs; a bad one
is a ``ValueError`` that names it and what is allowed.

Example:
    >>> query = PageQuery.checked(status="error", sort="-tokens", limit=20)
    >>> query.order_by()
    ' ORDER BY s.total_tokens DESC, s.session_id'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessiontrace.store._models import Frozen, SessionSummary

SORTS: dict[str, str] = {
    "last_end": "s.last_end_ns",
    "first_start": "s.first_start_ns",
    "session_id": "s.session_id",
    "spans": "s.span_count",
    "traces": "s.trace_count",
    "tokens": "s.total_tokens",
    "cost": "s.cost_usd",
    "errors": "s.error_count",
}
STATUSES = ("running", "ok", "error")
MAX_LIMIT = 500

# The status rule of _listing.summary_fields, in SQL.
_STATUS_SQL = {
    "running": "(s.tracked AND s.ended_ns IS NULL)",
    "error": "((s.tracked AND s.ended_ns IS NOT NULL AND s.ended_status = 'error') "
    "OR (NOT s.tracked AND s.error_count > 0))",
    "ok": "((s.tracked AND s.ended_ns IS NOT NULL AND s.ended_status IS NOT 'error') "
    "OR (NOT s.tracked AND s.error_count = 0))",
}
_TOP_LEVEL = (
    "(s.parent_session_id IS NULL OR NOT EXISTS "
    "(SELECT 1 FROM sessions AS p WHERE p.session_id = s.parent_session_id))"
)

# An exact match: the tag's sessions are read off the index session_tags_tag (tag, session_id).
_HAS_TAG = "s.session_id IN (SELECT t.session_id FROM session_tags AS t WHERE t.tag = ?)"


class PageArgumentError(ValueError):
    """An argument of ``PageQuery.checked`` whose value is not allowed: which, and what is.

    Example:
        >>> try:
        ...     PageQuery.checked(status="done")
        ... except PageArgumentError as bad:
        ...     print(bad.argument, "|", bad.allowed)
        status | running, ok, error
    """

    def __init__(self, argument: str, message: str, allowed: str) -> None:
        super().__init__(message)
        self.argument = argument
        self.allowed = allowed


class SessionPage(Frozen):
    """One page of sessions, and how many sessions match in all.

    Example:
        >>> with SessionStore(path) as store:  # doctest: +SKIP
        ...     page = store.page(status="error", limit=20)
        ...     print(page.total, [s.session_id for s in page.sessions])
    """

    total: int
    offset: int
    limit: int
    sessions: tuple[SessionSummary, ...]


@dataclass(frozen=True)
class PageQuery:
    """Checked filters, order and paging of one page."""

    user_id: str | None
    status: str | None
    text: str | None
    tag: str | None
    top_level: bool
    sort: str
    limit: int
    offset: int

    @classmethod
    def checked(
        cls,
        *,
        user_id: str | None = None,
        status: str | None = None,
        text: str | None = None,
        tag: str | None = None,
        top_level: bool = False,
        sort: str = "-last_end",
        limit: int = 50,
        offset: int = 0,
    ) -> PageQuery:
        """The query, or a ``TypeError`` or ``PageArgumentError`` (a ``ValueError``) naming
        the first bad argument.

        ``text`` is found anywhere in a session's id or name; ``tag`` keeps the sessions one
        of whose spans carries exactly that tag. An empty ``text`` or ``tag`` filters nothing.
        """
        for name, value in (
            ("user_id", user_id),
            ("status", status),
            ("text", text),
            ("tag", tag),
        ):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        if status is not None and status not in STATUSES:
            allowed = ", ".join(STATUSES)
            raise PageArgumentError(
                "status", f"status must be one of {allowed}; got {status!r:.60}", allowed
            )
        if not isinstance(sort, str) or sort.removeprefix("-") not in SORTS:
            allowed = ", ".join(SORTS) + " (each optionally after '-' for descending)"
            raise PageArgumentError(
                "sort", f"sort must be one of {allowed}; got {sort!r:.60}", allowed
            )
        for number_name, number, low, high in (
            ("limit", limit, 1, MAX_LIMIT),
            ("offset", offset, 0, 2**62),
        ):
            if isinstance(number, bool) or not isinstance(number, int):
                raise TypeError(
                    f"{number_name} must be a whole number, got {type(number).__name__}"
                )
            if not low <= number <= high:
                raise PageArgumentError(
                    number_name,
                    f"{number_name} must be from {low} to {high}, got {number}",
                    f"{low} to {high}",
                )
        if not isinstance(top_level, bool):
            raise TypeError(f"top_level must be True or False, got {type(top_level).__name__}")
        return cls(user_id, status, text or None, tag or None, top_level, sort, limit, offset)

    def where(self) -> tuple[str, tuple[Any, ...]]:
        """The WHERE clause ("" for none) and its parameters."""
        clauses: list[str] = []
        parameters: list[Any] = []
        if self.user_id is not None:
            clauses.append("s.user_id = ?")
            parameters.append(self.user_id)
        if self.status is not None:
            clauses.append(_STATUS_SQL[self.status])
        if self.text is not None:
            pattern = "%" + _escape_like(self.text) + "%"
            clauses.append("(s.session_id LIKE ? ESCAPE '\\' OR s.name LIKE ? ESCAPE '\\')")
            parameters += [pattern, pattern]
        if self.tag is not None:
            clauses.append(_HAS_TAG)
            parameters.append(self.tag)
        if self.top_level:
            clauses.append(_TOP_LEVEL)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)

    def order_by(self) -> str:
        """The ORDER BY clause: the sort key, then the session id for a stable order."""
        column = SORTS[self.sort.removeprefix("-")]
        direction = " DESC" if self.sort.startswith("-") else ""
        if column == "s.session_id":
            return f" ORDER BY s.session_id{direction}"
        return f" ORDER BY {column}{direction}, s.session_id"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
