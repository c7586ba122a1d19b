"""The JSON documents of the web view's API, built from the store's models.

Each function returns plain JSON-ready values (``dict``, ``list``, ``str``, numbers): a
session's traces as span trees, a tracker run's timeline with its sub-sessions nested. They
read through ``SessionStore`` only. Text from the store is passed on as it is: JSON encoding
escapes it for the wire, and the pages escape it again where they show it.

Example:
    >>> from sessiontrace.store import SessionStore
    >>> with SessionStore(path) as store:  # doctest: +SKIP
    ...     session_document(store, "chat-42")["traces"][0]["spans"][0]["name"]
    'chat.turn'
"""

from __future__ import annotations

from typing import Any

from sessiontrace import _keys
from sessiontrace._usage import reported_cost
from sessiontrace.store import (
    SessionStore,
    StoredSpan,
    StoredStep,
    StoredTrace,
    diagnose,
    steps,
    summary,
)
from sessiontrace.store._models import SessionSummary
from sessiontrace.ui._turns import turn_document

MAX_SUBSESSION_DEPTH = 8  # a timeline nests sub-sessions this deep; deeper ones are named


def summary_document(found: SessionSummary) -> dict[str, Any]:
    """A session's summary as the listing and the session document show it."""
    document: dict[str, Any] = found.model_dump(mode="json")
    return document


def session_document(store: SessionStore, session_id: str) -> dict[str, Any]:
    """``GET /api/sessions/{id}``: the summary, each trace as a chat turn (``_turns``), and
    each trace in time order as span trees.

    Raises:
        SessionNotFoundError: no span carries ``session_id``.
    """
    found = store.session(session_id)
    traces = store.traces(session_id)
    return {
        "session_id": found.session_id,
        "summary": summary_document(found),
        "turns": [turn_document(trace) for trace in traces],
        "traces": [_trace(trace) for trace in traces],
    }


def _trace(trace: StoredTrace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "start": trace.start.isoformat(),
        "end": trace.end.isoformat(),
        "duration_ms": trace.duration_ms,
        "span_count": len(trace.spans),
        "spans": [_tree(trace, root, set()) for root in trace.roots],
    }


def _tree(trace: StoredTrace, span: StoredSpan, seen: set[str]) -> dict[str, Any]:
    seen.add(span.span_id)  # parents that form a loop are shown once, never followed again
    document = span_document(span)
    document["children"] = [
        _tree(trace, child, seen)
        for child in trace.children(span.span_id)
        if child.span_id not in seen
    ]
    return document


def span_document(span: StoredSpan) -> dict[str, Any]:
    """One span: its fields, attributes and events, and its input and output, if any."""
    attributes = span.attributes
    return {
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "openinference_kind": attributes.get(_keys.OI_SPAN_KIND),
        "start": span.start.isoformat(),
        "end": span.end.isoformat(),
        "duration_ms": span.duration_ms,
        "status": span.status_code,
        "status_message": span.status_message,
        "prompt_tokens": span.prompt_tokens,
        "completion_tokens": span.completion_tokens,
        "total_tokens": span.total_tokens,
        "input": attributes.get(_keys.OI_INPUT_VALUE),
        "output": attributes.get(_keys.OI_OUTPUT_VALUE),
        "attributes": attributes,
        "events": [event.model_dump(mode="json") for event in span.events],
    }


def doctor_document(store: SessionStore, session_id: str) -> dict[str, Any]:
    """``GET /api/sessions/{id}/doctor``: what ``sessiontrace doctor`` finds in the session.

    Raises:
        SessionNotFoundError: no span carries ``session_id``.
    """
    store.session(session_id)  # 404 for an unknown id, as the other documents
    document: dict[str, Any] = diagnose(store, session_id).model_dump(mode="json")
    return document


def timeline_document(store: SessionStore, session_id: str) -> dict[str, Any]:
    """``GET /api/sessions/{id}/timeline``: steps with state changes, sub-sessions, totals.

    Raises:
        SessionNotFoundError: no span carries ``session_id``.
    """
    return _timeline(store, session_id, 0, frozenset())


def _timeline(
    store: SessionStore, session_id: str, depth: int, seen: frozenset[str]
) -> dict[str, Any]:
    found = store.session(session_id)
    final = summary(store, session_id)
    previous: dict[str, Any] = {}
    step_documents = []
    for step in steps(store, session_id):
        step_documents.append(_step(step, previous))
        if step.state is not None:
            previous = step.state
    seen = seen | {session_id}
    children: list[dict[str, Any]] = []
    for child in store.subsessions(session_id):
        if child.session_id in seen:
            continue  # a loop of parents: shown once
        if depth + 1 >= MAX_SUBSESSION_DEPTH:
            children.append({"session_id": child.session_id, "truncated": True})
        else:
            children.append(_timeline(store, child.session_id, depth + 1, seen))
    return {
        "session_id": session_id,
        "name": found.name,
        "status": found.status,
        "tracked": final is not None,
        "steps": step_documents,
        "subsessions": children,
        "totals": None if final is None else final.model_dump(mode="json"),
        "summary": summary_document(found),
    }


def _step(step: StoredStep, previous: dict[str, Any]) -> dict[str, Any]:
    # The step's spans are in the session document; here, what they add up to.
    document: dict[str, Any] = step.model_dump(mode="json", exclude={"span", "spans"})
    costs = [
        cost
        for span in step.spans
        if not span.repeated_call and (cost := reported_cost(span.attributes)) is not None
    ]
    document["cost_usd"] = sum(costs) if costs else None
    document["span_count"] = len(step.spans)
    state = step.state
    if state is None:
        document["state_change"] = None
    else:
        document["state_change"] = {
            "set": {key: value for key, value in state.items() if previous.get(key) != value
                    or key not in previous},
            "removed": sorted(key for key in previous if key not in state),
        }  # fmt: skip
    return document
