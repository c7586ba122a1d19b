"""SQLiteSpanExporter: write finished spans to the local SQLite store, one statement a chunk.

A batch is flattened into rows (the resource encoded once per batch) and written with
multi-row ``INSERT`` statements on one persistent connection, in one transaction: SQLite then
releases the GIL once per chunk of rows instead of once per row, so a CPU-bound application
thread cannot starve the writer. Text that no encoder accepts is repaired, never a reason to
lose the batch; records of lost spans (``sessiontrace.export._losses``) go into the same
transaction. After ``os.fork()`` the child opens a connection and a lock of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from sessiontrace import _keys
from sessiontrace._guard import internal_error
from sessiontrace._usage import _TOKEN_FAMILIES, token_counts
from sessiontrace.export._losses import LEDGER, Loss
from sessiontrace.export._repair import repair_batch
from sessiontrace.store._schema import (
    BUSY_TIMEOUT_SECONDS,
    COLUMNS,
    DEFAULT_STORE_PATH,
    SchemaVersionError,
    ensure_schema,
)

logger = logging.getLogger("sessiontrace")

Row = tuple[Any, ...]

# Rows per INSERT: SQLite 3.32+ allows 32,766 bound values per statement, older ones 999.
_CHUNK = 256 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999 // len(COLUMNS)
_ROW_MARKS = "(" + ", ".join("?" for _ in COLUMNS) + ")"
_INSERT_HEAD = f"INSERT OR REPLACE INTO spans ({', '.join(COLUMNS)}) VALUES "
_INSERT_LOSS = (
    "INSERT INTO losses (kind, reason, destination, count, first_ns, last_ns, message, pid) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_NO_EVENTS = "[]"


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

    Args:
        path: The SQLite file to write. Relative paths are resolved against the working
            directory when the exporter is created.

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

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STORE_PATH) -> None:
        self._path = Path(path).expanduser().absolute()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._shutdown = False
        self._warned_shutdown = False
        self._reported: set[str] = set()
        self._resource: tuple[Resource | None, str] = (None, "{}")
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
            rows = self._rows(spans)
            with self._lock:
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
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Stop accepting spans, write pending loss records, close the connection.

        Example:
            >>> SQLiteSpanExporter("/tmp/sessiontrace-example.db").shutdown()
        """
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
                encoded = _to_json(dict(resource.attributes))
                self._resource = (resource, encoded)
            rows.append(span_to_row(span, encoded))
        return rows

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                ensure_schema(conn)
                # Safe with WAL: a crash may lose the last commits, never corrupt the file.
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _write(self, rows: list[Row]) -> None:
        conn = self._connection()
        losses = LEDGER.take_pending()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(rows), _CHUNK):
                    chunk = rows[start : start + _CHUNK]
                    statement = _FULL_INSERT if len(chunk) == _CHUNK else _insert(len(chunk))
                    conn.execute(statement, list(itertools.chain.from_iterable(chunk)))
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
        level = logging.DEBUG if reason in self._reported else logging.WARNING
        self._reported.add(reason)
        logger.log(
            level,
            "sessiontrace: could not write %s spans to the store at %s (%s); check that the "
            "disk has room and that no other program holds the file locked",
            count,
            self._path,
            reason,
        )


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


def span_to_row(span: ReadableSpan, resource_json: str | None = None) -> Row:
    """Flatten one span into a ``spans`` row, in :data:`COLUMNS` order.

    ``resource_json`` is the span's resource already encoded (the exporter encodes it once
    per batch); without it the resource is encoded here. This runs once per stored span, so
    it avoids the slow paths: the SDK's attribute mapping is copied with its own ``copy()``,
    enum names come from tables, and token counts are only looked for when a token key is
    present.
    """
    context = span.context
    attributes = _attributes_of(span)
    if _TOKEN_KEYS.isdisjoint(attributes):
        prompt = completion = total = None
    else:
        prompt, completion, total = token_counts(attributes)
    scope = span.instrumentation_scope
    start_ns = span.start_time or 0
    parent = span.parent
    status = span.status
    events = span.events if _has_events(span) else ()
    if resource_json is None:
        resource_json = _to_json(dict(span.resource.attributes))
    return (
        format(context.trace_id, "032x") if context else "0" * 32,
        format(context.span_id, "016x") if context else "0" * 16,
        format(parent.span_id, "016x") if parent else None,
        span.name,
        _KIND_NAMES[span.kind],
        start_ns,
        span.end_time or start_ns,
        _STATUS_NAMES[status.status_code],
        status.description,
        _first_id(attributes, _keys.SESSION_ID_KEYS),
        _first_id(attributes, _keys.USER_ID_KEYS),
        prompt,
        completion,
        total,
        _to_json(attributes),
        resource_json,
        scope.name if scope else None,
        _to_json(
            [
                {
                    "name": event.name,
                    "timestamp": event.timestamp,
                    "attributes": dict(event.attributes or {}),
                }
                for event in events
            ]
        )
        if events
        else _NO_EVENTS,
    )


def _attributes_of(span: ReadableSpan) -> dict[str, Any]:
    """A plain dict of the span's attributes. The public ``span.attributes`` is a read-only
    proxy whose copy goes key by key through Python; the SDK's own store copies at C speed.
    """
    if FAST_READ:
        held = span._attributes
        if isinstance(held, BoundedAttributes):
            return held.copy()  # type: ignore[return-value]
    return dict(span.attributes or {})


def _has_events(span: ReadableSpan) -> bool:
    return bool(span._events) if FAST_READ else bool(span.events)


def _fast_read_self_test() -> bool:
    # The two private fields read above (ReadableSpan._attributes, ._events) have this shape
    # in the SDK releases we know; check it on a probe, and where it differs take the public
    # properties for every span.
    try:
        provider = TracerProvider(shutdown_on_exit=False)
        probe: Any = provider.get_tracer("sessiontrace-probe").start_span("probe")
        probe.set_attribute("kept", 1)
        probe.end()
        held = getattr(probe, "_attributes", None)
        return (
            isinstance(held, BoundedAttributes)
            and held.copy() == dict(probe.attributes or {}) == {"kept": 1}
            and not getattr(probe, "_events", ())
            and not probe.events
        )
    except Exception:
        return False


FAST_READ = _fast_read_self_test()

_KIND_NAMES = {kind: kind.name for kind in SpanKind}
_STATUS_NAMES = {code: code.name for code in StatusCode}
_TOKEN_KEYS = frozenset(key for family in _TOKEN_FAMILIES for key in family if key)


def _first_id(attributes: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int):
            return str(value)
    return None


def _to_json(value: object) -> str:
    return _ENCODER.encode(value)


def _json_default(value: object) -> Any:
    # Attribute values are primitives or sequences of them; newer SDKs also allow bytes and
    # mappings. Anything else becomes its string form rather than failing the batch.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return str(value)


_ENCODER = json.JSONEncoder(default=_json_default, ensure_ascii=False)
