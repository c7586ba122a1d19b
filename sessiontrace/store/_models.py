"""The reader's public types: what a store query returns, and the errors it raises.

Every model is frozen and serializes times in UTC. They are re-exported from
:mod:`sessiontrace.store`, which is where users import them.

Example:
    >>> from sessiontrace.store import BadRow
    >>> BadRow(table="spans", row="trace 0af7 span 00f0", problems=("name is NULL",),
    ...     skipped=False).message
    'span row trace 0af7 span 00f0: name is NULL; shown without the bad values'
"""

from __future__ import annotations

import errno
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# In JSON, a UTC datetime as ``2025-01-01T10:00:00.123456+00:00``: pydantic would write a
# ``Z`` suffix, which ``datetime.fromisoformat`` only reads from Python 3.11.
_UtcDatetime = Annotated[datetime, PlainSerializer(datetime.isoformat, when_used="json")]


def _time(ns: int) -> datetime:
    """The UTC time ``ns`` nanoseconds after the epoch, to the microsecond."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


class StoreNotFoundError(FileNotFoundError):
    """There is no store at the given path.

    ``filename`` holds the path; the message says how to create the store.

    Example:
        >>> from sessiontrace.store import SessionStore
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


class StoreAccessError(PermissionError):
    """The store exists but this user cannot read it; the message names the cause and the fix.

    Example:
        >>> issubclass(StoreAccessError, PermissionError)
        True
    """

    def __str__(self) -> str:
        return str(self.strerror)


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


SessionStatus = Literal["ok", "error", "running"]


class SessionTotals(_Frozen):
    """What a session and all of its sub-sessions (and theirs) add up to.

    Example:
        >>> with SessionStore(path) as store:  # doctest: +SKIP
        ...     print(store.session("trip-1").with_subsessions.total_tokens)
    """

    sessions: int
    trace_count: int
    span_count: int
    llm_calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    error_count: int
    last_end: _UtcDatetime


class SessionSummary(_Frozen):
    """Totals for one session, over the spans that carry its id (its own spans).

    ``user_id`` is the user most of those spans name, ``user_count`` how many users they
    name. Token counts and ``cost_usd`` are ``None`` when no span reported them.
    ``duration_seconds`` runs from the first span's start to the last end. ``name`` and
    ``parent_session_id`` are a tracker run's name and the run it is a sub-session of.
    ``status`` is ``"running"`` for a tracker run that has not ended, else ``"error"`` when
    the run ended in error (or, for a session without a tracker, any span failed), else
    ``"ok"``. ``subsessions`` are the direct sub-sessions' ids, first started first, and
    ``with_subsessions`` the totals including every sub-session below (``None`` without any).

    Example:
        >>> with SessionStore(path) as store:  # doctest: +SKIP
        ...     summary = store.session("chat-42")
        ...     print(summary.trace_count, summary.total_tokens)
    """

    session_id: str
    name: str | None = None
    parent_session_id: str | None = None
    status: SessionStatus = "ok"
    user_id: str | None
    user_count: int = 0
    trace_count: int
    span_count: int
    llm_calls: int = 0
    first_start: _UtcDatetime
    last_end: _UtcDatetime
    duration_seconds: float
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None = None
    error_count: int
    subsessions: tuple[str, ...] = ()
    with_subsessions: SessionTotals | None = None


class BadRow(_Frozen):
    """A stored row the reader could not read whole, and what it did with it.

    ``skipped`` rows are left out of every result; the others are returned with each bad
    value replaced (an empty mapping for undecodable JSON, U+FFFD for bytes that are not
    UTF-8, ``None`` or ``0`` for a number that is not one). ``problems`` says what was wrong,
    one entry per column.

    Example:
        >>> bad = BadRow(table="spans", row="trace 0af7 span 00f0", problems=("attributes are "
        ...     "not JSON",), skipped=False)
        >>> print(bad.message)
        span row trace 0af7 span 00f0: attributes are not JSON; shown without the bad values
    """

    table: str
    row: str
    problems: tuple[str, ...]
    skipped: bool

    @property
    def message(self) -> str:
        """One line naming the row, what was wrong with it and what the reader did."""
        what = "span row" if self.table == "spans" else f"{self.table} row"
        done = "left out" if self.skipped else "shown without the bad values"
        return f"{what} {self.row}: {'; '.join(self.problems)}; {done}"


class StoredLoss(_Frozen):
    """One record of spans the export path dropped or attribute values it repaired.

    ``kind`` is ``"dropped"`` (``count`` spans were lost) or ``"repaired"`` (``count``
    attribute values had text that could not be encoded and were stored with U+FFFD).
    ``reason`` is a short key such as ``"queue-full"`` or ``"export-failed"``,
    ``destination`` is ``"store"`` or the OTLP endpoint, ``message`` one sentence with the
    cause and the fix, and ``pid`` the process that recorded it. ``first`` and ``last`` bound
    the losses the record covers.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     for loss in store.losses():
        ...         print(loss.kind, loss.count, loss.reason, loss.destination)
    """

    id: int
    kind: str
    reason: str
    destination: str
    count: int
    first: _UtcDatetime
    last: _UtcDatetime
    first_ns: int
    last_ns: int
    message: str
    pid: int | None
