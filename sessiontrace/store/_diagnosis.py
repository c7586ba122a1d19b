"""What ``doctor`` reports: the problem kinds, each cause with its evidence and fix, the models.

:func:`~sessiontrace.store._doctor.diagnose` finds the problems; this module is the vocabulary
it reports them in. The models are re-exported from :mod:`sessiontrace.store`.

Example:
    >>> from sessiontrace.store import Diagnosis
    >>> Diagnosis(session_id="chat-42", traces_checked=1, spans_checked=2, problems=()).ok
    True
"""

from __future__ import annotations

from typing import Literal

from sessiontrace.store._columns import ATTRIBUTE_COUNT_LIMIT
from sessiontrace.store._models import Frozen, UtcDatetime

ProblemKind = Literal["unstamped_root", "unstamped_span", "dropped_keys", "conflicting_keys"]
Cause = Literal[
    "span started outside the block",
    "thread without context",
    "stream consumed after the block",
    "no session where it started",
    "attribute limit reached",
    "keys written without sessiontrace",
    "another writer set a session key",
]

OUTSIDE: Cause = "span started outside the block"
THREAD: Cause = "thread without context"
STREAM: Cause = "stream consumed after the block"
UNKNOWN: Cause = "no session where it started"
LIMIT: Cause = "attribute limit reached"
ELSEWHERE: Cause = "keys written without sessiontrace"
OVERWRITTEN: Cause = "another writer set a session key"

# The order problems are listed in, within a trace.
KIND_ORDER: tuple[ProblemKind, ...] = (
    "unstamped_root",
    "unstamped_span",
    "dropped_keys",
    "conflicting_keys",
)

# The sessiontrace API that prevents each cause.
FIXES: dict[Cause, str] = {
    OUTSIDE: "enter the session before this span starts: move the "
    "`sessiontrace.using_session(...)` block up so it encloses the whole request (for a span a "
    "framework starts before your code runs, enter it in middleware that runs first)",
    THREAD: "carry the context into the thread: `threading.Thread(target=sessiontrace.wrap(fn))`"
    " instead of `target=fn`, or submit the work to `sessiontrace.ContextThreadPoolExecutor` "
    "(also for `loop.run_in_executor`)",
    STREAM: "consume the stream inside the `sessiontrace.using_session(...)` block, or decorate "
    "the generator function with `@sessiontrace.using_session(...)` so its body runs in the "
    "session whenever it is iterated",
    UNKNOWN: "find where this span starts and enclose it in `sessiontrace.using_session(...)`, "
    "or hand the function that starts it over with `sessiontrace.wrap(fn)`",
    LIMIT: "keep `reserve_keys=True` (the default) on `SessionSpanProcessor` so the session keys "
    "are never evicted, or raise `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`",
    ELSEWHERE: "start the span inside `sessiontrace.using_session(...)` instead of setting the "
    "key yourself, and give every process writing this store the same `dialects`",
    OVERWRITTEN: "stop setting the session key by hand (or the instrumentation's own session "
    "option) and let `sessiontrace.using_session(...)` stamp it; if that id is the right one, "
    "pass it to `using_session(...)` instead",
}

# What each cause is inferred from (the store has no threads or call stacks).
EVIDENCE: dict[Cause, str] = {
    OUTSIDE: "it ran outside the session block: under a span without the session (such as a "
    "root started before the block), or before the first span that carries it, or after the last",
    THREAD: "its parent carries the session and it does not (spans under it inherit the loss): "
    "the context was lost between them, as when a thread or an executor runs code without the "
    "caller's context",
    STREAM: "it started after every span carrying the session had ended, or it is an LLM call "
    "without the session: as when a generator or stream is consumed after the block made it",
    UNKNOWN: "no session was in force where it started, and no usual pattern explains why",
    LIMIT: f"it holds {ATTRIBUTE_COUNT_LIMIT} or more attributes, OpenTelemetry's default "
    "limit: the session keys were stamped first, so they were evicted first as it filled up",
    ELSEWHERE: "sessiontrace stamps all its keys at once, so a span with only some of them was "
    "stamped by something else (instrumentation, your code) or by a process with other dialects",
    OVERWRITTEN: "sessiontrace never overwrites an attribute, so a value set by hand or by "
    "instrumentation when the span started wins under its key",
}

# The evidence for a root without the session when spans under it carry it.
ROOT_EVIDENCE = (
    "the root started before the session block was entered: the spans under it that started "
    "inside the block carry the session, the root does not"
)


class ProblemSpan(Frozen):
    """One span a :class:`Problem` is about.

    ``scope`` is the instrumentation library that made it. ``session_keys`` are the session
    keys it carries with their values (empty for a span without the session);
    ``missing_keys`` are the ones its service stamps elsewhere but it lacks.

    Example:
        >>> from datetime import datetime, timezone
        >>> span = ProblemSpan(span_id="1", name="worker", scope="app", parent_span_id="0",
        ...     parent_name="agent", start=datetime(2025, 1, 1, tzinfo=timezone.utc),
        ...     session_keys={}, missing_keys=())
        >>> span.parent_name
        'agent'
    """

    span_id: str
    name: str
    scope: str | None
    parent_span_id: str | None
    parent_name: str | None
    start: UtcDatetime
    session_keys: dict[str, str]
    missing_keys: tuple[str, ...]


class Problem(Frozen):
    """Spans of one trace that lost their session in the same way, with the likely cause.

    ``kind`` is what is wrong, ``description`` says it in a sentence, ``cause`` names the
    likely reason (a heuristic: ``evidence`` says what it rests on) and ``fix`` the
    sessiontrace API that prevents it.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     for problem in diagnose(store, "chat-42").problems:
        ...         print(problem.trace_id, problem.cause, problem.span_names)
    """

    kind: ProblemKind
    trace_id: str
    cause: Cause
    description: str
    evidence: str
    fix: str
    spans: tuple[ProblemSpan, ...]

    @property
    def span_ids(self) -> tuple[str, ...]:
        """The ids of the spans concerned, in start order."""
        return tuple(span.span_id for span in self.spans)

    @property
    def span_names(self) -> tuple[str, ...]:
        """The names of the spans concerned, in start order."""
        return tuple(span.name for span in self.spans)


class Diagnosis(Frozen):
    """What :func:`diagnose` found in one session.

    ``traces_checked`` counts the traces the session touches and ``spans_checked`` all their
    spans, with or without the session.

    Example:
        >>> Diagnosis(session_id="chat-42", traces_checked=3, spans_checked=9, problems=()).ok
        True
    """

    session_id: str
    traces_checked: int
    spans_checked: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems
