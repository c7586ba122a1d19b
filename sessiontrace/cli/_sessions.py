"""``sessiontrace sessions``: list the sessions, newest first, each sub-session under its parent."""

from __future__ import annotations

import argparse
from typing import TextIO

from sessiontrace.cli import _format, _losses
from sessiontrace.cli._families import Listed, families
from sessiontrace.store import SessionStore

HEADERS = (
    "SESSION",
    "NAME",
    "STATUS",
    "USER",
    "TRACES",
    "SPANS",
    "FIRST SEEN",
    "DURATION",
    "TOKENS P/C/T",
    "COST",
    "ERRORS",
)
_NUMERIC = {4, 5, 7, 8, 9, 10}
_COST = HEADERS.index("COST")


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
        help="list sessions, the most recently active first, sub-sessions under their parent",
        description="List the sessions in the store, the most recently active first, each "
        "sub-session indented under its parent, with a row of totals including the "
        "sub-sessions. Token counts are prompt/completion/total; '-' means no span reported "
        "them. After the list, one line per stretch of spans the export path dropped (or "
        "values it repaired), with the cause and the fix.",
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="show the N most recent top-level sessions, each with its sub-sessions "
        "(with --json: the N most recent sessions of any level)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a flat JSON list instead (dropped spans then go to stderr, one line each)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Print the session table (or JSON list) for ``store``; returns the exit code."""
    if args.json:
        summaries = store.sessions(limit=args.limit)
        losses = [_losses.line(run) for run in _losses.merge(store.losses())]
        # The list stays the whole of stdout (scripts read it as it was); the losses go to
        # stderr, and `doctor --json` has them as data.
        out.write(_format.dump_json([s.model_dump(mode="json") for s in summaries]) + "\n")
        for text in losses:
            args.stderr.write(f"sessiontrace: warning: {text}\n")
        return 0
    listed = families(store, limit=args.limit)
    losses = [_losses.line(run) for run in _losses.merge(store.losses())]
    if not listed:
        out.write(f"No sessions in the store at {_format.safe(store.path)}.\n")
    else:
        out.write(_table(listed) + "\n")
    if losses:
        out.write("\n" + "\n".join(losses) + "\n")
    return 0


def _table(listed: list[Listed]) -> str:
    rows: list[list[str]] = []
    for row in listed:
        s = row.summary
        rows.append(
            [
                row.lead + _format.safe(s.session_id),
                _format.safe(s.name or "-"),
                _format.status_word(s.status),
                _format.safe(s.user_id or "-"),
                str(s.trace_count),
                str(s.span_count),
                _format.local_time(s.first_start),
                _format.duration(s.duration_seconds),
                _format.tokens(s.prompt_tokens, s.completion_tokens, s.total_tokens),
                _format.cost(s.cost_usd),
                str(s.error_count),
            ]
        )
        below, count = s.with_subsessions, _format.subsession_count(s)
        # The totals with sub-sessions go above the rows they add up.
        if below is not None and count and row.has_rows_below:
            counts = (below.prompt_tokens, below.completion_tokens, below.total_tokens)
            rows.append(
                [
                    row.under + _format.with_subsessions_label(count),
                    "",
                    "",
                    "",
                    str(below.trace_count),
                    str(below.span_count),
                    "",
                    "",
                    _format.tokens(*counts),
                    _format.cost(below.cost_usd),
                    str(below.error_count),
                ]
            )
    headers = list(HEADERS)
    numeric = set(_NUMERIC)
    if all(row[_COST] in ("-", "") for row in rows):  # no span reported a cost: no column
        headers.pop(_COST)
        for cells in rows:
            cells.pop(_COST)
        numeric = {column - (column > _COST) for column in numeric if column != _COST}
    return _format.table(headers, rows, numeric)
