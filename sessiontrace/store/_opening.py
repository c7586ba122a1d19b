"""Open a store for reading: read-only, immutable where SQLite cannot create its -shm file,
and only a file whose layout this version reads (an older one is refused with the command
that upgrades it)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from sessiontrace.store._errors import StoreAccessError, StoreFormatError
from sessiontrace.store._schema import BUSY_TIMEOUT_SECONDS, SCHEMA_VERSION, summaries_current


def open_read_only(path: Path, notes: list[str]) -> sqlite3.Connection:
    """A read-only connection to the store at ``path``; sentences a reader should know about
    how it was opened go to ``notes``.

    Raises:
        StoreAccessError: If this user may not read the file.
        StoreFormatError: If the file is not a store this version reads.
    """
    try:
        return _connect(path, "mode=ro")
    except sqlite3.OperationalError as exc:
        if not os.access(path, os.R_OK):
            raise _access_error(path, f"permission denied reading {path}") from exc
        if getattr(exc, "sqlite_errorname", "") not in _NEEDS_WRITE_ACCESS:
            raise _format_error(path, exc) from exc
        first = exc
    # SQLite reads a WAL store through its -shm index, which it must create when it is
    # missing: impossible in a read-only directory. immutable=1 reads the main file
    # without it; only what is still in the write-ahead log is out of reach.
    wal = path.with_name(path.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    try:
        conn = _connect(path, "mode=ro&immutable=1")
    except (sqlite3.OperationalError, StoreFormatError):
        if pending:
            raise _access_error(path, _wal_sentence(path, wal)) from first
        raise
    if pending:
        notes.append(
            f"{_wal_sentence(path, wal)}: only spans already checkpointed into "
            f"{path.name} are shown; to see the rest, run as a user who may write "
            "that directory, or copy the store with its -wal file to a directory you can "
            "write and pass --store PATH"
        )
    return conn


def _connect(path: Path, flags: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.as_uri()}?{flags}", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        _check_schema(path, conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_schema(path: Path, conn: sqlite3.Connection) -> None:
    # OperationalError (cannot open, read-only directory) goes up to _open, which knows
    # the fallbacks; anything else means the file is not a store.
    version, has_table = layout_of(path, conn)
    if version > SCHEMA_VERSION:
        raise StoreFormatError(
            f"the store at {path} has layout version {version}, newer than this "
            f"sessiontrace reads ({SCHEMA_VERSION}); upgrade sessiontrace"
        )
    if version < 1 or not has_table:
        raise StoreFormatError(
            f"{path} is not a sessiontrace store (it has no spans table); pass "
            "--store PATH to point at one"
        )
    if version < SCHEMA_VERSION:
        raise StoreFormatError(
            f"the store at {path} has layout version {version}, older than this "
            f"sessiontrace reads ({SCHEMA_VERSION}); upgrade it in place with "
            f"`sessiontrace migrate --store {path}`"
        )
    if not summaries_current(conn):
        raise StoreFormatError(
            f"the store at {path} has summary tables of another shape than this sessiontrace "
            f"reads (an earlier sessiontrace wrote it; the spans are all there); rebuild the "
            f"summaries in place with `sessiontrace migrate --store {path}` (or let a program "
            "that writes to it open it once)"
        )


def layout_of(path: Path, conn: sqlite3.Connection) -> tuple[int, bool]:
    """The file's layout version, and whether it has a ``spans`` table.

    Raises:
        StoreFormatError: If SQLite cannot read the file as a database at all.
        sqlite3.OperationalError: If it cannot open it (the caller knows the fallbacks).
    """
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spans'"
        ).fetchone()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise _format_error(path, exc) from exc
    return version, has_table is not None


def _format_error(path: Path, exc: sqlite3.Error) -> StoreFormatError:
    return StoreFormatError(
        f"{path} is not a sessiontrace store SQLite can open ({exc}); pass --store "
        "PATH to point at one"
    )


def _access_error(path: Path, cause: str) -> StoreAccessError:
    return StoreAccessError(
        errno.EACCES,
        f"{cause}; run as the user that wrote the store, or copy the store (with its "
        "-wal file, if any) to a directory you can write and pass --store PATH",
        str(path),
    )


def _wal_sentence(path: Path, wal: Path) -> str:
    return (
        f"the newest spans are in {wal.name}, which SQLite reads only with write access "
        f"to {path.parent} (to create {path.name}-shm beside it)"
    )


_NEEDS_WRITE_ACCESS = frozenset(
    {
        "SQLITE_READONLY_DIRECTORY",
        "SQLITE_READONLY_CANTINIT",
        "SQLITE_READONLY_RECOVERY",
        "SQLITE_READONLY",
        "SQLITE_CANTOPEN",
    }
)
