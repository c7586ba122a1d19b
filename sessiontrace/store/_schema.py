"""The local store's on-disk layout: default path, tables, indexes and schema version.

The store is one SQLite file in WAL mode. ``spans`` holds one row per span, with what readers
query (session, parent session, step, span type, status, times, tokens, cost) in columns
beside the attribute JSON. Three summary tables are kept up to date in the same transaction
as each batch of spans (see ``_summaries.py``): ``sessions`` (one row per session: what
``sessiontrace sessions`` lists), ``session_users`` (which users a session has) and
``session_tags`` (which tags its spans carry: what ``SessionStore.page(tag=...)`` filters
on). The index ``spans_session_trace`` lists each session's traces, and the partial index
``spans_unsessioned`` the spans outside any session (what ``doctor`` checks first, beside the
sessions' key masks).
``losses`` records spans the export path dropped and values it repaired. ``PRAGMA
user_version`` records the layout version: an older file is migrated
(``_migrate.py``), a newer one refused, never misread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

DEFAULT_STORE_PATH = Path(".sessiontrace") / "sessions.db"
"""Where the store lives unless told otherwise, relative to the working directory."""

SCHEMA_VERSION = 3
"""The layout version in ``PRAGMA user_version``: 2 added ``losses``; 3 the query columns
(``parent_session_id`` to ``key_mask``) and the summary tables."""

# Values bound per statement by the helpers that list ids in an IN (...): SQLite before 3.32
# allows 999 bound values a statement.
IN_CHUNK = 500


def in_chunks(values: Sequence[_T]) -> Iterator[tuple[list[_T], str]]:
    """``values`` in chunks of :data:`IN_CHUNK`, each with its ``?, ?, ...`` placeholders.

    Example:
        >>> [(chunk, marks) for chunk, marks in in_chunks(["a", "b"])]
        [(['a', 'b'], '?, ?')]
    """
    for start in range(0, len(values), IN_CHUNK):
        chunk = list(values[start : start + IN_CHUNK])
        yield chunk, ", ".join("?" for _ in chunk)


# Seconds a connection waits for another writer's lock before giving up.
BUSY_TIMEOUT_SECONDS = 10.0

# A new store's page size. A span with a 2 KB input is a 3 KB row: on SQLite's default 4 KiB
# page one row fits and a quarter of the page stays empty; 32 KiB pages hold ten (measured in
# benchmarks/store_scale.py: 1.3x fewer bytes per span, and faster ingestion).
PAGE_SIZE = 32768

# WAL upkeep for writers: checkpoint every ~8 MiB of log, and cut the file back to that size
# afterwards, so the -wal file stays small next to the store.
WAL_CHECKPOINT_BYTES = 8 << 20

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
    # Version 3: read from the attributes when the span is written (see _columns.py).
    "parent_session_id",
    "session_name",
    "span_type",
    "step_index",
    "cost_usd",
    "flags",
    "key_mask",
)

QUERY_COLUMNS: tuple[str, ...] = COLUMNS[COLUMNS.index("parent_session_id") :]
"""The columns version 3 added: what ``_columns.derive`` computes from a span's attributes."""

_QUERY_COLUMN_TYPES = {
    "parent_session_id": "TEXT",
    "session_name": "TEXT",
    "span_type": "TEXT",
    "step_index": "INTEGER",
    "cost_usd": "REAL",
    "flags": "INTEGER NOT NULL DEFAULT 0",
    "key_mask": "INTEGER NOT NULL DEFAULT 0",
}

SPANS_TABLE = """
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
    {query_columns},
    PRIMARY KEY (trace_id, span_id)
)
""".format(
    query_columns=",\n    ".join(f"{name} {kind}" for name, kind in _QUERY_COLUMN_TYPES.items())
)

# trace_count grows by the (session, trace) pairs each batch adds; user_id (the user most of
# its spans name) and user_count are read from session_users when a batch may change them, so
# that the listing reads nothing else. Token counts and costs are NULL while no span reported
# one. first/last are nanoseconds since the epoch; ended_ns is the end of the tracker's
# summary span (NULL: not ended, or not a tracker run). key_mask_or/key_mask_and combine the
# key masks of the spans that carry a session: where they differ, some lack session keys
# others have (what doctor looks at).
SUMMARY_TABLES: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        name TEXT,
        parent_session_id TEXT,
        span_count INTEGER NOT NULL,
        error_count INTEGER NOT NULL,
        llm_calls INTEGER NOT NULL,
        first_start_ns INTEGER NOT NULL,
        last_end_ns INTEGER NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        total_tokens INTEGER,
        cost_usd REAL,
        tracked INTEGER NOT NULL,
        ended_ns INTEGER,
        ended_status TEXT,
        key_mask_or INTEGER NOT NULL,
        key_mask_and INTEGER NOT NULL,
        conflicts INTEGER NOT NULL,
        full_spans INTEGER NOT NULL,
        trace_count INTEGER NOT NULL DEFAULT 0,
        user_id TEXT,
        user_count INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS sessions_last_end ON sessions (last_end_ns DESC, session_id)",
    "CREATE INDEX IF NOT EXISTS sessions_parent ON sessions (parent_session_id) "
    "WHERE parent_session_id IS NOT NULL",
    """
    CREATE TABLE IF NOT EXISTS session_users (
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        span_count INTEGER NOT NULL,
        first_start_ns INTEGER NOT NULL,
        PRIMARY KEY (session_id, user_id)
    ) WITHOUT ROWID
    """,
    # The union of the tags of a session's spans (_tags.py); the index finds a tag's sessions.
    """
    CREATE TABLE IF NOT EXISTS session_tags (
        session_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (session_id, tag)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS session_tags_tag ON session_tags (tag, session_id)",
    # A session's spans, and its traces: the index lists each (session, trace) pair once per
    # span, in order, so a session's traces are read off it without a table of pairs (which
    # cost ten times the index entry at ingest: benchmarks/store_upkeep.py).
    "CREATE INDEX IF NOT EXISTS spans_session_trace ON spans (session_id, trace_id)",
    # The spans outside any session, by trace: few in most stores, so this costs nothing for
    # the others. doctor finds traces a session covers only in part here, and prune the traces
    # that belong to no session.
    "CREATE INDEX IF NOT EXISTS spans_unsessioned ON spans (trace_id, end_ns) "
    "WHERE session_id IS NULL",
)

SESSION_TABLES: tuple[str, ...] = ("sessions", "session_users", "session_tags")
"""The summary tables with rows per session: what removing or recounting a session clears."""

SUMMARY_INDEXES: tuple[str, ...] = (
    "spans_session_trace",
    "spans_unsessioned",
    "session_tags_tag",
)
"""Indexes that come with the summary tables: a store without them is rebuilt like one whose
summary tables have another shape."""

OBSOLETE_SUMMARIES: tuple[str, ...] = ("traces", "session_traces")
"""Summary tables of earlier builds of layout 3, dropped when the summaries are rebuilt:
``traces`` (a row per trace) and ``session_traces`` (a row per session and trace), kept at
ingest until their upkeep proved the most costly part of it."""

OBSOLETE_INDEXES: tuple[str, ...] = ("spans_session_id",)
"""Indexes that ``spans_session_trace`` replaced (it begins with the same column)."""


def _columns_of(statement: str) -> tuple[str, ...]:
    body = statement[statement.index("(") + 1 : statement.rindex(")")]
    names = [line.strip().split()[0] for line in body.splitlines() if line.strip()]
    return tuple(name for name in names if name != "PRIMARY")


_SUMMARY_COLUMNS: dict[str, tuple[str, ...]] = {
    statement.split()[5]: _columns_of(statement)
    for statement in SUMMARY_TABLES
    if statement.lstrip().startswith("CREATE TABLE")
}

_CREATE_STATEMENTS: tuple[str, ...] = (
    SPANS_TABLE,
    *(f"DROP INDEX IF EXISTS {name}" for name in OBSOLETE_INDEXES),
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
    *SUMMARY_TABLES,
)


class SchemaVersionError(Exception):
    """The file was written by a newer sessiontrace whose layout this version cannot read."""


class OldSchemaError(Exception):
    """The file has an older layout that must be migrated before it is written or read."""

    def __init__(self, version: int) -> None:
        super().__init__(f"the store has layout version {version}, older than {SCHEMA_VERSION}")
        self.version = version


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables in an empty store, switch it to WAL mode, and check its version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Safe to run from several
    processes at once: the tables are created inside one ``BEGIN IMMEDIATE`` transaction. A
    new file gets :data:`PAGE_SIZE` pages and incremental vacuum (so pruning can give space
    back to the disk).

    Args:
        conn: A writable connection to the store.

    Raises:
        SchemaVersionError: If the file was written by a newer layout version.
        OldSchemaError: If the file has an older layout (``_migrate.migrate`` upgrades it).
        sqlite3.Error: If SQLite cannot read or write the file.

    Example:
        >>> conn = sqlite3.connect(":memory:", isolation_level=None)
        >>> ensure_schema(conn)
        >>> conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        True
        >>> conn.close()
    """
    if _is_empty(conn):
        # Both only take effect before the first table is written (and page_size before WAL).
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    _use_wal(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the store has layout version {version}, newer than this sessiontrace "
                f"understands ({SCHEMA_VERSION}); upgrade sessiontrace or use another --store"
            )
        if 0 < version < SCHEMA_VERSION or (version and not summaries_current(conn)):
            raise OldSchemaError(version)
        if version == 0:
            for statement in _CREATE_STATEMENTS:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def tune_writer(conn: sqlite3.Connection) -> None:
    """Set a writing connection's per-connection pragmas: sync level and WAL size limits.

    Example:
        >>> conn = sqlite3.connect(":memory:", isolation_level=None)
        >>> tune_writer(conn)
        >>> conn.close()
    """
    # Safe with WAL: a crash may lose the last commits, never corrupt the file.
    conn.execute("PRAGMA synchronous = NORMAL")
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0]) or PAGE_SIZE
    conn.execute(f"PRAGMA wal_autocheckpoint = {max(WAL_CHECKPOINT_BYTES // page_size, 16)}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_CHECKPOINT_BYTES}")


def add_query_columns(conn: sqlite3.Connection) -> None:
    """Add the version 3 query columns an older ``spans`` table lacks (no row is rewritten)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(spans)")}
    for name, kind in _QUERY_COLUMN_TYPES.items():
        if name not in present:
            conn.execute(f"ALTER TABLE spans ADD COLUMN {name} {kind}")
    for statement in _CREATE_STATEMENTS[1:]:
        conn.execute(statement)


def summaries_current(conn: sqlite3.Connection) -> bool:
    """Whether the summary tables have this version's columns.

    They are derived data: a store whose summary tables differ (written while layout 3 was
    being developed, or by another program) keeps its spans and gets them rebuilt by
    ``_migrate.migrate``.
    """
    for table, expected in _SUMMARY_COLUMNS.items():
        present = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        if present != list(expected):
            return False
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    return names.issuperset(SUMMARY_INDEXES) and names.isdisjoint(
        (*OBSOLETE_SUMMARIES, *OBSOLETE_INDEXES)
    )


def drop_summaries(conn: sqlite3.Connection) -> None:
    """Drop the summary tables (inside the caller's transaction) and create them anew, empty."""
    for table in (*_SUMMARY_COLUMNS, *OBSOLETE_SUMMARIES):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for index in OBSOLETE_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    for statement in SUMMARY_TABLES:
        conn.execute(statement)


def _is_empty(conn: sqlite3.Connection) -> bool:
    return int(conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]) == 0


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
