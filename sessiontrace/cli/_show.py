"""``sessiontrace show``: one session's summary, then each of its traces as a tree of spans."""

from __future__ import annotations

import argparse
from typing import TextIO

from sessiontrace import _keys
from sessiontrace.cli import _format
from sessiontrace.cli._view import depth_first, family_fields, fields, find
from sessiontrace.store import SessionStore, SessionSummary, StoredSpan, StoredTrace

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
    summary = find(store, args.session_id)
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


def title(s: SessionSummary) -> str:
    """``Session ID``, and the tracker run's name after a colon when it has one.

    Example:
        >>> title(summary)  # doctest: +SKIP
        'Session trip-5f2c81d0: book-trip'
    """
    name = f": {_format.safe(s.name)}" if s.name else ""
    return f"Session {_format.safe(s.session_id)}{name}"


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
    children: dict[str | None, list[StoredSpan]] = {}
    for span in trace.spans:  # already in start order, so siblings come out in start order
        if span.parent_span_id is not None and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)
    # A span only a parent cycle hides is printed as a root rather than dropped.
    for span, depth in depth_first(trace.roots, children, trace.spans, depth=1, lost_depth=1):
        lines.extend(_span_lines(span, depth, session_id))
    return lines


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
