"""The store's models: what reading spans, sessions, losses and steps back returns.

Every model is frozen and serializes times in UTC. They are re-exported from
:mod:`sessiontrace.store`, which is where users import them; the errors a read raises are in
``_errors.py``, and what ``diagnose`` reports in ``_diagnosis.py``.

Example:
    >>> from sessiontrace.store import BadRow
    >>> BadRow(table="spans", row="trace 0af7 span 00f0", problems=("name is NULL",),
    ...     skipped=False).message
    'span row trace 0af7 span 00f0: name is NULL; shown without the bad values'
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# In JSON, a UTC datetime as ``2025-01-01T10:00:00.123456+00:00``: pydantic would write a
# ``Z`` suffix, which ``datetime.fromisoformat`` only reads from Python 3.11.
UtcDatetime = Annotated[datetime, PlainSerializer(datetime.isoformat, when_used="json")]
"""A datetime field of a store model: UTC, written to JSON by ``datetime.isoformat``."""


def utc_from_ns(ns: int) -> datetime:
    """The UTC time ``ns`` nanoseconds after the epoch, to the microsecond.

    Example:
        >>> utc_from_ns(1_500_000_000).isoformat()
        '1970-01-01T00:00:01.500000+00:00'
    """
    return _EPOCH + timedelta(microseconds=ns // 1000)


class Frozen(BaseModel):
    """The base of every store model: immutable, so a value read back cannot be changed."""

    model_config = ConfigDict(frozen=True)


class StoredEvent(Frozen):
    """One span event (an exception is an event named ``exception``).

    Example:
        >>> StoredEvent(name="retry", timestamp_ns=0, timestamp=_EPOCH, attributes={}).name
        'retry'
    """

    name: str
    timestamp: UtcDatetime
    timestamp_ns: int
    attributes: dict[str, Any]


class StoredSpan(Frozen):
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
    start: UtcDatetime
    end: UtcDatetime
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
    repeated_call: bool = False
    """Whether another span reported this span's model call first (an SDK's own span and an
    instrumentation's); the store counts that call once, on the other span."""


class StoredTrace(Frozen):
    """Every stored span of one trace, in start order.

    Example:
        >>> with SessionStore(path) as store:  # doctest: +SKIP
        ...     for trace in store.traces("chat-42"):
        ...         print(trace.trace_id, [root.name for root in trace.roots])
    """

    trace_id: str
    spans: tuple[StoredSpan, ...]
    start: UtcDatetime
    end: UtcDatetime
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


class SessionTotals(Frozen):
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
    last_end: UtcDatetime


class SessionSummary(Frozen):
    """A row of the store's session listing: any session, totalled from its own stored spans.

    Unlike :class:`sessiontrace.TrackerSummary` (a live tracker's totals) and
    :class:`StoredTrackerSummary` (what a tracker wrote when it ended), it exists for every
    session id, tracker or not, and is added up by the store from the spans that carry that
    id, so its token counts leave out sub-sessions (``with_subsessions`` has those).

    ``user_id`` is the user most of those spans name, ``user_count`` how many users they
    name. Token counts and ``cost_usd`` are ``None`` when no span reported them.
    ``duration_seconds`` runs from the first span's start to the last end. ``name`` and
    ``parent_session_id`` are a tracker run's name and the run it is a sub-session of.
    ``status`` is ``"running"`` for a tracker run that has not ended, else ``"error"`` when
    the run ended in error (or, for a session without a tracker, any span failed), else
    ``"ok"``. ``subsessions`` are the direct sub-sessions' ids, first started first, and
    ``with_subsessions`` the totals including every sub-session below (``None`` without any).
    ``tags`` are the tags any of its spans carry (``tag.tags`` or ``langfuse.trace.tags``),
    sorted, each once.

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
    first_start: UtcDatetime
    last_end: UtcDatetime
    duration_seconds: float
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None = None
    error_count: int
    tags: tuple[str, ...] = ()
    subsessions: tuple[str, ...] = ()
    with_subsessions: SessionTotals | None = None


class BadRow(Frozen):
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


class StoredLoss(Frozen):
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
    first: UtcDatetime
    last: UtcDatetime
    first_ns: int
    last_ns: int
    message: str
    pid: int | None


# --- a session step by step (read by _steps.py) -----------------------------------------

StepStatus = Literal["ok", "error", "running"]


class LLMCall(Frozen):
    """One call to a model, inside a step.

    ``request`` and ``response`` are the span's ``input.value`` and ``output.value`` as
    text; ``None`` when the instrumentation did not record them.

    Example:
        >>> call = LLMCall(span_id="1", name="chat", model="gpt-4o-mini", prompt_tokens=3,
        ...     completion_tokens=2, total_tokens=5, start=utc_from_ns(0), duration_ms=1.0,
        ...     status="ok", request="hi", response="hello")
        >>> call.total_tokens
        5
    """

    span_id: str
    name: str
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    start: UtcDatetime
    duration_ms: float
    status: Literal["ok", "error"]
    request: str | None
    response: str | None


class StoredStep(Frozen):
    """One step of a session, with everything that happened inside it.

    For a tracker's session, ``span`` is the step's own span and ``spans`` are the session's
    spans that carry its step index. ``span`` is ``None`` (and ``status`` is ``"running"``)
    while the step is still open: its spans are stored before it. For a session written
    without a tracker (``tracked`` is ``False``), each trace is one step: ``span`` is its
    first root span and ``spans`` are the trace's other spans.

    Token counts are summed over the step's spans and are ``None`` when none reported any.
    ``children`` are the sub-sessions that started while the step was open.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     for step in steps(store, "trip-1"):
        ...         print(step.index, step.name, step.total_tokens, step.state)
    """

    index: int
    name: str | None
    tracked: bool
    trace_id: str
    start: UtcDatetime
    end: UtcDatetime
    start_ns: int
    end_ns: int
    duration_ms: float
    status: StepStatus
    status_message: str | None
    state: dict[str, Any] | None
    span: StoredSpan | None
    spans: tuple[StoredSpan, ...]
    llm_calls: tuple[LLMCall, ...]
    models: tuple[str, ...]
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    errors: int
    children: tuple[str, ...]


class StoredTrackerSummary(Frozen):
    """The ``TrackerSummary`` a tracker wrote when it ended, as read back from the store.

    It is the tracker's final totals as its ``sessiontrace.summary`` span carries them, so
    only a session a tracker ran and ended has one; :class:`SessionSummary` is the store's own
    count for any session. Tokens, cost and errors include the tracker's sub-sessions;
    ``steps`` counts its own. It has the fields the span carries: no ``user_id``, ``error``,
    ``started_at`` or ``children``, ``ended`` is the span's end and ``duration_ms`` the run's.
    ``cost_usd`` is ``None`` when no span reported a cost and no prices were given.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     totals = summary(store, "trip-1")
        ...     print(totals.status, totals.total_tokens, totals.cost_usd)
    """

    session_id: str
    name: str | None
    parent_session_id: str | None
    status: Literal["ok", "error"]
    steps: int
    spans: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None
    errors: int
    duration_ms: float
    ended: UtcDatetime
