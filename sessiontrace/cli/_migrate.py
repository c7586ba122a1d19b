"""``sessiontrace migrate``: upgrade a store written by an older sessiontrace, in place."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TextIO

from sessiontrace.cli import _format
from sessiontrace.store._migrate import migrate_store
from sessiontrace.store._schema import SCHEMA_VERSION


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``migrate`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "migrate",
        parents=parents,
        help="upgrade a store written by an older sessiontrace to the current layout",
        description="Upgrade the store in place to the current layout (version "
        f"{SCHEMA_VERSION}): add the query columns, fill them in from each span, and build "
        "the sessions summary. Safe to interrupt and run again; programs may keep writing "
        "to the store meanwhile (they wait at most one chunk). A store already current is "
        "left as it is.",
    )
    parser.set_defaults(run=run, writes=True)


def run(args: argparse.Namespace, path: Path, out: TextIO) -> int:
    """Migrate the store at ``path``, with a progress line on stderr; returns the exit code."""
    progress: TextIO = args.progress
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        share = 100 * done // total if total else 100
        progress.write(f"\rmigrating {_format.safe(path)}: {done:,} of {total:,} spans ({share}%)")
        progress.flush()

    before = migrate_store(path, report)
    if before == SCHEMA_VERSION:
        out.write(f"The store at {_format.safe(path)} is already at layout {SCHEMA_VERSION}.\n")
        return 0
    progress.write("\n")
    seconds = time.monotonic() - started
    out.write(
        f"Upgraded the store at {_format.safe(path)} from layout {before} to {SCHEMA_VERSION} "
        f"in {seconds:.1f} s.\n"
    )
    return 0
