"""The ``sessiontrace`` command: parse arguments, open the store, run a command, map errors."""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO, cast

from sessiontrace._version import __version__
from sessiontrace.cli import (
    _doctor,
    _format,
    _migrate,
    _prune,
    _replay,
    _sessions,
    _show,
    _timeline,
    _ui,
)
from sessiontrace.cli._errors import CommandError
from sessiontrace.store import (
    DEFAULT_STORE_PATH,
    SessionNotFoundError,
    SessionStore,
    StoreAccessError,
    StoreFormatError,
    StoreNotFoundError,
)
from sessiontrace.store._schema import SchemaVersionError

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
    a traceback. A stored row that cannot be read whole is one warning line on ``stderr``
    and the rest is shown. Everything written passes through ``_format.safe``: no control
    or bidi character from the store reaches the terminal raw.

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
    raw_out = sys.stdout if stdout is None else stdout
    raw_err = sys.stderr if stderr is None else stderr
    out, err = _SafeStream.around(raw_out), _SafeStream.around(raw_err)
    try:
        return _run(argv, out, err, raw_err)
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`sessiontrace sessions | head`): stop quietly.
        _discard_stdout(raw_out)
        return 1


class _SafeStream(io.TextIOBase):
    """The last line of defence: whatever is written has its control characters escaped.

    Each command escapes the text it takes from the store field by field (so a newline in a
    span name cannot forge a line); this wrapper keeps newlines and escapes everything else
    that is left, so a field a command forgot still cannot reach the terminal raw.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    @classmethod
    def around(cls, stream: TextIO) -> TextIO:
        # io.TextIOBase provides what the commands use (write, flush, isatty); typing's
        # TextIO is a separate nominal class, hence the cast.
        return cast(TextIO, cls(stream))

    def write(self, text: str) -> int:
        escaped = _format.safe(text, newlines=True)
        try:
            self._stream.write(escaped)
        except UnicodeEncodeError:
            # A terminal that cannot show some character (PYTHONIOENCODING=ascii, a Latin-1
            # console): write it as an escape rather than fail with a traceback.
            encoding = getattr(self._stream, "encoding", None) or "ascii"
            self._stream.write(escaped.encode(encoding, "backslashreplace").decode(encoding))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (AttributeError, ValueError):
            return False


def _run(argv: list[str] | None, out: TextIO, err: TextIO, raw_err: TextIO) -> int:
    parser = _parser()
    try:
        # argparse prints help, usage and errors to sys.stdout/sys.stderr itself.
        with redirect_stdout(out), redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.stderr = err  # warnings a command prints beside its output
    args.progress = raw_err  # `doctor`'s progress line, which needs its own carriage returns
    store_path = args.store or os.environ.get(STORE_PATH_ENV) or DEFAULT_STORE_PATH
    try:
        if getattr(args, "writes", False):  # migrate, prune: they open the file themselves
            writer_code: int = args.run(args, Path(store_path).expanduser().absolute(), out)
            return writer_code
        with SessionStore(store_path) as store:
            for note in store.notes:
                err.write(f"sessiontrace: note: {_format.safe(note)}\n")
            try:
                code: int = args.run(args, store, out)
            finally:
                for bad in store.bad_rows:
                    err.write(f"sessiontrace: warning: {_format.safe(bad.message)}\n")
            return code
    except (StoreNotFoundError, StoreFormatError, StoreAccessError, SchemaVersionError) as exc:
        return _fail(err, str(exc), EXIT_USAGE)
    except SessionNotFoundError as exc:
        return _fail(err, str(exc), EXIT_NOT_FOUND)
    except CommandError as exc:
        return _fail(err, str(exc), exc.exit_code)
    except sqlite3.Error as exc:
        return _fail(
            err,
            f"could not read the store at {store_path}: {exc}; if another program holds it "
            "locked, try again when it is done; if the file is damaged, check it with "
            "`sqlite3 PATH 'PRAGMA integrity_check'` and pass --store PATH to a good copy",
            EXIT_USAGE,
        )


def _fail(err: TextIO, message: str, code: int) -> int:
    err.write(f"sessiontrace: error: {_format.safe(message)}\n")
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
    _prune.register(subparsers, [common])
    _migrate.register(subparsers, [common])
    _ui.register(subparsers, [common])
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
