"""``sessiontrace show``: one session's summary, then each of its traces as a tree of spans."""

from __future__ import annotations

import argparse
from typing import TextIO

from sessiontrace import _keys
from sessiontrace.cli import _format
from sessiontrace.cli._errors import CommandError
from sessiontrace.cli._sessions import newest
from sessiontrace.store import (
    SessionNotFoundError,
    SessionStore,
    SessionSummary,
    StoredSpan,
    StoredTrace,
)

LATEST = "latest"
"""The SESSION_ID that means the session ``sessions`` lists first (unless one is named so)."""

SUBSESSIONS_SHOWN = 5
"""How many sub-session ids the header names before it says how many more there are."""

_INDENT = "  "


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``show`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "show",
        parents=parents,
        help="show one session's traces as trees of spans",
        description="Show a session's summary (its own totals and, with sub-sessions, the "
        "totals including them), then each trace it touches, in time order, as a tree of "
        "spans with kind, duration, status (ok or error) and input/output previews. Spans "
        "marked '(no session)' belong to the trace but do not carry the session id.",
    )
    parser.add_argument(
        "session_id",
        metavar="SESSION_ID",
        help="as listed by `sessions`, or `latest` for the first session it lists",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Print one session (text or JSON) from ``store``; returns the exit code."""
    summary = _find(store, args.session_id)
    traces = store.traces(summary.session_id)
    if args.json:
        document = {
            "session": summary.model_dump(mode="json"),
            "traces": [trace.model_dump(mode="json") for trace in traces],
        }
        out.write(_format.dump_json(document) + "\n")
        return 0
    lines = _header(summary)
    for trace in traces:
        lines.append("")
        lines.extend(_trace_lines(trace, summary.session_id))
    out.write("\n".join(lines) + "\n")
    return 0


def _find(store: SessionStore, session_id: str) -> SessionSummary:
    try:
        return store.session(session_id)
    except SessionNotFoundError:
        if session_id != LATEST:
            raise
    found = newest(store)
    if found is None:
        raise CommandError(
            f"the store at {store.path} holds no sessions yet; run your program inside "
            "sessiontrace.using_session(...) after sessiontrace.configure()",
            exit_code=1,
        )
    return found


def title(s: SessionSummary) -> str:
    """``Session ID``, and the tracker run's name after a colon when it has one.

    Example:
        >>> title(summary)  # doctest: +SKIP
        'Session trip-5f2c81d0: book-trip'
    """
    name = f": {_format.safe(s.name)}" if s.name else ""
    return f"Session {_format.safe(s.session_id)}{name}"


def fields(labelled: list[tuple[str, str | list[str]]], indent: str = _INDENT) -> list[str]:
    """Labelled values in two aligned columns; a list value continues under the first line.

    Example:
        >>> for line in fields([("steps", "4"), ("totals", ["a", "b"])], ""): print(line)
        steps   4
        totals  a
                b
    """
    width = max(len(label) for label, _ in labelled)
    lines = []
    for label, value in labelled:
        first, *rest = [value] if isinstance(value, str) else value
        lines.append(f"{indent}{label.ljust(width)}  {first}")
        lines.extend(f"{indent}{' ' * width}  {more}" for more in rest)
    return lines


def family_fields(s: SessionSummary) -> list[tuple[str, str | list[str]]]:
    """The header lines naming a session's parent and its direct sub-sessions, if any."""
    found: list[tuple[str, str | list[str]]] = []
    if s.parent_session_id:
        found.append(("parent", _format.safe(s.parent_session_id)))
    if s.subsessions:
        shown = ", ".join(_format.safe(child) for child in s.subsessions[:SUBSESSIONS_SHOWN])
        more = len(s.subsessions) - SUBSESSIONS_SHOWN
        found.append(("sub-sessions", shown + (f" and {more:,} more" if more > 0 else "")))
    return found


def _header(s: SessionSummary) -> list[str]:
    labelled: list[tuple[str, str | list[str]]] = [
        ("status", _format.status_word(s.status)),
        ("user", _format.safe(s.user_id or "-")),
        *family_fields(s),
        ("first seen", _format.local_time(s.first_start)),
        ("last seen", _format.local_time(s.last_end)),
        ("duration", _format.duration(s.duration_seconds)),
        ("totals", _format.totals_lines(s)),
    ]
    return [title(s), *fields(labelled)]


def _trace_lines(trace: StoredTrace, session_id: str) -> list[str]:
    count = len(trace.spans)
    lines = [
        f"Trace {_format.safe(trace.trace_id)}  {_format.local_time(trace.start)}  "
        f"{_format.milliseconds(trace.duration_ms)}  {count} span{'s' if count != 1 else ''}"
    ]
    children: dict[str, list[StoredSpan]] = {}
    for span in trace.spans:  # already in start order, so siblings come out in start order
        if span.parent_span_id is not None and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)
    seen: set[str] = set()
    # Iterative depth-first walk: a deep or malformed (cyclic) trace cannot exhaust the stack.
    stack = [(root, 1) for root in reversed(trace.roots)]
    while True:
        while stack:
            span, depth = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            lines.extend(_span_lines(span, depth, session_id))
            kids = children.get(span.span_id, [])
            stack.extend((child, depth + 1) for child in reversed(kids))
        # Only a parent cycle leaves spans unreached; print them as roots rather than drop.
        unreached = [span for span in trace.spans if span.span_id not in seen]
        if not unreached:
            return lines
        stack.append((unreached[0], 1))


def _span_lines(span: StoredSpan, depth: int, session_id: str) -> list[str]:
    indent = _INDENT * depth
    kind = span.attributes.get(_keys.OI_SPAN_KIND) or span.kind
    parts = [
        f"- {_format.safe(span.name)}",
        _format.safe(kind),
        _format.milliseconds(span.duration_ms),
    ]
    parts.append(_format.status(span.status_code, span.status_message))
    if span.total_tokens is not None:
        counts = _format.tokens(span.prompt_tokens, span.completion_tokens, span.total_tokens)
        parts.append(f"tokens {counts}")
    if span.session_id is None:
        parts.append("(no session)")
    elif span.session_id != session_id:
        parts.append(f"(session {_format.safe(span.session_id)})")
    lines = [indent + "  ".join(parts)]
    for label, key in (("in: ", _keys.OI_INPUT_VALUE), ("out:", _keys.OI_OUTPUT_VALUE)):
        value = span.attributes.get(key)
        if value is not None:
            lines.append(f"{indent}{_INDENT * 2}{label} {_format.preview(value)}")
    return lines
