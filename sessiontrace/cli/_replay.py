"""``sessiontrace replay``: a session step by step, with state, LLM calls and sub-sessions."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from sessiontrace import _keys
from sessiontrace._usage import model_name
from sessiontrace.cli import _format
from sessiontrace.cli._view import (
    MAX_DEPTH,
    Run,
    family_fields,
    fields,
    find,
    kind_of,
    load,
    span_tree,
)
from sessiontrace.store import SessionStore, StoredSpan, StoredStep

PREVIEW_CHARS = 200
"""The longest a request, response or input/output preview may be without ``--full``."""

_INDENT = "  "


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``replay`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "replay",
        parents=parents,
        help="replay one session step by step: state, LLM calls, sub-sessions, summary",
        description="Replay a session step by step: each step's duration, tokens and models, "
        "its state snapshot, the request and response of each LLM call, the sub-sessions it "
        "started, then the run's summary: its status, steps and duration, and the stored "
        "totals (its own, and with sub-sessions the totals including them, as `sessions` "
        "and `show` print them). A session recorded without a SessionTracker is replayed "
        "one trace per step.",
    )
    parser.add_argument(
        "session_id",
        metavar="SESSION_ID",
        help="as listed by `sessions`, or `latest` for the first session it lists",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"print requests, responses, inputs and outputs whole (default: the first "
        f"{PREVIEW_CHARS} characters, on one line)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Print one session's replay (text or JSON) from ``store``; returns the exit code."""
    loaded = load(store, find(store, args.session_id).session_id)
    if args.json:
        out.write(_format.dump_json(_document(loaded)) + "\n")
        return 0
    lines = _header(loaded)
    lines.extend(_run_lines(loaded, full=args.full, depth=0))
    lines.append("")
    lines.extend(_summary_lines(loaded))
    out.write("\n".join(lines) + "\n")
    return 0


# --- text --------------------------------------------------------------------------------


def _header(run: Run) -> list[str]:
    s = run.session
    count = str(len(run.steps))
    if not run.tracked:
        count += " (one per trace: no SessionTracker steps in this session)"
    labelled: list[tuple[str, str | list[str]]] = [
        ("user", _format.safe(s.user_id or "-")),
        ("started", _format.local_time(s.first_start)),
        ("steps", count),
        *family_fields(s),
    ]
    return [_title(run), *fields(labelled)]


def _title(run: Run, word: str = "Session") -> str:
    name = f": {_format.safe(run.name)}" if run.name else ""
    return f"{word} {_format.safe(run.session.session_id)}{name}"


def _run_lines(run: Run, *, full: bool, depth: int) -> list[str]:
    indent = _INDENT * depth * 2
    lines: list[str] = []
    previous: dict[str, Any] | None = None
    for step in run.steps:
        lines.append("")
        lines.extend(_step_lines(step, previous, indent, full=full))
        if step.state is not None:
            previous = step.state
        for child in step.children:
            lines.extend(_child_lines(run, child, indent + _INDENT, full=full, depth=depth))
    if run.outside:
        lines.append("")
        lines.append(f"{indent}Outside any step")
        for span in run.outside:
            lines.extend(_span_lines(span, indent + _INDENT, full=full))
    for child in run.loose:
        lines.append("")
        lines.append(f"{indent}{_INDENT}(started outside any step)")
        lines.extend(_child_lines(run, child, indent + _INDENT, full=full, depth=depth))
    return lines


def _child_lines(run: Run, child_id: str, indent: str, *, full: bool, depth: int) -> list[str]:
    child = run.sub.get(child_id)
    shown = _format.safe(child_id)
    if child is None:
        return [
            "",
            f"{indent}Sub-session {shown}: not shown below {MAX_DEPTH} levels "
            f"(run `sessiontrace replay {shown}`)",
        ]
    lines = ["", indent + _title(child, "Sub-session")]
    lines.extend(_run_lines(child, full=full, depth=depth + 1))
    lines.extend(_one_line_summary(child, indent + _INDENT))
    return lines


def _step_lines(
    step: StoredStep, previous: dict[str, Any] | None, indent: str, *, full: bool
) -> list[str]:
    parts = [f"Step {step.index}" + (f": {_format.safe(step.name)}" if step.name else "")]
    parts.append(_format.milliseconds(step.duration_ms))
    parts.append(_format.status(step.status, step.status_message))
    if step.total_tokens is not None:
        counts = _format.tokens(step.prompt_tokens, step.completion_tokens, step.total_tokens)
        parts.append(f"tokens {counts}")
    if step.models:
        models = ", ".join(_format.safe(model) for model in step.models)
        parts.append(("model " if len(step.models) == 1 else "models ") + models)
    lines = [indent + "  ".join(parts)]
    inner = indent + _INDENT
    if step.state is not None:
        changes = " ".join(
            marker + _format.safe(key)
            for marker, key in _format.state_changes(previous, step.state)
        )
        lines.append(f"{inner}state" + (f"  {changes}" if changes else "  (unchanged)"))
        pretty = json.dumps(step.state, indent=2, ensure_ascii=False, default=str)
        lines.extend(inner + _INDENT + _format.safe(line) for line in _format.lines(pretty))
    tree = span_tree(step)
    top = 0  # the depth of the spans listed flush under the step header
    if step.span is not None:
        lines.extend(_io_lines(step.span, inner, full=full))
        tree, top = tree[1:], 1
    for span, depth in tree:
        lines.extend(_span_lines(span, inner + _INDENT * (depth - top), full=full))
    return lines


def _span_lines(span: StoredSpan, indent: str, *, full: bool) -> list[str]:
    parts = [
        f"- {_format.safe(span.name)}",
        _format.safe(kind_of(span)),
        _format.milliseconds(span.duration_ms),
    ]
    if _format.status_word(span.status_code) != "ok":
        parts.append(_format.status(span.status_code, span.status_message))
    if span.total_tokens is not None:
        counts = _format.tokens(span.prompt_tokens, span.completion_tokens, span.total_tokens)
        parts.append(f"tokens {counts}")
    model = model_name(span.attributes)
    if model:
        parts.append(f"model {_format.safe(model)}")
    return [indent + "  ".join(parts), *_io_lines(span, indent + _INDENT * 2, full=full)]


def _io_lines(span: StoredSpan, indent: str, *, full: bool) -> list[str]:
    llm = kind_of(span) == "LLM"
    labels = ("request:", "response:") if llm else ("in:", "out:")
    width = max(len(label) for label in labels)
    lines = []
    for label, key in zip(labels, (_keys.OI_INPUT_VALUE, _keys.OI_OUTPUT_VALUE), strict=True):
        value = span.attributes.get(key)
        if value is None:
            continue
        if not full:
            lines.append(f"{indent}{label.ljust(width)} {_format.preview(value, PREVIEW_CHARS)}")
            continue
        lines.append(f"{indent}{label}")
        lines.extend(
            f"{indent}{_INDENT}{_format.safe(line)}"
            for line in _format.lines(_format.full_text(value))
        )
    return lines


def _summary_lines(run: Run) -> list[str]:
    head = "Summary"
    if run.summary is None:
        note = (
            "the run has not ended, or ended without writing its summary"
            if run.tracked
            else "no SessionTracker summary"
        )
        head = f"Summary ({note})"
    s = run.session
    labelled: list[tuple[str, str | list[str]]] = [
        ("status", _format.status_word(s.status)),
        ("steps", str(_step_count(run))),
        ("duration", _format.duration(s.duration_seconds)),
        ("totals", _format.totals_lines(s)),
    ]
    priced = run.tracker_cost()
    if priced is not None:
        labelled.append(("cost", f"{_format.cost(priced)} ({run.priced_by})"))
    disagreement = run.tracker_note()
    if disagreement is not None:
        labelled.append(("note", disagreement))
    return [head, *fields(labelled)]


def _one_line_summary(run: Run, indent: str) -> list[str]:
    """A sub-session's summary: status, steps and duration, then its totals, as in `show`."""
    s = run.session
    parts = [
        _format.status_word(s.status),
        _format.plural(_step_count(run), "step"),
        _format.duration(s.duration_seconds),
    ]
    own, *below = _format.totals_lines(s)
    priced = run.tracker_cost()
    cost = f"; cost {_format.cost(priced)} ({run.priced_by})" if priced is not None else ""
    lines = [f"{indent}Summary: {', '.join(parts)}; {own}{cost}"]
    lines.extend(f"{indent}{_INDENT}{line}" for line in below)
    return lines


def _step_count(run: Run) -> int:
    # The tracker's count once it ended: a step whose spans were all lost still counts.
    return run.summary.steps if run.summary is not None else len(run.steps)


# --- JSON --------------------------------------------------------------------------------


def _document(run: Run) -> dict[str, Any]:
    def step_document(step: StoredStep) -> dict[str, Any]:
        document = step.model_dump(mode="json")
        document["sub_sessions"] = [_document(run.sub[c]) for c in step.children if c in run.sub]
        return document

    return {
        "session": run.session.model_dump(mode="json"),
        "tracked": run.tracked,
        "summary": run.summary.model_dump(mode="json") if run.summary else None,
        "steps": [step_document(step) for step in run.steps],
        "outside_steps": [span.model_dump(mode="json") for span in run.outside],
        "sub_sessions": [_document(run.sub[c]) for c in run.loose if c in run.sub],
    }
