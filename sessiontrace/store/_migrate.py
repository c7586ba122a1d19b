"""Upgrade a store written by an older sessiontrace to the current layout, in place.

Versions 1 and 2 kept everything a reader queried inside each span's attribute JSON, and
had no summary tables. The upgrade adds the query columns (no row is rewritten for that),
fills them in from each span's attributes in chunks of :data:`CHUNK_ROWS`, one transaction
each, then builds the summary tables and records the new version. It can be interrupted at
any point: the version is written last, so the next open starts it again, and every step is
safe to repeat. Run by the store exporter when it meets an older file, and by
``sessiontrace migrate``.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sessiontrace.store import _summaries
from sessiontrace.store._columns import derive
from sessiontrace.store._errors import StoreFormatError, StoreNotFoundError
from sessiontrace.store._opening import layout_of
from sessiontrace.store._schema import (
    BUSY_TIMEOUT_SECONDS,
    QUERY_COLUMNS,
    SCHEMA_VERSION,
    OldSchemaError,
    SchemaVersionError,
    _use_wal,
    add_query_columns,
    drop_summaries,
    ensure_schema,
    summaries_current,
    tune_writer,
)

CHUNK_ROWS = 5000
"""Spans filled in per transaction: other writers wait at most one chunk."""

PROGRESS_INTERVAL_SECONDS = 1.0
"""How often, at most, ``progress`` is called while the columns are filled in."""

Progress = Callable[[int, int], None]

_UPDATE = f"UPDATE spans SET {', '.join(f'{name} = ?' for name in QUERY_COLUMNS)} WHERE rowid = ?"


def migrate(conn: sqlite3.Connection, progress: Progress | None = None) -> int:
    """Bring the store on ``conn`` (autocommit mode) to :data:`SCHEMA_VERSION`.

    Args:
        conn: A writable connection in autocommit mode (``isolation_level=None``).
        progress: Called as ``progress(done, total)`` with span counts, at most once a second
            while the columns are filled in, and once at the end.

    Returns:
        The layout version the store had (the current one when there was nothing to do).

    Raises:
        SchemaVersionError: If the store was written by a newer sessiontrace.
        sqlite3.Error: If SQLite cannot read or write the file.

    Example:
        >>> conn = sqlite3.connect(":memory:", isolation_level=None)
        >>> from sessiontrace.store._schema import ensure_schema
        >>> ensure_schema(conn)
        >>> migrate(conn) == SCHEMA_VERSION
        True
    """
    version = _version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the store has layout version {version}, newer than this sessiontrace "
            f"understands ({SCHEMA_VERSION}); upgrade sessiontrace or use another --store"
        )
    if version == SCHEMA_VERSION:
        if not summaries_current(conn):  # derived data of another shape: recount it
            _in_transaction(conn, lambda: _rebuild_summaries(conn))
            if progress is not None:
                count = int(conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0])
                progress(count, count)
        return version
    _in_transaction(conn, lambda: add_query_columns(conn))
    total = int(conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0])
    text_factory = conn.text_factory
    conn.text_factory = _lenient_text  # one row that is not UTF-8 must not stop the upgrade
    try:
        done = _fill_columns(conn, total, progress)
    finally:
        conn.text_factory = text_factory

    def finish() -> None:
        _rebuild_summaries(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    _in_transaction(conn, finish)
    if progress is not None:
        progress(done, total)
    return version


def _fill_columns(conn: sqlite3.Connection, total: int, progress: Progress | None) -> int:
    done, last_rowid, reported = 0, -(2**63), time.monotonic()
    while True:
        rows = conn.execute(
            "SELECT rowid, attributes FROM spans WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last_rowid, CHUNK_ROWS),
        ).fetchall()
        if not rows:
            break
        updates = [(*derive(_attributes(raw))[1], rowid) for rowid, raw in rows]
        _in_transaction(conn, functools.partial(conn.executemany, _UPDATE, updates))
        done += len(rows)
        last_rowid = rows[-1][0]
        if progress is not None and time.monotonic() - reported >= PROGRESS_INTERVAL_SECONDS:
            reported = time.monotonic()
            progress(done, total)
    return done


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _rebuild_summaries(conn: sqlite3.Connection) -> None:
    drop_summaries(conn)
    _summaries.rebuild_all(conn)


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _in_transaction(conn: sqlite3.Connection, work: Callable[[], object]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        work()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _attributes(raw: object) -> dict[str, object]:
    # A row another program damaged keeps empty query columns rather than stopping the upgrade.
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def open_writable(
    path: str | os.PathLike[str], progress: Progress | None = None
) -> sqlite3.Connection:
    """A writable autocommit connection to the store at ``path``, created or upgraded as
    needed (``progress`` as for :func:`migrate`), with the writer's pragmas set.

    Raises:
        SchemaVersionError: If the store was written by a newer sessiontrace.
        sqlite3.Error: If SQLite cannot read or write the file.
    """
    conn = sqlite3.connect(
        Path(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )
    try:
        try:
            ensure_schema(conn)
        except OldSchemaError:
            migrate(conn, progress)
        tune_writer(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate_store(path: str | os.PathLike[str], progress: Progress | None = None) -> int:
    """Upgrade the store file at ``path`` in place; returns the layout version it had.

    Raises:
        StoreNotFoundError: If there is no file at ``path``.
        StoreFormatError: If the file is not a sessiontrace store (it is left unchanged).
        SchemaVersionError: If the store was written by a newer sessiontrace.
        sqlite3.Error: If SQLite cannot read or write the file.

    Example:
        >>> migrate_store("/tmp/sessiontrace-example.db")  # doctest: +SKIP
        3
    """
    target = Path(path).expanduser().absolute()
    if not target.is_file():
        raise StoreNotFoundError(target)
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        _check_is_store(conn, target)  # before WAL mode: another program's file stays as it is
        _use_wal(conn)
        return migrate(conn, progress)
    finally:
        conn.close()


def _check_is_store(conn: sqlite3.Connection, path: Path) -> None:
    version, has_spans = layout_of(path, conn)
    if version <= SCHEMA_VERSION and (version < 1 or not has_spans):
        raise StoreFormatError(
            f"{path} is not a sessiontrace store (it has no spans table, or no layout "
            "version); nothing was changed. Pass --store PATH to point at one"
        )
