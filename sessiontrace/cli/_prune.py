"""``sessiontrace prune``: remove whole sessions, oldest first, by age or by size."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from sessiontrace._units import AGE_HELP, SIZE_HELP, parse_age, parse_size
from sessiontrace.cli import _format
from sessiontrace.cli._errors import CommandError
from sessiontrace.store._retention import PruneReport, prune


def _age(text: str) -> float:
    try:
        return parse_age(text, "--older-than")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text, "--max-size")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``prune`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "prune",
        parents=parents,
        help="remove old sessions (whole, with their sub-sessions), oldest first",
        description="Remove whole sessions from the store, each with all of its "
        "sub-sessions, never a part of one: first those whose last span ended longer ago "
        "than --older-than, then the oldest until the store fits in --max-size. Traces "
        "without any session count as one unit each. Programs may keep writing meanwhile. "
        "The same limits apply in the background with configure(store_max_age=..., "
        "store_max_bytes=...) or SESSIONTRACE_STORE_MAX_AGE / SESSIONTRACE_STORE_MAX_BYTES.",
    )
    parser.add_argument("--older-than", type=_age, metavar="AGE", help=AGE_HELP)
    parser.add_argument("--max-size", type=_size, metavar="SIZE", help=SIZE_HELP)
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be removed, remove nothing"
    )
    parser.set_defaults(run=run, writes=True)


def run(args: argparse.Namespace, path: Path, out: TextIO) -> int:
    """Prune the store at ``path`` and print what was removed; returns the exit code."""
    if args.older_than is None and args.max_size is None:
        raise CommandError(
            "give --older-than AGE, --max-size SIZE, or both (see --help)", exit_code=2
        )
    report = prune(path, older_than=args.older_than, max_bytes=args.max_size, dry_run=args.dry_run)
    out.write(describe(report, path) + "\n")
    return 0


def describe(report: PruneReport, path: Path) -> str:
    """One or two sentences saying what a prune removed (or would remove)."""
    where = _format.safe(path)
    if not report.sessions_removed and not report.traces_removed:
        return f"Nothing to remove from {where} ({_megabytes(report.bytes_before)} on disk)."
    verb = "Would remove" if report.dry_run else "Removed"
    parts = [f"{report.sessions_removed:,} session{'s' if report.sessions_removed != 1 else ''}"]
    if report.traces_removed:
        parts.append(f"{report.traces_removed:,} trace{'s' if report.traces_removed != 1 else ''}"
                     " without a session")
    span = f"{report.spans_removed:,} span{'s' if report.spans_removed != 1 else ''}"
    active = ""
    if report.oldest_removed is not None and report.newest_removed is not None:
        active = (
            f", last active {_format.local_time(report.oldest_removed)} to "
            f"{_format.local_time(report.newest_removed)}"
        )
    size = (
        f"{_megabytes(report.bytes_before)} on disk"
        if report.dry_run
        else f"{_megabytes(report.bytes_before)} -> {_megabytes(report.bytes_after)} on disk"
    )
    return f"{verb} {' and '.join(parts)} ({span}{active}) from {where}: {size}."


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"
