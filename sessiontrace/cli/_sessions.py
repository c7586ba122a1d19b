"""``sessiontrace sessions``: list the sessions in the store, the most recently active first."""

from __future__ import annotations

import argparse
from typing import TextIO

from sessiontrace.cli import _format, _losses
from sessiontrace.store import SessionStore, SessionSummary

HEADERS = ("SESSION", "USER", "TRACES", "SPANS", "FIRST SEEN", "DURATION", "TOKENS P/C/T", "ERRORS")
_NUMERIC = {2, 3, 5, 6, 7}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``sessions`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "sessions",
        parents=parents,
        help="list sessions, the most recently active first",
        description="List the sessions in the store, the most recently active first. "
        "Token counts are prompt/completion/total; '-' means no span reported them. After the "
        "list, one line per stretch of spans the export path dropped (or values it repaired), "
        "with the cause and the fix.",
    )
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="show at most N sessions")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list instead (dropped spans then go to stderr, one line each)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Print the session table (or JSON list) for ``store``; returns the exit code."""
    summaries = store.sessions(limit=args.limit)
    losses = [_losses.line(run) for run in _losses.merge(store.losses())]
    if args.json:
        # The list stays the whole of stdout (scripts read it as it was); the losses go to
        # stderr, and `doctor --json` has them as data.
        out.write(_format.dump_json([s.model_dump(mode="json") for s in summaries]) + "\n")
        for text in losses:
            args.stderr.write(f"sessiontrace: warning: {text}\n")
        return 0
    if not summaries:
        out.write(f"No sessions in the store at {_format.safe(store.path)}.\n")
    else:
        out.write(_table(summaries) + "\n")
    if losses:
        out.write("\n" + "\n".join(losses) + "\n")
    return 0


def _table(summaries: list[SessionSummary]) -> str:
    rows = [
        [
            _format.safe(s.session_id),
            _format.safe(s.user_id or "-"),
            str(s.trace_count),
            str(s.span_count),
            _format.local_time(s.first_start),
            _format.duration(s.duration_seconds),
            _format.tokens(s.prompt_tokens, s.completion_tokens, s.total_tokens),
            str(s.error_count),
        ]
        for s in summaries
    ]
    return _format.table(HEADERS, rows, _NUMERIC)
