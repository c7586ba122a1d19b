"""The local store's on-disk layout: default path, table definition and schema version.

The store is one SQLite file in WAL mode holding one row per span, and one row per record of
spans the export path dropped or values it repaired (``losses``). ``PRAGMA user_version``
records the layout version, so a newer sessiontrace can migrate an older file and an older
one can refuse a newer file instead of misreading it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

DEFAULT_STORE_PATH = Path(".sessiontrace") / "sessions.db"
"""Where the store lives unless told otherwise, relative to the working directory."""

SCHEMA_VERSION = 2
"""The layout version written to ``PRAGMA user_version`` (2 added the ``losses`` table)."""

# Seconds a connection waits for another writer's lock before giving up.
BUSY_TIMEOUT_SECONDS = 10.0

# Column order shared by the exporter's INSERT and the reader's SELECT.
COLUMNS: tuple[str, ...] = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status_code",
    "status_message",
    "session_id",
    "user_id",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "attributes",
    "resource",
    "scope",
    "events",
)

# Token counts are derived from the attributes when a span is written (one dialect per span,
# see the exporter), so that session totals are a plain SUM rather than a JSON scan.
_CREATE_STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS spans (
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        status_code TEXT NOT NULL,
        status_message TEXT,
        session_id TEXT,
        user_id TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        total_tokens INTEGER,
        attributes TEXT NOT NULL,
        resource TEXT NOT NULL,
        scope TEXT,
        events TEXT NOT NULL,
        PRIMARY KEY (trace_id, span_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS spans_session_id ON spans (session_id)",
    # The primary key (trace_id, span_id) already serves lookups by trace: version 1's
    # separate trace_id index only cost space and ingestion time.
    "DROP INDEX IF EXISTS spans_trace_id",
    # Spans the export path dropped and values it repaired (see sessiontrace/export/_losses.py):
    # count is spans for 'dropped', attribute values for 'repaired'; times are wall-clock ns.
    """
    CREATE TABLE IF NOT EXISTS losses (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        destination TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_ns INTEGER NOT NULL,
        last_ns INTEGER NOT NULL,
        message TEXT NOT NULL,
        pid INTEGER NOT NULL
    )
    """,
)


class SchemaVersionError(Exception):
    """The file was written by a newer sessiontrace whose layout this version cannot read."""


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables in an empty store, switch it to WAL mode, and check its version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Safe to run from several
    processes at once: the tables are created inside one ``BEGIN IMMEDIATE`` transaction.

    Args:
        conn: A writable connection to the store.

    Raises:
        SchemaVersionError: If the file was written by a newer layout version.
        sqlite3.Error: If SQLite cannot read or write the file.

    Example:
        >>> conn = sqlite3.connect(":memory:", isolation_level=None)
        >>> ensure_schema(conn)
        >>> conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        True
        >>> conn.close()
    """
    _use_wal(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the store has layout version {version}, newer than this sessiontrace "
                f"understands ({SCHEMA_VERSION}); upgrade sessiontrace or use another --store"
            )
        if version < SCHEMA_VERSION:
            for statement in _CREATE_STATEMENTS:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _use_wal(conn: sqlite3.Connection) -> None:
    # journal_mode cannot change inside a transaction; it is stored in the file, so once is
    # enough, and setting it again is a no-op. Switching needs an exclusive lock, and SQLite
    # reports "database is locked" at once, without waiting, when another connection holds
    # the file (two exporters creating one store): retry until the busy timeout.
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
