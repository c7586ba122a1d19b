"""A session read back step by step: its steps, LLM calls, state, summary and sub-sessions.

A :class:`sessiontrace.SessionTracker` writes one span per step (``sessiontrace.span.type`` =
``"step"``), stamps ``sessiontrace.step.index`` on every span inside a step, and writes one
``"summary"`` span when it ends. These functions read that shape back from a
:class:`SessionStore`. A session written without a tracker still replays: each of its traces
becomes one step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from sessiontrace import _keys
from sessiontrace._usage import is_llm_call, model_name
from sessiontrace.store._columns import FLAG_REPEATED_CALL
from sessiontrace.store._models import (
    LLMCall,
    StepStatus,
    StoredSpan,
    StoredStep,
    StoredTrackerSummary,
    utc_from_ns,
)
from sessiontrace.store._reader import SessionStore

# The span types a tracker writes for itself; every other span is the program's own work.
_STEP, _SESSION, _SUMMARY = "step", "session", "summary"
_TRACKER_TYPES = frozenset({_STEP, _SESSION, _SUMMARY})


def steps(store: SessionStore, session_id: str) -> list[StoredStep]:
    """The steps of a session, in index order.

    A session with tracker spans gives one step per step index. Any other session gives one
    pseudo-step per trace, in start order: ``index`` is its position and ``name`` the name of
    its root span, so plain sessions replay too. A step's tokens and LLM calls leave out the
    spans that repeat a call another span reported (``FLAG_REPEATED_CALL``), as the session's
    totals do; its spans and errors keep them.

    Args:
        store: The store to read.
        session_id: The session id.

    Returns:
        The steps; empty for a tracker that ended before its first step.

    Raises:
        SessionNotFoundError: If no span carries ``session_id``.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     names = [step.name for step in steps(store, "trip-1")]
    """
    spans = store.spans(session_id)
    children = _children_starts(store, session_id)
    repeats = _repeated_calls(store, session_id)
    if not _tracked(spans):
        return _trace_steps(store, session_id, children, repeats)
    step_spans: dict[int, StoredSpan] = {}
    inside: dict[int, list[StoredSpan]] = {}
    for span in spans:
        index = _step_index(span)
        if index is None:
            continue
        if _span_type(span) == _STEP:
            step_spans.setdefault(index, span)
        elif _span_type(span) not in _TRACKER_TYPES:
            inside.setdefault(index, []).append(span)
    found = []
    for index in sorted(step_spans.keys() | inside.keys()):
        step_span = step_spans.get(index)
        name = step_span.attributes.get(_keys.STEP_NAME) if step_span else None
        found.append(
            _step(
                index,
                name if isinstance(name, str) and name else None,
                step_span,
                inside.get(index, []),
                tracked=True,
                state=_state(step_span),
                repeats=repeats,
            )
        )
    return _with_children(found, children)


def outside_steps(store: SessionStore, session_id: str) -> list[StoredSpan]:
    """A tracker session's spans that belong to no step, in start order.

    These are spans the program made between steps (the tracker's own session and summary
    spans are left out). A session without tracker spans has none: its traces are its steps.

    Args:
        store: The store to read.
        session_id: The session id.

    Returns:
        The spans that carry the session id but no step index.

    Raises:
        SessionNotFoundError: If no span carries ``session_id``.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     print([span.name for span in outside_steps(store, "trip-1")])
    """
    spans = store.spans(session_id)
    if not _tracked(spans):
        return []
    return [
        span
        for span in spans
        if _span_type(span) not in _TRACKER_TYPES and _step_index(span) is None
    ]


def summary(store: SessionStore, session_id: str) -> StoredTrackerSummary | None:
    """The summary a tracker wrote when its run ended.

    Args:
        store: The store to read.
        session_id: The session id.

    Returns:
        The summary, or ``None`` while the run is still going or when the session was not
        written by a tracker.

    Raises:
        SessionNotFoundError: If no span carries ``session_id``.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     totals = summary(store, "trip-1")
        ...     print("running" if totals is None else totals.status)
    """
    found = [span for span in store.spans(session_id) if _span_type(span) == _SUMMARY]
    if not found:
        return None
    span = max(found, key=lambda s: s.end_ns)
    attributes = span.attributes

    def count(field: str) -> int:
        return _as_int(attributes.get(_keys.SUMMARY_PREFIX + field)) or 0

    written = attributes.get(_keys.STATUS)
    status: Literal["ok", "error"] = "error" if span.status_code == "ERROR" else "ok"
    if written == "ok" or written == "error":
        status = written
    name = attributes.get(_keys.SESSION_NAME)
    parent = attributes.get(_keys.PARENT_SESSION_ID)
    return StoredTrackerSummary(
        session_id=session_id,
        name=name if isinstance(name, str) and name else None,
        parent_session_id=parent if isinstance(parent, str) and parent else None,
        status=status,
        steps=count("steps"),
        spans=count("spans"),
        llm_calls=count("llm_calls"),
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        total_tokens=count("total_tokens"),
        cost_usd=_as_float(attributes.get(_keys.SUMMARY_PREFIX + "cost_usd")),
        errors=count("errors"),
        duration_ms=_as_float(attributes.get(_keys.SUMMARY_PREFIX + "duration_ms")) or 0.0,
        ended=span.end,
    )


def children(store: SessionStore, session_id: str) -> list[str]:
    """The sub-sessions of a session: ids whose spans name it as their parent session.

    Args:
        store: The store to read.
        session_id: The parent's session id.

    Returns:
        The children's session ids, the first started first.

    Raises:
        SessionNotFoundError: If no span carries ``session_id``.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     for child in children(store, "trip-1"):
        ...         print(child, summary(store, child))
    """
    return list(_children_starts(store, session_id))


# --- building steps ----------------------------------------------------------------------


def _trace_steps(
    store: SessionStore,
    session_id: str,
    children: dict[str, int],
    repeats: frozenset[tuple[str, str]],
) -> list[StoredStep]:
    found = []
    for position, trace in enumerate(store.traces(session_id)):
        root = trace.roots[0] if trace.roots else trace.spans[0]
        others = [span for span in trace.spans if span is not root]
        found.append(
            _step(position, root.name, root, others, tracked=False, state=None, repeats=repeats)
        )
    return _with_children(found, children)


def _step(
    index: int,
    name: str | None,
    span: StoredSpan | None,
    inside: Sequence[StoredSpan],
    *,
    tracked: bool,
    state: dict[str, Any] | None,
    repeats: frozenset[tuple[str, str]] = frozenset(),
) -> StoredStep:
    everything = ([span] if span else []) + list(inside)
    counted = [s for s in everything if (s.trace_id, s.span_id) not in repeats]
    if span is not None and tracked:
        start_ns, end_ns = span.start_ns, span.end_ns
    else:
        start_ns = min(s.start_ns for s in everything)
        end_ns = max(s.end_ns for s in everything)
    status: StepStatus = "running" if span is None else "ok"
    if span is not None and span.status_code == "ERROR":
        status = "error"
    calls = tuple(_llm_call(s) for s in counted if is_llm_call(s.attributes))
    prompt, completion, total = (
        _sum(s.prompt_tokens for s in counted),
        _sum(s.completion_tokens for s in counted),
        _sum(s.total_tokens for s in counted),
    )
    return StoredStep(
        index=index,
        name=name,
        tracked=tracked,
        trace_id=everything[0].trace_id,
        start=utc_from_ns(start_ns),
        end=utc_from_ns(end_ns),
        start_ns=start_ns,
        end_ns=end_ns,
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
        status=status,
        status_message=span.status_message if span is not None else None,
        state=state,
        span=span,
        spans=tuple(inside),
        llm_calls=calls,
        models=tuple(dict.fromkeys(call.model for call in calls if call.model)),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        errors=sum(s.status_code == "ERROR" for s in everything),
        children=(),
    )


def _with_children(found: list[StoredStep], starts: dict[str, int]) -> list[StoredStep]:
    """Give each step the sub-sessions that started while it was open (the latest such step)."""
    if not starts:
        return found
    owned: dict[int, list[str]] = {}
    for child, start_ns in starts.items():
        within = [
            position
            for position, step in enumerate(found)
            if step.start_ns <= start_ns <= step.end_ns
        ]
        if within:
            owner = max(within, key=lambda position: found[position].start_ns)
            owned.setdefault(owner, []).append(child)
    return [
        step.model_copy(update={"children": tuple(owned[position])}) if position in owned else step
        for position, step in enumerate(found)
    ]


_REPEATED_CALLS = (
    f"SELECT trace_id, span_id FROM spans WHERE (flags & {FLAG_REPEATED_CALL}) != 0 "
    "AND trace_id IN (SELECT trace_id FROM spans WHERE session_id = ?)"
)


def _repeated_calls(store: SessionStore, session_id: str) -> frozenset[tuple[str, str]]:
    """The (trace, span) ids, in the session's traces, of spans that repeat a counted call."""
    # _rows: the reader's own query path, which survives text that is not UTF-8.
    return frozenset((row[0], row[1]) for row in store._rows(_REPEATED_CALLS, (session_id,)))


def _children_starts(store: SessionStore, session_id: str) -> dict[str, int]:
    """Child session id to its first span's start, in start order."""
    store.session(session_id)  # raises SessionNotFoundError for an unknown id
    return store.subsession_starts(session_id)


def _llm_call(span: StoredSpan) -> LLMCall:
    attributes = span.attributes
    return LLMCall(
        span_id=span.span_id,
        name=span.name,
        model=model_name(attributes),
        prompt_tokens=span.prompt_tokens,
        completion_tokens=span.completion_tokens,
        total_tokens=span.total_tokens,
        start=span.start,
        duration_ms=span.duration_ms,
        status="error" if span.status_code == "ERROR" else "ok",
        request=_text(attributes.get(_keys.OI_INPUT_VALUE)),
        response=_text(attributes.get(_keys.OI_OUTPUT_VALUE)),
    )


# --- reading attribute values ------------------------------------------------------------


def _tracked(spans: Iterable[StoredSpan]) -> bool:
    """Whether a tracker wrote the session: a span of its own, or one inside one of its steps."""
    return any(
        _span_type(span) in _TRACKER_TYPES or _step_index(span) is not None for span in spans
    )


def _span_type(span: StoredSpan) -> str | None:
    value = span.attributes.get(_keys.SPAN_TYPE)
    return value if isinstance(value, str) else None  # a damaged row may hold a list


def _step_index(span: StoredSpan) -> int | None:
    # An int from the tracker; a string when it came through W3C baggage from another service.
    index = _as_int(span.attributes.get(_keys.STEP_INDEX))
    return index if index is not None and index >= 0 else None


def _state(span: StoredSpan | None) -> dict[str, Any] | None:
    raw = span.attributes.get(_keys.STATE) if span is not None else None
    if not isinstance(raw, str):
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _sum(counts: Iterable[int | None]) -> int | None:
    present = [count for count in counts if count is not None]
    return sum(present) if present else None
