"""SessionStore: read sessions, traces and spans back from the local SQLite store."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from sessiontrace.store._cleared import CLEARED
from sessiontrace.store._errors import (
    SessionNotFoundError,
    StoreAccessError,
    StoreFormatError,
    StoreNotFoundError,
)
from sessiontrace.store._listing import NEWEST_FIRST, SUMMARY_SELECT, summarize, summarize_all
from sessiontrace.store._models import (
    BadRow,
    SessionSummary,
    StoredLoss,
    StoredSpan,
    StoredTrace,
)
from sessiontrace.store._opening import open_read_only
from sessiontrace.store._paging import PageQuery, SessionPage
from sessiontrace.store._rows import LOSS_SELECT, SPAN_SELECT, RowDecoder, decode_text, trace_of
from sessiontrace.store._schema import DEFAULT_STORE_PATH

# A session is top-level unless its parent is in the store too.
_TOP_LEVEL = (
    " WHERE s.parent_session_id IS NULL OR NOT EXISTS "
    "(SELECT 1 FROM sessions AS p WHERE p.session_id = s.parent_session_id)"
)

_SUBSESSION_STARTS = (
    "SELECT session_id, first_start_ns FROM sessions WHERE parent_session_id = ? "
    "ORDER BY first_start_ns, session_id"
)


class SessionStore:
    """Read-only access to a store written by :class:`SQLiteSpanExporter`.

    The file is opened read-only, so reading never changes it and may run while a program
    is writing to it. Use it as a context manager, or call :meth:`close`. A store object is
    meant for one thread.

    A store in a directory this user cannot write (so SQLite cannot create its ``-shm``
    file) is opened as immutable: :attr:`notes` then says what that may hide. A row that
    cannot be read whole (undecodable JSON, text that is not UTF-8, a value of the wrong
    type) never makes a read fail: it is returned with the bad values replaced, or left out
    when it cannot be placed, and listed in :attr:`bad_rows`.

    Args:
        path: The SQLite file to read.

    Raises:
        StoreNotFoundError: If there is no file at ``path``.
        StoreAccessError: If this user may not read the file or its directory.
        StoreFormatError: If the file is not a sessiontrace store this version can read.

    Example:
        >>> with SessionStore(".sessiontrace/sessions.db") as store:  # doctest: +SKIP
        ...     for summary in store.sessions():
        ...         print(summary.session_id, summary.total_tokens)
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STORE_PATH) -> None:
        self._path = Path(path).expanduser().absolute()
        self._decoder = RowDecoder(self._path)
        self._notes: list[str] = []
        try:
            exists, is_file = self._path.exists(), self._path.is_file()
        except PermissionError as exc:
            raise StoreAccessError(
                errno.EACCES,
                f"cannot look inside {self._path.parent}: permission denied; run as a user "
                "who may read that directory, or copy the store somewhere readable and pass "
                "--store PATH",
                str(self._path),
            ) from exc
        if not exists:
            raise StoreNotFoundError(self._path)
        if not is_file:
            raise StoreFormatError(f"{self._path} is not a file; pass --store PATH to a store")
        self._conn = open_read_only(self._path, self._notes)

    @property
    def path(self) -> Path:
        """The absolute path of the store file."""
        return self._path

    @property
    def bad_rows(self) -> tuple[BadRow, ...]:
        """The rows found so far that could not be read whole, in the order met, each once.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     store.sessions()
            ...     for bad in store.bad_rows:
            ...         print(bad.message)
        """
        return self._decoder.bad_rows

    @property
    def notes(self) -> tuple[str, ...]:
        """Sentences about how the store was opened that a reader should know (may be empty).

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     print(*store.notes, sep="\\n")
        """
        return tuple(self._notes)

    def close(self) -> None:
        """Close the connection. Safe to call more than once."""
        self._conn.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def sessions(
        self, *, limit: int | None = None, top_level: bool = False
    ) -> list[SessionSummary]:
        """One summary per session, the most recently active first.

        Args:
            limit: Return at most this many sessions; ``None`` for all.
            top_level: Leave out sub-sessions whose parent session is in the store (read
                them with :meth:`subsessions`).

        Returns:
            The summaries, ordered by the end of each session's last span, newest first.

        Raises:
            ValueError: If ``limit`` is negative.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     latest = store.sessions(limit=1)
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be a whole number >= 0 or None, got {limit!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be a whole number >= 0 or None, got {limit!r}")
        self._report_unlisted()
        where = _TOP_LEVEL if top_level else ""
        rows = self._rows(
            SUMMARY_SELECT + where + NEWEST_FIRST + " LIMIT ?", (-1 if limit is None else limit,)
        )
        return self._summaries(rows)

    def page(self, **query: Any) -> SessionPage:
        """One page of sessions, filtered and ordered in the store (see ``PageQuery.checked``:
        ``user_id``, ``status``, ``text`` in the id or name, ``tag`` (exactly one of the
        session's tags), ``top_level``, ``sort`` such as ``"-tokens"``, ``limit`` up to 500,
        ``offset``); a bad argument raises, naming it."""
        checked = PageQuery.checked(**query)
        where, parameters = checked.where()
        (total,) = self._rows("SELECT COUNT(*) FROM sessions AS s" + where, parameters)[0]
        rows = self._rows(
            SUMMARY_SELECT + where + checked.order_by() + " LIMIT ? OFFSET ?",
            (*parameters, checked.limit, checked.offset),
        )
        return SessionPage(
            total=total,
            offset=checked.offset,
            limit=checked.limit,
            sessions=tuple(self._summaries(rows)),
        )

    def subsessions(self, session_id: str) -> list[SessionSummary]:
        """The direct sub-sessions of a session, the first started first.

        Args:
            session_id: The parent's session id.

        Returns:
            Their summaries (empty for a session without sub-sessions, or an unknown id).

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     names = [child.name for child in store.subsessions("trip-1")]
        """
        rows = self._rows(
            SUMMARY_SELECT + " WHERE s.parent_session_id = ? ORDER BY s.first_start_ns, "
            "s.session_id",
            (session_id,),
        )
        return self._summaries(rows)

    def _summaries(self, rows: list[tuple[Any, ...]]) -> list[SessionSummary]:
        return summarize_all(self._rows, self._decoder.listable(rows))

    def session(self, session_id: str) -> SessionSummary:
        """The summary of one session.

        Args:
            session_id: The session id, exactly as stamped on the spans.

        Returns:
            The session's summary.

        Raises:
            SessionNotFoundError: If no span carries ``session_id``.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     print(store.session("chat-42").span_count)
        """
        rows = self._rows(SUMMARY_SELECT + " WHERE s.session_id = ?", (session_id,))
        if not rows:
            raise SessionNotFoundError(session_id, self._path)
        return summarize(self._rows, rows[0])

    def spans(self, session_id: str) -> list[StoredSpan]:
        """The spans that carry ``session_id``, in start order.

        Args:
            session_id: The session id.

        Returns:
            The session's spans (a row that cannot be placed is left out: see
            :attr:`bad_rows`).

        Raises:
            SessionNotFoundError: If no span carries ``session_id``.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     names = [span.name for span in store.spans("chat-42")]
        """
        rows = self._rows(
            SPAN_SELECT + " WHERE session_id = ? ORDER BY start_ns, span_id", (session_id,)
        )
        if not rows:
            raise SessionNotFoundError(session_id, self._path)
        return self._decoder.spans(rows)

    def traces(self, session_id: str) -> list[StoredTrace]:
        """The traces a session touches, in start order, each with all of its spans.

        A trace belongs to the session when at least one of its spans carries the id; its
        other spans (say, a request span started before the session was entered) come too.

        Args:
            session_id: The session id.

        Returns:
            The traces, ordered by their first span's start.

        Raises:
            SessionNotFoundError: If no span carries ``session_id``.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     for trace in store.traces("chat-42"):
            ...         print(trace.trace_id, len(trace.spans))
        """
        rows = self._rows(
            SPAN_SELECT + " WHERE trace_id IN "
            "(SELECT trace_id FROM spans WHERE session_id = ?) "
            "ORDER BY start_ns, span_id",
            (session_id,),
        )
        if not rows:
            raise SessionNotFoundError(session_id, self._path)
        by_trace: dict[str, list[StoredSpan]] = {}
        for span in self._decoder.spans(rows):
            by_trace.setdefault(span.trace_id, []).append(span)
        traces = [trace_of(trace_id, spans) for trace_id, spans in by_trace.items()]
        traces.sort(key=lambda trace: (trace.start, trace.trace_id))
        return traces

    def losses(self, since_ns: int | None = None) -> list[StoredLoss]:
        """The records of dropped spans and repaired values, oldest first.

        A store written before sessiontrace recorded losses has none.

        Args:
            since_ns: Only records with a loss at or after this wall-clock time, in
                nanoseconds since the epoch (``time.time_ns()``); ``None`` for all.

        Returns:
            The records, ordered by their first loss (a malformed one is left out: see
            :attr:`bad_rows`).

        Raises:
            TypeError: If ``since_ns`` is not a whole number or ``None``.
            ValueError: If ``since_ns`` is negative.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     dropped = sum(l.count for l in store.losses() if l.kind == "dropped")
        """
        if since_ns is not None and (isinstance(since_ns, bool) or not isinstance(since_ns, int)):
            raise TypeError(
                "since_ns must be a whole number of nanoseconds since the epoch (such as "
                f"time.time_ns()) or None, got {type(since_ns).__name__} {since_ns!r}"
            )
        if since_ns is not None and since_ns < 0:
            raise ValueError(
                f"since_ns must be >= 0 (nanoseconds since the epoch) or None, got {since_ns!r}"
            )
        has_table = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'losses'"
        ).fetchone()
        if has_table is None:
            return []
        rows = self._rows(
            LOSS_SELECT + " WHERE ? IS NULL OR last_ns >= ? ORDER BY first_ns, id",
            (since_ns, since_ns),
        )
        found = []
        for row in rows:
            loss = self._decoder.loss(row)
            if loss is not None:
                found.append(loss)
        return found

    def subsession_starts(self, session_id: str) -> dict[str, int]:
        """The direct sub-sessions' ids, each with its first span's start, first started first.

        Args:
            session_id: The parent's session id.

        Returns:
            Each sub-session's id and the start of its first span, in nanoseconds since the
            epoch (empty for a session without sub-sessions, or an unknown id). A session
            named as its own parent is left out.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     for child, start_ns in store.subsession_starts("trip-1").items():
            ...         print(child, start_ns)
        """
        rows = self._rows(_SUBSESSION_STARTS, (session_id,))
        return {child: start_ns for child, start_ns in rows if child != session_id}

    def cleared_sessions(self) -> dict[str, tuple[int, int]]:
        """The sessions whose stored summaries rule out every problem ``diagnose`` reports.

        Read from the summary tables and the span indexes alone, never a span's row (the
        query, and why it is right, are in ``_cleared.py``); ``sessiontrace doctor`` decodes
        the spans of the other sessions only.

        Returns:
            Each cleared session's id, with the number of traces it touches and of spans in
            them (what ``diagnose`` would report as checked).

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     suspects = [s.session_id for s in store.sessions()
            ...                 if s.session_id not in store.cleared_sessions()]
        """
        rows = self._rows(CLEARED)
        return {session_id: (traces, spans) for session_id, traces, spans in rows}

    # --- rows ------------------------------------------------------------------------------

    def _report_unlisted(self) -> None:
        # A session id stored as a number or a blob (another writer) would be listed under
        # an id no lookup finds again: such rows are named instead (the first hundred).
        rows = self._rows(
            # In the index, numbers sort before all text and blobs after it: two empty ranges.
            "SELECT rowid, trace_id, span_id, session_id FROM spans "
            "WHERE session_id < '' OR session_id >= x'' LIMIT 100"
        )
        self._decoder.unlisted(rows)

    def _rows(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query; text that is not UTF-8 arrives as lone surrogates.

        sqlite3 fails the whole query on one such value, so the slower decoding that keeps
        it is switched on only to run the query again when that happens; the decoder then
        names the row.
        """
        try:
            return self._conn.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
        self._conn.text_factory = decode_text
        try:
            return self._conn.execute(sql, parameters).fetchall()
        finally:
            self._conn.text_factory = str
