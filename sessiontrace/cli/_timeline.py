"""``sessiontrace timeline``: one session drawn as a self-contained HTML timeline.

The command finds and loads the session (``_view.py``), draws it (``_timeline_html.py``, on
the axis and bar kinds of ``_timeline_model.py``) and writes the page to a file or stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from sessiontrace.cli import _format
from sessiontrace.cli._errors import CommandError
from sessiontrace.cli._timeline_html import render
from sessiontrace.cli._view import find, load
from sessiontrace.store import SessionStore

_STDOUT = "-"


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Add the ``timeline`` command to the CLI's parser."""
    parser = subparsers.add_parser(
        "timeline",
        parents=parents,
        help="draw one session as a self-contained HTML timeline",
        description="Write one session as a single HTML file (no network, no external files): "
        "one lane per step, span bars to scale on a shared time axis, the state keys each "
        "step changed, tokens and duration per step, and sub-sessions nested under their "
        "step. Hover a bar for its name, duration, tokens, input and output.",
    )
    parser.add_argument(
        "session_id",
        metavar="SESSION_ID",
        help="as listed by `sessions`, or `latest` for the most recently active one",
    )
    parser.add_argument(
        "--html",
        required=True,
        metavar="FILE",
        help="the HTML file to write (replaced if it exists); '-' writes to standard output",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, store: SessionStore, out: TextIO) -> int:
    """Write the timeline of one session to ``args.html``; prints the path written."""
    page = render(load(store, find(store, args.session_id).session_id))
    if args.html == _STDOUT:
        out.write(page)
        return 0
    path = Path(args.html).expanduser().absolute()
    try:
        path.write_text(_format.safe(page, newlines=True), encoding="utf-8")
    except OSError as exc:
        raise CommandError(
            f"could not write the timeline to {path}: {exc.strerror or exc}; pass --html with "
            "a file in a directory you can write",
            exit_code=2,
        ) from exc
    out.write(f"{path}\n")
    return 0
