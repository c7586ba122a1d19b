"""SQLiteSpanExporter: write finished spans to the local SQLite store, one statement a chunk.

A batch is flattened into rows (the resource encoded once per batch) and written with
multi-row ``INSERT`` statements on one persistent connection, in one transaction: SQLite then
releases the GIL once per chunk of rows instead of once per row, so a CPU-bound application
thread cannot starve the writer. Text that no encoder accepts is repaired, never a reason to
lose the batch; records of lost spans (``sessiontrace.export._losses``) go into the same
transaction. A span that repeats a model call another span reported (the anthropic SDK's
own span beside an instrumentation's) is flagged as the rows are made, under the lock, so
the session's totals count each call once (``_span_rows.RepeatedCalls``). After
``os.fork()`` the child opens a connection and a lock of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sessiontrace._guard import LogOnce, internal_error
from sessiontrace.export._losses import LEDGER, Loss
from sessiontrace.export._repair import repair_batch
from sessiontrace.store import _summaries
from sessiontrace.store._migrate import open_writable
from sessiontrace.store._pruner import BackgroundPruner
from sessiontrace.store._schema import COLUMNS, DEFAULT_STORE_PATH, SchemaVersionError
from sessiontrace.store._span_rows import RepeatedCalls, Row, span_to_row, to_json

logger = logging.getLogger("sessiontrace")

# Rows per INSERT (SQLite before 3.32 allows 999 bound values per statement). Fewer rows a
# statement cost less per row: 64 rows of 25 values took 2-3 us a span less than 256 rows
# (measured on small and llm spans for benchmarks/store_upkeep.py); smaller chunks gain no more.
_CHUNK = 64 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999 // len(COLUMNS)
_ROW_MARKS = "(" + ", ".join("?" for _ in COLUMNS) + ")"
_INSERT_HEAD = f"INSERT OR IGNORE INTO spans ({', '.join(COLUMNS)}) VALUES "
_REPLACE = f"INSERT OR REPLACE INTO spans ({', '.join(COLUMNS)}) VALUES {_ROW_MARKS}"
_STORED_SESSION = "SELECT session_id FROM spans WHERE trace_id = ? AND span_id = ?"
_INSERT_LOSS = (
    "INSERT INTO losses (kind, reason, destination, count, first_ns, last_ns, message, pid) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _insert(rows: int) -> str:
    return _INSERT_HEAD + ", ".join(itertools.repeat(_ROW_MARKS, rows))


_FULL_INSERT = _insert(_CHUNK)

# Exporters alive in this process, so one fork hook can give each child a fresh lock and
# connection (a hook per exporter would keep every exporter alive for ever).
_live: weakref.WeakSet[SQLiteSpanExporter] = weakref.WeakSet()


class SQLiteSpanExporter(SpanExporter):
    """An OpenTelemetry span exporter that writes to the local SQLite store.

    Put it behind a batching span processor so writes happen off the application thread
    (``configure()`` does). Each ``export`` call writes its batch in one transaction; it is
    safe to share between threads, between processes writing one file, and across
    ``os.fork()``. Writes run with instrumentation suppressed, so the store's own I/O never
    produces spans. It never raises: a batch that cannot be written is logged and reported as
    ``SpanExportResult.FAILURE`` (the caller counts it as lost).

    The file and its directory are created on the first export. Read it back with
    :class:`sessiontrace.store.SessionStore` or the ``sessiontrace`` command.

    With ``max_age`` or ``max_bytes``, a background thread removes whole sessions, oldest
    first, that are older or do not fit (see ``sessiontrace prune``), every
    ``prune_interval`` seconds.

    Args:
        path: The SQLite file to write. Relative paths are resolved against the working
            directory when the exporter is created.
        max_age: Seconds after its last span that a session is removed; ``None`` keeps all.
        max_bytes: The most bytes the store's pages may take; ``None`` for no limit.
        prune_interval: Seconds between two checks of the limits.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import BatchSpanProcessor
        >>> provider = TracerProvider()
        >>> exporter = SQLiteSpanExporter("/tmp/sessiontrace-example.db")
        >>> provider.add_span_processor(BatchSpanProcessor(exporter))
        >>> provider.shutdown()
    """

    repairs_text = True
    """It repairs lone surrogates itself, only in a batch that fails to encode."""

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_STORE_PATH,
        *,
        max_age: float | None = None,
        max_bytes: int | None = None,
        prune_interval: float = 60.0,
    ) -> None:
        self._path = Path(path).expanduser().absolute()
        self._pruner = (
            None
            if max_age is None and max_bytes is None
            else BackgroundPruner(
                self._path, max_age=max_age, max_bytes=max_bytes, interval=prune_interval
            )
        )
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._shutdown = False
        self._warned_shutdown = False
        self._reported = LogOnce(repeats=logging.DEBUG)
        self._resource: tuple[Resource | None, str] = (None, "{}")
        # Which spans repeat a call already stored: spans reach it in the order they ended
        # (one process makes all the spans of a call; another writer has its own).
        self._calls = RepeatedCalls()
        _live.add(self)

    @property
    def path(self) -> Path:
        """The absolute path of the SQLite file this exporter writes."""
        return self._path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans`` in one transaction; a span already stored is replaced.

        Args:
            spans: Finished spans, as handed over by a span processor.

        Returns:
            ``SUCCESS`` once the batch is committed, ``FAILURE`` if it could not be written
            (the reason is logged) or the exporter was shut down.

        Example:
            >>> SQLiteSpanExporter("/tmp/sessiontrace-example.db").export([]).name
            'SUCCESS'
        """
        if self._shutdown:
            if not self._warned_shutdown:
                self._warned_shutdown = True
                logger.warning(
                    "sessiontrace: the store exporter at %s was shut down; it stores no more "
                    "spans (call configure() again to make a new one)",
                    self._path,
                )
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            with self._lock:  # rows are made under it too: the call ledger is not thread-safe
                rows = self._rows(spans)
                try:
                    self._write(rows)
                except UnicodeEncodeError:
                    # Only a batch holding lone surrogates pays for the repair.
                    self._write(self._rows(self._repaired(spans)))
        except (sqlite3.Error, OSError, SchemaVersionError) as exc:
            self._report_failure(exc, len(spans))
            return SpanExportResult.FAILURE
        except Exception:
            internal_error("SQLiteSpanExporter.export")
            return SpanExportResult.FAILURE
        finally:
            detach(token)
        if self._pruner is not None:
            self._pruner.ensure_running()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Stop accepting spans, write pending loss records, close the connection.

        Example:
            >>> SQLiteSpanExporter("/tmp/sessiontrace-example.db").shutdown()
        """
        if self._pruner is not None:
            self._pruner.stop()
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            try:
                if LEDGER.has_pending():
                    self._write([])
            except (sqlite3.Error, OSError, SchemaVersionError) as exc:
                self._report_failure(exc, 0)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return ``True``: every ``export`` call has committed before it returns.

        Example:
            >>> SQLiteSpanExporter("/tmp/sessiontrace-example.db").force_flush()
            True
        """
        return True

    def _repaired(self, spans: Sequence[ReadableSpan]) -> Sequence[ReadableSpan]:
        spans, repaired = repair_batch(spans)
        LEDGER.record(
            "unencodable-text",
            "store",
            repaired,
            "span text held lone surrogates (e.g. os.fsdecode of a non-UTF-8 name); they "
            "were stored as U+FFFD. Decode such text with errors='replace' at the source to "
            "keep it readable.",
            kind="repaired",
        )
        return spans

    def _rows(self, spans: Sequence[ReadableSpan]) -> list[Row]:
        rows = []
        for span in spans:
            resource = span.resource
            cached, encoded = self._resource
            if resource is not cached:
                encoded = to_json(dict(resource.attributes))
                self._resource = (resource, encoded)
            rows.append(span_to_row(span, encoded, self._calls))
        return rows

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # An older store is upgraded in place, here in the export thread, with progress
            # in the log.
            self._conn = open_writable(self._path, _log_progress(self._path))
        return self._conn

    def _write(self, rows: list[Row]) -> None:
        conn = self._connection()
        losses = LEDGER.take_pending()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                _insert_rows(conn, rows)
                if losses:
                    conn.executemany(_INSERT_LOSS, [_loss_row(loss) for loss in losses])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            # Start the next batch on a fresh connection: cheap, and nothing of a failed
            # transaction (or a file that was replaced under us) carries over.
            LEDGER.give_back(losses)
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _before_fork(self) -> None:
        # Fork only between transactions: a connection copied mid-write would leave the
        # child's SQLite lock bookkeeping claiming locks the child does not hold.
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        conn, self._conn = self._conn, None
        if conn is not None:
            # Idle (see _before_fork): closing it resets this process's lock bookkeeping for
            # the file; the parent's open connection keeps its WAL from being checkpointed
            # away by this close.
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _report_failure(self, exc: Exception, count: int) -> None:
        # A full disk or a locked file fails every batch: each distinct reason is logged once
        # as a warning, its repeats at debug level. The caller counts the spans as lost.
        reason = f"{type(exc).__name__}: {exc}"
        self._reported.log(
            reason,
            "sessiontrace: could not write %s spans to the store at %s (%s); check that the "
            "disk has room and that no other program holds the file locked",
            count,
            self._path,
            reason,
        )


def _insert_rows(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Insert ``rows`` and fold them into the summary tables, inside the open transaction.

    A span stored again (the same trace and span id: a retried export, or a span sent twice)
    replaces the stored one: its chunk is written row by row and the sessions it touches are
    recomputed from their spans, so no total counts it twice.
    """
    fresh: list[Row] = []
    replaced_sessions: set[str] = set()
    replaced = False
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        statement = _FULL_INSERT if len(chunk) == _CHUNK else _insert(len(chunk))
        before = conn.total_changes
        conn.execute(statement, list(itertools.chain.from_iterable(chunk)))
        if conn.total_changes - before == len(chunk):
            fresh.extend(chunk)
            continue
        for row in chunk:
            stored = conn.execute(_STORED_SESSION, (row[0], row[1])).fetchone()
            if stored is not None and isinstance(stored[0], str):
                replaced_sessions.add(stored[0])
            if row[_SESSION_AT] is not None:
                replaced_sessions.add(row[_SESSION_AT])
            replaced = True
            conn.execute(_REPLACE, row)
    _summaries.add(conn, fresh)
    if replaced:
        # After add(): these are recomputed whole, whatever add() counted of them.
        _summaries.rebuild(conn, replaced_sessions)


_SESSION_AT = COLUMNS.index("session_id")


def _log_progress(path: Path) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        logger.warning(
            "sessiontrace: upgrading the store at %s to the current layout: %s of %s spans",
            path,
            done,
            total,
        )

    return progress


def _for_each_exporter(method: str) -> Callable[[], None]:
    def hook() -> None:
        for exporter in _at_fork:
            getattr(exporter, method)()

    return hook


_at_fork: list[SQLiteSpanExporter] = []


def _before_fork() -> None:
    _at_fork[:] = list(_live)  # the same exporters, in the same order, in all three hooks
    for exporter in _at_fork:
        exporter._before_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_for_each_exporter("_after_fork_in_parent"),
        after_in_child=_for_each_exporter("_after_fork_in_child"),
    )


def _loss_row(loss: Loss) -> Row:
    return (
        loss.kind,
        loss.reason,
        loss.destination,
        loss.count,
        loss.first_ns,
        loss.last_ns,
        loss.message,
        loss.pid,
    )
