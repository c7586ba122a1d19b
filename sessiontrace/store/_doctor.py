"""diagnose(): find the spans of a session's traces that lost the session, and say why.

A span carries the session when it has any of the session keys (``_keys.SESSION_ID_KEYS``).
For each trace the session touches this module reports: spans without the session in a trace
whose other spans carry it; a root without it whose descendants have it; spans that carry the
session under some keys but lack others their service stamps; and spans whose keys name two
different sessions. The store has no threads or call stacks, so each problem gets its likely
cause from the trace's shape and timing (see ``docs/cli.md``, ``sessiontrace doctor``); the
kinds, causes and fixes it reports in are in ``_diagnosis.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from sessiontrace import _keys
from sessiontrace._usage import is_llm_call as _is_llm_call
from sessiontrace.store._columns import ATTRIBUTE_COUNT_LIMIT, session_keys
from sessiontrace.store._diagnosis import (
    ELSEWHERE,
    EVIDENCE,
    FIXES,
    KIND_ORDER,
    LIMIT,
    OUTSIDE,
    OVERWRITTEN,
    ROOT_EVIDENCE,
    STREAM,
    THREAD,
    UNKNOWN,
    Cause,
    Diagnosis,
    Problem,
    ProblemKind,
    ProblemSpan,
)
from sessiontrace.store._models import StoredSpan, StoredTrace
from sessiontrace.store._reader import SessionStore


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
        found.sort(key=lambda item: (KIND_ORDER.index(item[1].kind), item[1].spans[0].start))
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
            evidence = ROOT_EVIDENCE if cause == OUTSIDE else EVIDENCE[cause]
        elif kind == "unstamped_span":
            description = (
                f"{some} without the session in a trace whose other spans carry it: "
                "backends' session views and totals miss them"
            )
            evidence = EVIDENCE[cause]
        elif kind == "dropped_keys":
            missing = ", ".join(dict.fromkeys(name for span in spans for name in span.missing_keys))
            description = (
                f"{some} {'carries' if one else 'carry'} the session under some keys but "
                f"{'lacks' if one else 'lack'} {missing}, which the service's other spans "
                "carry: a backend reading the missing key loses them"
            )
            evidence = EVIDENCE[cause]
        else:
            description = (
                f"{some} {'names' if one else 'name'} different sessions under different keys: "
                "backends disagree on which session they belong to"
            )
            evidence = EVIDENCE[cause]
        return Problem(
            kind=kind,
            trace_id=self.trace.trace_id,
            cause=cause,
            description=description,
            evidence=evidence,
            fix=FIXES[cause],
            spans=tuple(spans),
        )
