"""The ``sessiontrace`` command: parse arguments, open the store, run a command, map errors."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import TextIO

from sessiontrace._version import __version__
from sessiontrace.cli import _doctor, _replay, _sessions, _show, _timeline
from sessiontrace.cli._errors import CommandError
from sessiontrace.store import (
    DEFAULT_STORE_PATH,
    SessionNotFoundError,
    SessionStore,
    StoreFormatError,
    StoreNotFoundError,
)

# The same variable configure() reads, so the CLI finds what the program wrote.
STORE_PATH_ENV = "SESSIONTRACE_STORE_PATH"

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(
    argv: list[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the ``sessiontrace`` command line and return its exit code.

    Exit codes: 0 success; 1 unknown session id (or none yet for ``latest``), or ``doctor``
    found problems; 2 bad usage, no readable store, or a ``timeline --html`` file that cannot
    be written; 130 interrupted (Ctrl-C). Expected errors print one line to ``stderr``, never
    a traceback.

    Args:
        argv: The arguments after the program name; ``None`` reads ``sys.argv[1:]``.
        stdout: Where output goes; ``None`` means ``sys.stdout``.
        stderr: Where errors go; ``None`` means ``sys.stderr``.

    Returns:
        The process exit code.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> main(["--version"], stdout=out)
        0
        >>> out.getvalue().startswith("sessiontrace ")
        True
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        return _run(argv, out, err)
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`sessiontrace sessions | head`): stop quietly.
        _discard_stdout(out)
        return 1


def _run(argv: list[str] | None, out: TextIO, err: TextIO) -> int:
    parser = _parser()
    try:
        # argparse prints help, usage and errors to sys.stdout/sys.stderr itself.
        with redirect_stdout(out), redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.stderr = err  # for progress lines (`doctor` over every session)
    store_path = args.store or os.environ.get(STORE_PATH_ENV) or DEFAULT_STORE_PATH
    try:
        with SessionStore(store_path) as store:
            code: int = args.run(args, store, out)
            return code
    except (StoreNotFoundError, StoreFormatError) as exc:
        return _fail(err, str(exc), EXIT_USAGE)
    except SessionNotFoundError as exc:
        return _fail(err, str(exc), EXIT_NOT_FOUND)
    except CommandError as exc:
        return _fail(err, str(exc), exc.exit_code)
    except sqlite3.Error as exc:
        return _fail(err, f"could not read the store at {store_path}: {exc}", EXIT_USAGE)


def _fail(err: TextIO, message: str, code: int) -> int:
    err.write(f"sessiontrace: error: {message}\n")
    return code


def _parser() -> argparse.ArgumentParser:
    store_help = f"the store's SQLite file (default: ${STORE_PATH_ENV}, else {DEFAULT_STORE_PATH})"
    parser = argparse.ArgumentParser(
        prog="sessiontrace",
        description="Browse the sessions your program wrote to the local sessiontrace store.",
    )
    parser.add_argument("--version", action="version", version=f"sessiontrace {__version__}")
    parser.add_argument("--store", metavar="PATH", help=store_help)
    # Also accepted after the command (`sessiontrace show ID --store PATH`); SUPPRESS keeps
    # the subcommand from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS, help=store_help)
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    _sessions.register(subparsers, [common])
    _show.register(subparsers, [common])
    _replay.register(subparsers, [common])
    _timeline.register(subparsers, [common])
    _doctor.register(subparsers, [common])
    return parser


def _discard_stdout(out: TextIO) -> None:
    # Point the real stdout at devnull, so the interpreter's final flush does not print a
    # second BrokenPipeError at exit. An injected stream is left alone.
    if out is not sys.stdout:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
