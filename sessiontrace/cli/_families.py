"""Sessions as ``sessions`` lists them: top-level ones newest first, sub-sessions under each.

:func:`families` gives the rows of the listing, each with the tree drawn before its id;
:func:`newest` the session it lists first, which is what ``latest`` means to every command.

Example:
    >>> with SessionStore() as store:  # doctest: +SKIP
    ...     print([row.lead + row.summary.session_id for row in families(store, limit=5)])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sessiontrace.store import SessionNotFoundError, SessionStore, SessionSummary

# The tree drawn in the SESSION column: a child's marker, and what its own children hang from.
_BRANCH, _LAST, _STEM, _GAP = "├─ ", "└─ ", "│  ", "   "


@dataclass(frozen=True)
class Listed:
    """One row of the listing: a session and the tree drawn before its id."""

    summary: SessionSummary
    lead: str
    """What comes before the id: the tree's stems and the row's own marker."""
    under: str
    """The stems for a line that belongs to this row (its totals with sub-sessions)."""
    depth: int
    has_rows_below: bool
    """Whether sub-sessions of this session follow it (not in a loop of parents, say)."""


def families(store: SessionStore, *, limit: int | None = None) -> list[Listed]:
    """Every session as listed: top-level ones newest first, each followed by its sub-sessions.

    A session is top-level when it has no parent, or its parent is not in the store (or its
    parents loop back to it). Sub-sessions follow their parent depth first, the first started
    first. ``limit`` counts top-level sessions only; their sub-sessions come with them.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     for row in families(store, limit=5):
        ...         print(row.lead + row.summary.session_id)
    """
    lookup = _Lookup(store)
    listed: list[Listed] = []
    heads = 0
    for summary in lookup.newest_first(limit):
        if limit is not None and heads >= limit:
            break
        if summary.session_id in lookup.listed or not lookup.is_top(summary):
            continue
        listed.extend(lookup.family(summary))
        heads += 1
    return listed


def newest(store: SessionStore) -> SessionSummary | None:
    """The first session ``sessions`` lists (what ``latest`` means); ``None`` in an empty store.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     print(newest(store).session_id)
    """
    lookup = _Lookup(store)
    for summary in lookup.newest_first(1):
        if lookup.is_top(summary):
            return summary
    return None


class _Lookup:
    """Session summaries by id, each read from the store at most once, and the tree walk."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._known: dict[str, SessionSummary | None] = {}
        self._head: dict[str, str] = {}  # session id -> the top-level session above it
        self.listed: set[str] = set()

    def newest_first(self, limit: int | None) -> Iterator[SessionSummary]:
        """Every session, newest first; with a limit, read a page at a time."""
        if limit is None:
            page = self._store.sessions()
            self._remember(page)
            yield from page
            return
        # Top-level sessions only, straight off the index (sub-sessions come with family()).
        # Sessions whose parents only loop among themselves have no top and are left out
        # here; the full listing shows them.
        page = self._store.sessions(limit=limit, top_level=True)
        self._remember(page)
        yield from page

    def get(self, session_id: str) -> SessionSummary | None:
        if session_id not in self._known:
            try:
                self._known[session_id] = self._store.session(session_id)
            except (SessionNotFoundError, ValueError):  # gone, or an id SQLite cannot encode
                self._known[session_id] = None
        return self._known[session_id]

    def is_top(self, summary: SessionSummary) -> bool:
        """Whether ``summary`` heads its family: no parent in the store above it."""
        start = summary.session_id
        path: list[str] = []
        current = summary
        while True:
            head = self._head.get(current.session_id)
            if head is not None:
                break
            parent_id = current.parent_session_id
            parent = None if parent_id is None else self.get(parent_id)
            if parent is None:
                head = current.session_id
                break
            path.append(current.session_id)
            if parent.session_id == start:
                return True  # the parents loop back to this session: it heads the loop
            if parent.session_id in path:
                return False  # a loop above it: the session that heads the loop lists it
            current = parent
        for session_id in [*path, current.session_id]:
            self._head[session_id] = head
        return head == start

    def family(self, top: SessionSummary) -> list[Listed]:
        """``top`` and everything below it, depth first (iterative: any depth, any loop)."""
        rows: list[Listed] = []
        stack: list[tuple[SessionSummary, str, str, int]] = [(top, "", "", 0)]
        while stack:
            summary, lead, stems, depth = stack.pop()
            if summary.session_id in self.listed:
                continue
            self.listed.add(summary.session_id)
            kids = [
                kid
                for kid in (self.get(child) for child in summary.subsessions)
                if kid is not None and kid.session_id not in self.listed
            ]
            rows.append(Listed(summary, lead, stems + (_STEM if kids else _GAP), depth, bool(kids)))
            for position in reversed(range(len(kids))):
                last = position == len(kids) - 1
                marker, below = (_LAST, _GAP) if last else (_BRANCH, _STEM)
                stack.append((kids[position], stems + marker, stems + below, depth + 1))
        return rows

    def _remember(self, summaries: list[SessionSummary]) -> None:
        for summary in summaries:
            self._known.setdefault(summary.session_id, summary)
