"""SessionStore: read sessions, traces and spans back from the local SQLite store."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer

from sessiontrace.store._schema import (
    BUSY_TIMEOUT_SECONDS,
    COLUMNS,
    DEFAULT_STORE_PATH,
    SCHEMA_VERSION,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# In JSON, a UTC datetime as ``2025-01-01T10:00:00.123456+00:00``: pydantic would write a
# ``Z`` suffix, which ``datetime.fromisoformat`` only reads from Python 3.11.
_UtcDatetime = Annotated[datetime, PlainSerializer(datetime.isoformat, when_used="json")]

_SUMMARY_SELECT = """
SELECT
    s.session_id,
    (
        SELECT u.user_id FROM spans AS u
        WHERE u.session_id = s.session_id AND u.user_id IS NOT NULL
        GROUP BY u.user_id
        ORDER BY COUNT(*) DESC, MIN(u.start_ns), u.user_id
        LIMIT 1
    ),
    COUNT(DISTINCT s.trace_id),
    COUNT(*),
    MIN(s.start_ns),
    MAX(s.end_ns),
    SUM(s.prompt_tokens),
    SUM(s.completion_tokens),
    SUM(s.total_tokens),
    SUM(CASE WHEN s.status_code = 'ERROR' THEN 1 ELSE 0 END)
FROM spans AS s
"""

_SPAN_SELECT = f"SELECT {', '.join(COLUMNS)} FROM spans"


class StoreNotFoundError(FileNotFoundError):
    """There is no store at the given path.

    ``filename`` holds the path; the message says how to create the store.

    Example:
        >>> try:
        ...     SessionStore("/nonexistent/sessions.db")
        ... except StoreNotFoundError as exc:
        ...     print(exc.filename)
        /nonexistent/sessions.db
    """

    def __init__(self, path: Path) -> None:
        super().__init__(
            errno.ENOENT,
            f"no session store at {path}; run your program with sessiontrace.configure() "
            "first, or pass --store PATH",
            str(path),
        )

    def __str__(self) -> str:
        return str(self.strerror)


class StoreFormatError(ValueError):
    """The file exists but is not a store this version of sessiontrace can read.

    Example:
        >>> issubclass(StoreFormatError, ValueError)
        True
    """


class SessionNotFoundError(LookupError):
    """No span in the store carries the requested session id.

    Attributes:
        session_id: The id that was looked up.
        path: The store that was searched.

    Example:
        >>> issubclass(SessionNotFoundError, LookupError)
        True
    """

    def __init__(self, session_id: str, path: Path) -> None:
        super().__init__(
            f"no session {session_id!r} in the store at {path}; "
            "run `sessiontrace sessions` to list the session ids it holds"
        )
        self.session_id = session_id
        self.path = path


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class StoredEvent(_Frozen):
    """One span event (an exception is an event named ``exception``).

    Example:
        >>> StoredEvent(name="retry", timestamp_ns=0, timestamp=_EPOCH, attributes={}).name
        'retry'
    """

    name: str
    timestamp: _UtcDatetime
    timestamp_ns: int
    attributes: dict[str, Any]


class StoredSpan(_Frozen):
    """One span as stored: ids in hex, times in UTC, attributes decoded from JSON.

    ``session_id`` and ``user_id`` are read from the first session and user attribute the
    span carries, in any dialect; ``None`` when it carries none. The token counts come from one
    dialect per span and are ``None`` when the span reports none.

    Example:
        >>> with SessionStore(path) as store:  # doctest: +SKIP
        ...     for span in store.spans("chat-42"):
        ...         print(span.name, span.duration_ms)
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start: _UtcDatetime
    end: _UtcDatetime
    start_ns: int
    end_ns: int
    duration_ms: float
    status_code: str
    status_message: str | None
    session_id: str | None
    user_id: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    attributes: dict[str, Any]
    events: tuple[StoredEvent, ...]
    resource: dict[str, Any]
    scope: str | None


class StoredTrace(_Frozen):
    """Every stored span of one trace, in start order.

    Example:
        >>> with SessionStore(path) as store:  # doctest: +SKIP
        ...     for trace in store.traces("chat-42"):
        ...         print(trace.trace_id, [root.name for root in trace.roots])
    """

    trace_id: str
    spans: tuple[StoredSpan, ...]
    start: _UtcDatetime
    end: _UtcDatetime
    duration_ms: float

    @property
    def roots(self) -> list[StoredSpan]:
        """Spans with no parent, or whose parent is not in the store, in start order."""
        ids = {span.span_id for span in self.spans}
        return [
            span
            for span in self.spans
            if span.parent_span_id is None
            or span.parent_span_id == span.span_id
            or span.parent_span_id not in ids
        ]

    def children(self, span_id: str) -> list[StoredSpan]:
        """The direct children of ``span_id``, in start order.

        Args:
            span_id: The parent's span id, in hex.

        Returns:
            The spans whose parent is ``span_id``.
        """
        return [
            span
            for span in self.spans
            if span.parent_span_id == span_id and span.span_id != span_id
        ]


class SessionSummary(_Frozen):
    """Totals for one session, over the spans that carry its id.

    ``user_id`` is the user most of those spans name. Token counts are ``None`` when no span
    reported them. ``duration_seconds`` runs from the first span's start to the last end.

    Example:
        >>> with SessionStore(path) as store:  # doctest: +SKIP
        ...     summary = store.session("chat-42")
        ...     print(summary.trace_count, summary.total_tokens)
    """

    session_id: str
    user_id: str | None
    trace_count: int
    span_count: int
    first_start: _UtcDatetime
    last_end: _UtcDatetime
    duration_seconds: float
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    error_count: int


class SessionStore:
    """Read-only access to a store written by :class:`SQLiteSpanExporter`.

    The file is opened read-only, so reading never changes it and may run while a program
    is writing to it. Use it as a context manager, or call :meth:`close`. A store object is
    meant for one thread.

    Args:
        path: The SQLite file to read.

    Raises:
        StoreNotFoundError: If there is no file at ``path``.
        StoreFormatError: If the file is not a sessiontrace store this version can read.

    Example:
        >>> with SessionStore(".sessiontrace/sessions.db") as store:  # doctest: +SKIP
        ...     for summary in store.sessions():
        ...         print(summary.session_id, summary.total_tokens)
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STORE_PATH) -> None:
        self._path = Path(path).expanduser().absolute()
        if not self._path.exists():
            raise StoreNotFoundError(self._path)
        if not self._path.is_file():
            raise StoreFormatError(f"{self._path} is not a file; pass --store PATH to a store")
        uri = f"{self._path.as_uri()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            self._check_schema()
        except BaseException:
            self._conn.close()
            raise

    @property
    def path(self) -> Path:
        """The absolute path of the store file."""
        return self._path

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

    def sessions(self, *, limit: int | None = None) -> list[SessionSummary]:
        """One summary per session, the most recently active first.

        Args:
            limit: Return at most this many sessions; ``None`` for all.

        Returns:
            The summaries, ordered by the end of each session's last span, newest first.

        Raises:
            ValueError: If ``limit`` is negative.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     latest = store.sessions(limit=1)
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be a whole number >= 0 or None, got {limit!r}")
        rows = self._conn.execute(
            _SUMMARY_SELECT + "WHERE s.session_id IS NOT NULL GROUP BY s.session_id "
            "ORDER BY MAX(s.end_ns) DESC, s.session_id LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [_summary(row) for row in rows]

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
        row = self._conn.execute(
            _SUMMARY_SELECT + "WHERE s.session_id = ? GROUP BY s.session_id", (session_id,)
        ).fetchone()
        if row is None:
            raise SessionNotFoundError(session_id, self._path)
        return _summary(row)

    def spans(self, session_id: str) -> list[StoredSpan]:
        """The spans that carry ``session_id``, in start order.

        Args:
            session_id: The session id.

        Returns:
            The session's spans.

        Raises:
            SessionNotFoundError: If no span carries ``session_id``.

        Example:
            >>> with SessionStore() as store:  # doctest: +SKIP
            ...     names = [span.name for span in store.spans("chat-42")]
        """
        rows = self._conn.execute(
            _SPAN_SELECT + " WHERE session_id = ? ORDER BY start_ns, span_id", (session_id,)
        ).fetchall()
        if not rows:
            raise SessionNotFoundError(session_id, self._path)
        return [_span(row) for row in rows]

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
        rows = self._conn.execute(
            _SPAN_SELECT + " WHERE trace_id IN "
            "(SELECT trace_id FROM spans WHERE session_id = ?) ORDER BY start_ns, span_id",
            (session_id,),
        ).fetchall()
        if not rows:
            raise SessionNotFoundError(session_id, self._path)
        by_trace: dict[str, list[StoredSpan]] = {}
        for row in rows:
            span = _span(row)
            by_trace.setdefault(span.trace_id, []).append(span)
        traces = [_trace(trace_id, spans) for trace_id, spans in by_trace.items()]
        traces.sort(key=lambda trace: (trace.start, trace.trace_id))
        return traces

    def _check_schema(self) -> None:
        try:
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            has_table = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spans'"
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreFormatError(
                f"{self._path} is not a sessiontrace store ({exc}); pass --store PATH to "
                "point at one"
            ) from exc
        if version > SCHEMA_VERSION:
            raise StoreFormatError(
                f"the store at {self._path} has layout version {version}, newer than this "
                f"sessiontrace reads ({SCHEMA_VERSION}); upgrade sessiontrace"
            )
        if version < 1 or has_table is None:
            raise StoreFormatError(
                f"{self._path} is not a sessiontrace store (it has no spans table); pass "
                "--store PATH to point at one"
            )


def _time(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _summary(row: tuple[Any, ...]) -> SessionSummary:
    (session_id, user_id, traces, spans, first_ns, last_ns, prompt, completion, total, errors) = row
    return SessionSummary(
        session_id=session_id,
        user_id=user_id,
        trace_count=traces,
        span_count=spans,
        first_start=_time(first_ns),
        last_end=_time(last_ns),
        duration_seconds=max(last_ns - first_ns, 0) / 1e9,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        error_count=errors,
    )


def _span(row: tuple[Any, ...]) -> StoredSpan:
    values = dict(zip(COLUMNS, row, strict=True))
    start_ns: int = values.pop("start_ns")
    end_ns: int = values.pop("end_ns")
    attributes = json.loads(values.pop("attributes"))
    resource = json.loads(values.pop("resource"))
    events = tuple(
        StoredEvent(
            name=event.get("name", ""),
            timestamp_ns=event.get("timestamp") or 0,
            timestamp=_time(event.get("timestamp") or 0),
            attributes=event.get("attributes") or {},
        )
        for event in json.loads(values.pop("events"))
    )
    return StoredSpan(
        **values,
        attributes=attributes,
        resource=resource,
        events=events,
        start=_time(start_ns),
        end=_time(end_ns),
        start_ns=start_ns,
        end_ns=end_ns,
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
    )


def _trace(trace_id: str, spans: list[StoredSpan]) -> StoredTrace:
    start_ns = min(span.start_ns for span in spans)
    end_ns = max(span.end_ns for span in spans)
    return StoredTrace(
        trace_id=trace_id,
        spans=tuple(spans),
        start=_time(start_ns),
        end=_time(end_ns),
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
    )
