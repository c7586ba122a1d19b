"""``sessiontrace doctor``: find spans that lost their session, with the likely cause and fix."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from sessiontrace.cli import _format, _losses
from sessiontrace.cli._view import find
from sessiontrace.store import (
    BadRow,
    Diagnosis,
    Problem,
    ProblemSpan,
    SessionStore,
    diagnose,
)
from sessiontrace.store._doctor_scan import SessionSweep

EXIT_CLEAN = 0
EXIT_PROBLEMS = 1

PROGRESS_INTERVAL_SECONDS = 1.0
"""How often, at most, a progress line goes to stderr while checking every session."""

MAX_SPANS_SHOWN = 10
"""The most spans listed under one problem in text output (``--json`` lists all)."""

_INDENT = "  "


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``doctor`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "doctor",
        parents=parents,
        help="check sessions for spans that lost the session id, with causes and fixes",
        description="Check a session's traces (every session's, without SESSION_ID) for "
        "spans without the session in a trace whose other spans carry it, roots without it, "
        "and spans whose session keys were dropped or disagree. Each problem names its likely "
        "cause and the sessiontrace API that fixes it. Without SESSION_ID only the sessions "
        "whose stored summaries allow a problem are read span by span. Also reports spans the "
        "export path dropped (for the whole store) and rows that cannot be read whole (among "
        "the spans it read), both problems, and attribute values stored with U+FFFD (a note). "
        "Exit code: 0 when no problem is found, 1 when one is (or the session is not in the "
        "store), 2 for usage and store errors.",
    )
    parser.add_argument(
        "session_id",
        metavar="SESSION_ID",
        nargs="?",
        help="as listed by `sessions`, or `latest` for the most recently active one "
        "(default: every session in the store)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    parser.add_argument(
        "--every-span",
        action="store_true",
        help="without SESSION_ID, read every span of every session, not only the sessions "
        "whose summaries allow a problem: also finds rows another program wrote or damaged "
        "(slow on a big store: every span is decoded)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Print the diagnosis (text or JSON) of one or every session; returns the exit code."""
    err: TextIO | None = getattr(args, "progress", None)
    if err is None:
        err = sys.stderr
    if args.session_id is not None:
        diagnoses = [diagnose(store, find(store, args.session_id).session_id)]
    else:
        diagnoses = list(_diagnose_all(store, err, every_span=args.every_span))
    runs = _losses.merge(store.losses())
    dropped = [run for run in runs if run.kind != _losses.REPAIRED]
    repaired = [run for run in runs if run.kind == _losses.REPAIRED]
    bad_rows = store.bad_rows  # read after diagnosing: the rows it met
    problems = sum(len(found.problems) for found in diagnoses) + len(dropped) + len(bad_rows)
    if args.json:
        document = {
            "sessions_checked": len(diagnoses),
            "problem_count": problems,
            "sessions": [found.model_dump(mode="json") for found in diagnoses],
            "dropped": [run.document() for run in dropped],
            "repaired": [run.document() for run in repaired],
            "bad_rows": [bad.model_dump(mode="json") for bad in bad_rows],
        }
        out.write(_format.dump_json(document) + "\n")
    else:
        if args.session_id is not None:
            lines = _session_lines(diagnoses[0])
        else:
            lines = _all_lines(diagnoses, store)
        if (dropped or bad_rows) and lines[-1].startswith("No problems found in"):
            lines[-1] = "No session problems found in" + lines[-1][len("No problems found in") :]
        lines.extend(_store_lines(dropped, repaired, bad_rows))
        out.write("\n".join(lines) + "\n")
    return EXIT_PROBLEMS if problems else EXIT_CLEAN


def _store_lines(
    dropped: list[_losses.LossRun], repaired: list[_losses.LossRun], bad_rows: tuple[BadRow, ...]
) -> list[str]:
    lines: list[str] = []
    if dropped:
        total = sum(run.count for run in dropped)
        noun = "span" if total == 1 else "spans"
        lines += ["", f"Dropped before they reached a backend: {total:,} {noun}"]
        lines += [f"{_INDENT}- {_losses.line(run)}" for run in dropped]
    if bad_rows:
        lines += ["", f"Rows that cannot be read whole: {len(bad_rows)}"]
        lines += [f"{_INDENT}- {_format.safe(bad.message)}" for bad in bad_rows]
        lines.append(
            f"{_INDENT}fix: these rows were written by something other than sessiontrace, "
            "or the file is damaged: check it with `sqlite3 PATH 'PRAGMA integrity_check'`"
        )
    if repaired:
        lines += ["", "Note (not a problem: the spans were kept):"]
        lines += [f"{_INDENT}- {_losses.line(run)}" for run in repaired]
    return lines


def _diagnose_all(store: SessionStore, err: TextIO, *, every_span: bool) -> Iterator[Diagnosis]:
    # Only the sessions whose summaries allow a problem are decoded (see _doctor_scan.py),
    # unless every_span.
    sweep = SessionSweep(store, every_span=every_span)
    show = _is_terminal(err)
    last = time.monotonic()
    width = 0
    try:
        for position, found in enumerate(sweep, start=1):
            yield found
            now = time.monotonic()
            if show and position < len(sweep) and now - last >= PROGRESS_INTERVAL_SECONDS:
                line = f"sessiontrace doctor: checked {position} of {len(sweep)} sessions"
                err.write("\r" + line.ljust(width))
                err.flush()
                width, last = max(width, len(line)), now
    finally:
        if width:  # clear the progress line before the report (or an error) is printed
            err.write("\r" + " " * width + "\r")
            err.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _session_lines(found: Diagnosis) -> list[str]:
    if found.ok:
        return [
            f"Session {_format.safe(found.session_id)}: no problems found in "
            f"{_plural(found.traces_checked, 'trace')} ({_plural(found.spans_checked, 'span')})"
        ]
    count = len(found.problems)
    affected = len({problem.trace_id for problem in found.problems})
    lines = [
        f"Session {_format.safe(found.session_id)}: {_plural(count, 'problem')} in "
        f"{_plural(affected, 'trace')} (checked {_plural(found.traces_checked, 'trace')}, "
        f"{_plural(found.spans_checked, 'span')})"
    ]
    for number, problem in enumerate(found.problems, start=1):
        lines.append("")
        lines.extend(_problem_lines(number, problem))
    return lines


def _all_lines(diagnoses: list[Diagnosis], store: SessionStore) -> list[str]:
    if not diagnoses:
        return [f"No sessions in the store at {_format.safe(store.path)}: nothing to check."]
    lines: list[str] = []
    for found in diagnoses:
        if not found.ok:
            lines.extend([*_session_lines(found), ""])
    checked = (
        f"{_plural(len(diagnoses), 'session')} "
        f"({_plural(sum(found.traces_checked for found in diagnoses), 'trace')}, "
        f"{_plural(sum(found.spans_checked for found in diagnoses), 'span')})"
    )
    troubled = [found for found in diagnoses if not found.ok]
    if not troubled:
        return [f"No problems found in {checked}."]
    problems = sum(len(found.problems) for found in troubled)
    lines.append(
        f"Checked {checked}: {len(troubled)} with problems, {_plural(problems, 'problem')} in all."
    )
    return lines


def _problem_lines(number: int, problem: Problem) -> list[str]:
    pad = _INDENT * 2
    lines = [
        f"{_INDENT}{number}. {problem.cause}  (trace {_format.safe(problem.trace_id)})",
        f"{pad}{_format.safe(problem.description)}",
        f"{pad}why: {problem.evidence}",
        f"{pad}fix: {problem.fix}",
    ]
    lines.extend(f"{pad}- {_span_line(problem, span)}" for span in problem.spans[:MAX_SPANS_SHOWN])
    hidden = len(problem.spans) - MAX_SPANS_SHOWN
    if hidden > 0:
        lines.append(f"{pad}... and {hidden} more (--json lists them all)")
    return lines


def _span_line(problem: Problem, span: ProblemSpan) -> str:
    parts = [span.name, f"span {span.span_id}", f"scope {span.scope or '-'}"]
    if problem.kind in ("unstamped_root", "unstamped_span"):
        if span.parent_name is not None:
            parts.append(f"parent {span.parent_name}")
        elif span.parent_span_id is not None:
            parts.append(f"parent {span.parent_span_id} (not in the store)")
        else:
            parts.append("root")
    elif problem.kind == "dropped_keys":
        parts.append("has " + ", ".join(span.session_keys))
        parts.append("missing " + ", ".join(span.missing_keys))
    else:
        parts.extend(f"{key}={value!r}" for key, value in span.session_keys.items())
    return "  ".join(_format.safe(part) for part in parts)
