"""SQLiteSpanExporter: write finished spans to the local SQLite store, one transaction a batch."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

from sessiontrace import _keys
from sessiontrace._guard import internal_error
from sessiontrace._usage import token_counts
from sessiontrace.store._schema import (
    BUSY_TIMEOUT_SECONDS,
    COLUMNS,
    DEFAULT_STORE_PATH,
    SchemaVersionError,
    ensure_schema,
)

logger = logging.getLogger("sessiontrace")

_INSERT = (
    f"INSERT OR REPLACE INTO spans ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)

Row = tuple[Any, ...]


class SQLiteSpanExporter(SpanExporter):
    """An OpenTelemetry span exporter that writes to the local SQLite store.

    Put it behind a ``BatchSpanProcessor`` so writes happen off the application thread. Each
    ``export`` call writes its batch in one transaction on its own connection, so the exporter
    is safe to share between threads and processes. Writes run with instrumentation
    suppressed, so the store's own I/O never produces spans. It never raises: a failed batch
    is logged and reported as ``SpanExportResult.FAILURE``.

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

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STORE_PATH) -> None:
        self._path = Path(path).expanduser().absolute()
        self._lock = threading.Lock()
        self._schema_ready = False
        self._shutdown = False
        self._warned_shutdown = False
        self._reported: set[str] = set()

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
                logger.warning("sessiontrace: the store exporter was shut down; dropping spans")
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            rows = [span_to_row(span) for span in spans]
            with self._lock:
                self._write(rows)
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
        """Stop accepting spans, waiting for a write in progress to finish.

        Example:
            >>> SQLiteSpanExporter("/tmp/sessiontrace-example.db").shutdown()
        """
        with self._lock:
            self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return ``True``: every ``export`` call has committed before it returns.

        Example:
            >>> SQLiteSpanExporter("/tmp/sessiontrace-example.db").force_flush()
            True
        """
        return True

    def _write(self, rows: list[Row]) -> None:
        if not self._schema_ready:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            if not self._schema_ready:
                ensure_schema(conn)
                self._schema_ready = True
            # Safe with WAL: a crash may lose the last commits, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def _report_failure(self, exc: Exception, count: int) -> None:
        # A full disk or a locked file fails every batch: each distinct reason is logged once
        # as a warning, its repeats at debug level.
        reason = f"{type(exc).__name__}: {exc}"
        level = logging.DEBUG if reason in self._reported else logging.WARNING
        self._reported.add(reason)
        logger.log(
            level,
            "sessiontrace: could not write %s spans to the store at %s (%s)",
            count,
            self._path,
            reason,
        )


def span_to_row(span: ReadableSpan) -> Row:
    """Flatten one span into a ``spans`` row, in :data:`COLUMNS` order."""
    context = span.context
    attributes: dict[str, Any] = dict(span.attributes or {})
    prompt, completion, total = token_counts(attributes)
    scope = span.instrumentation_scope
    start_ns = span.start_time or 0
    return (
        format_trace_id(context.trace_id) if context else "0" * 32,
        format_span_id(context.span_id) if context else "0" * 16,
        format_span_id(span.parent.span_id) if span.parent else None,
        span.name,
        span.kind.name,
        start_ns,
        span.end_time or start_ns,
        span.status.status_code.name,
        span.status.description,
        _first_id(attributes, _keys.SESSION_ID_KEYS),
        _first_id(attributes, _keys.USER_ID_KEYS),
        prompt,
        completion,
        total,
        _to_json(attributes),
        _to_json(dict(span.resource.attributes)),
        scope.name if scope else None,
        _to_json(
            [
                {
                    "name": event.name,
                    "timestamp": event.timestamp,
                    "attributes": dict(event.attributes or {}),
                }
                for event in span.events
            ]
        ),
    )


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
    return json.dumps(value, default=_json_default, ensure_ascii=False)


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
