"""diagnose(): find the spans of a session's traces that lost the session, and say why.

A span carries the session when it has any of the session keys (``_keys.SESSION_ID_KEYS``).
For each trace the session touches this module reports: spans without the session in a trace
whose other spans carry it; a root without it whose descendants have it; spans that carry the
session under some keys but lack others their service stamps; and spans whose keys name two
different sessions. The store has no threads or call stacks, so each problem gets its likely
cause from the trace's shape and timing (see ``docs/cli.md``, ``sessiontrace doctor``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Literal

from sessiontrace import _keys
from sessiontrace._usage import is_llm_call as _is_llm_call
from sessiontrace.store._columns import session_keys
from sessiontrace.store._models import StoredSpan, StoredTrace, _Frozen, _UtcDatetime
from sessiontrace.store._reader import SessionStore

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

ATTRIBUTE_COUNT_LIMIT = 128
"""OpenTelemetry's default attribute count limit: a span this full may have lost keys."""

_KIND_ORDER: tuple[ProblemKind, ...] = (
    "unstamped_root",
    "unstamped_span",
    "dropped_keys",
    "conflicting_keys",
)

_FIXES: dict[Cause, str] = {
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

_EVIDENCE: dict[Cause, str] = {
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

_ROOT_EVIDENCE = (
    "the root started before the session block was entered: the spans under it that started "
    "inside the block carry the session, the root does not"
)


class ProblemSpan(_Frozen):
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
    start: _UtcDatetime
    session_keys: dict[str, str]
    missing_keys: tuple[str, ...]


class Problem(_Frozen):
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


class Diagnosis(_Frozen):
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


def diagnose(store: SessionStore, session_id: str) -> Diagnosis:
    """Check one session's traces for spans that lost the session, and say why.

    A problem in a trace shared with another session (a sub-session, a nested block) is
    reported once, under the session of the nearest span above it that carries one (below it,
    for a root); a span whose keys name two sessions is reported under both.

    Args:
        store: The store to read.
        session_id: The session id.

    Returns:
        The diagnosis: counts and problems, in trace order.

    Raises:
        SessionNotFoundError: If no span carries ``session_id``.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     found = diagnose(store, "chat-42")
        ...     print(found.traces_checked, [p.cause for p in found.problems])
    """
    traces = store.traces(session_id)
    expected = _expected_keys(span for trace in traces for span in trace.spans)
    problems = [
        problem
        for trace in traces
        for owner, problem in _TraceCheck(trace, expected).problems()
        if owner == session_id
    ]
    return Diagnosis(
        session_id=session_id,
        traces_checked=len(traces),
        spans_checked=sum(len(trace.spans) for trace in traces),
        problems=tuple(problems),
    )


def _expected_keys(spans: Iterable[StoredSpan]) -> dict[object, tuple[str, ...]]:
    """Per service, the set of session keys most of its spans carry (ties: the larger set)."""
    counts: dict[object, Counter[frozenset[str]]] = {}
    for span in spans:
        carried = frozenset(session_keys(span.attributes))
        if carried:
            service = span.resource.get("service.name")
            counts.setdefault(service, Counter())[carried] += 1
    expected = {}
    for service, counter in counts.items():
        best = max(counter.items(), key=lambda item: (item[1], len(item[0]), sorted(item[0])))[0]
        expected[service] = tuple(key for key in _keys.SESSION_ID_KEYS if key in best)
    return expected


class _TraceCheck:
    """The problems of one trace, each with the session it is reported under."""

    def __init__(self, trace: StoredTrace, expected: Mapping[object, tuple[str, ...]]) -> None:
        self.trace = trace
        self.expected = expected
        self.keys = {span.span_id: session_keys(span.attributes) for span in trace.spans}
        self.by_id = {span.span_id: span for span in trace.spans}
        self.children: dict[str, list[StoredSpan]] = {}
        for span in trace.spans:  # in start order, so children are too
            parent = self.parent(span)
            if parent is not None:
                self.children.setdefault(parent.span_id, []).append(span)
        stamped = [span for span in trace.spans if self.keys[span.span_id]]
        self.stamped = stamped
        self.first_start = min((span.start_ns for span in stamped), default=0)
        self.last_end = max((span.end_ns for span in stamped), default=0)
        self.causes: dict[str, Cause] = {}
        self.below: dict[str, StoredSpan | None] = {}

    def parent(self, span: StoredSpan) -> StoredSpan | None:
        if span.parent_span_id is None or span.parent_span_id == span.span_id:
            return None
        return self.by_id.get(span.parent_span_id)

    def session(self, span: StoredSpan) -> str:
        return next(iter(self.keys[span.span_id].values()))

    def problems(self) -> list[tuple[str, Problem]]:
        groups: dict[tuple[str, ProblemKind, Cause], list[ProblemSpan]] = {}
        if self.stamped and len(self.stamped) < len(self.trace.spans):
            for span in self.trace.spans:
                if not self.keys[span.span_id]:
                    cause = self.cause(span)
                    kind: ProblemKind = "unstamped_span"
                    if self.parent(span) is None and self.stamped_below(span) is not None:
                        kind = "unstamped_root"
                    key = (self.owner(span), kind, cause)
                    groups.setdefault(key, []).append(self.problem_span(span, ()))
        for span in self.trace.spans:
            carried = self.keys[span.span_id]
            if not carried:
                continue
            sessions = list(dict.fromkeys(carried.values()))
            for session in sessions if len(sessions) > 1 else []:
                key = (session, "conflicting_keys", OVERWRITTEN)
                groups.setdefault(key, []).append(self.problem_span(span, ()))
            wanted = self.expected.get(span.resource.get("service.name"), ())
            missing = tuple(name for name in wanted if name not in carried)
            if missing:
                cause = LIMIT if len(span.attributes) >= ATTRIBUTE_COUNT_LIMIT else ELSEWHERE
                key = (self.session(span), "dropped_keys", cause)
                groups.setdefault(key, []).append(self.problem_span(span, missing))
        found = [
            (owner, self.problem(kind, cause, spans))
            for (owner, kind, cause), spans in groups.items()
        ]
        found.sort(key=lambda item: (_KIND_ORDER.index(item[1].kind), item[1].spans[0].start))
        return found

    def stamped_below(self, top: StoredSpan) -> StoredSpan | None:
        """The earliest span under ``top`` that carries a session, if any."""
        if top.span_id not in self.below:
            found: StoredSpan | None = None
            seen = {top.span_id}
            pending = list(self.children.get(top.span_id, []))
            while pending:
                span = pending.pop()
                if span.span_id in seen:
                    continue
                seen.add(span.span_id)
                if self.keys[span.span_id] and (found is None or span.start_ns < found.start_ns):
                    found = span
                pending.extend(self.children.get(span.span_id, []))
            self.below[top.span_id] = found
        return self.below[top.span_id]

    def owner(self, span: StoredSpan) -> str:
        """The session an unstamped span lost: the nearest stamped ancestor's, else below."""
        seen = {span.span_id}
        top = span
        parent = self.parent(span)
        while parent is not None and parent.span_id not in seen:
            if self.keys[parent.span_id]:
                return self.session(parent)
            seen.add(parent.span_id)
            top, parent = parent, self.parent(parent)
        below = self.stamped_below(top)
        return self.session(below if below is not None else self.stamped[0])

    def cause(self, span: StoredSpan) -> Cause:
        # Walk up through unstamped parents whose cause is not known yet, then decide from the
        # top down, so a span inherits what happened to the parent that lost the session.
        chain: list[StoredSpan] = []
        seen: set[str] = set()
        current: StoredSpan | None = span
        while current is not None and current.span_id not in self.causes:
            if current.span_id in seen:  # a parent cycle in a malformed store
                break
            chain.append(current)
            seen.add(current.span_id)
            parent = self.parent(current)
            current = None if parent is None or self.keys[parent.span_id] else parent
        for item in reversed(chain):
            self.causes[item.span_id] = self.own_cause(item)
        return self.causes[span.span_id]

    def own_cause(self, span: StoredSpan) -> Cause:
        if len(span.attributes) >= ATTRIBUTE_COUNT_LIMIT:
            return LIMIT  # its keys were evicted, whatever its context had
        llm = _is_llm_call(span.attributes)
        outside = span.start_ns < self.first_start or span.end_ns > self.last_end
        parent = self.parent(span)
        if parent is None:
            if self.stamped_below(span) is not None:
                return OUTSIDE
            if span.start_ns >= self.last_end or llm:
                return STREAM
            return OUTSIDE if outside else UNKNOWN
        if span.start_ns >= self.last_end:
            return STREAM
        if self.keys[parent.span_id]:
            return STREAM if llm and span.start_ns >= parent.end_ns else THREAD
        inherited = self.causes.get(parent.span_id)
        if inherited in (THREAD, STREAM):
            return inherited
        if llm:
            return STREAM
        if inherited == OUTSIDE or outside:
            return OUTSIDE
        return inherited or UNKNOWN

    def problem_span(self, span: StoredSpan, missing: tuple[str, ...]) -> ProblemSpan:
        parent = self.parent(span)
        return ProblemSpan(
            span_id=span.span_id,
            name=span.name,
            scope=span.scope,
            parent_span_id=span.parent_span_id,
            parent_name=parent.name if parent is not None else None,
            start=span.start,
            session_keys=self.keys[span.span_id],
            missing_keys=missing,
        )

    def problem(self, kind: ProblemKind, cause: Cause, spans: list[ProblemSpan]) -> Problem:
        one = len(spans) == 1
        some = f"{len(spans)} span{'' if one else 's'}"
        if kind == "unstamped_root":
            description = (
                f"the root span {spans[0].name!r} has no session but spans under it do: "
                "backends that read the session from the root (Langfuse's trace-level session, "
                "Phoenix's chat view) miss this trace"
            )
            evidence = _ROOT_EVIDENCE if cause == OUTSIDE else _EVIDENCE[cause]
        elif kind == "unstamped_span":
            description = (
                f"{some} without the session in a trace whose other spans carry it: "
                "backends' session views and totals miss them"
            )
            evidence = _EVIDENCE[cause]
        elif kind == "dropped_keys":
            missing = ", ".join(dict.fromkeys(name for span in spans for name in span.missing_keys))
            description = (
                f"{some} {'carries' if one else 'carry'} the session under some keys but "
                f"{'lacks' if one else 'lack'} {missing}, which the service's other spans "
                "carry: a backend reading the missing key loses them"
            )
            evidence = _EVIDENCE[cause]
        else:
            description = (
                f"{some} {'names' if one else 'name'} different sessions under different keys: "
                "backends disagree on which session they belong to"
            )
            evidence = _EVIDENCE[cause]
        return Problem(
            kind=kind,
            trace_id=self.trace.trace_id,
            cause=cause,
            description=description,
            evidence=evidence,
            fix=_FIXES[cause],
            spans=tuple(spans),
        )
