"""Decode stored rows into the reader's models, naming every value that is wrong.

A row written by another tool or damaged on disk never fails a read: each bad value is
replaced and described in ``_Cells.problems``, which :class:`RowDecoder` turns into a
``BadRow`` (the reader lists them in ``SessionStore.bad_rows``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from sessiontrace.store._columns import FLAG_REPEATED_CALL
from sessiontrace.store._models import (
    BadRow,
    StoredEvent,
    StoredLoss,
    StoredSpan,
    StoredTrace,
    utc_from_ns,
)
from sessiontrace.store._schema import COLUMNS

logger = logging.getLogger("sessiontrace")

# rowid names a row even when its ids are missing.
SPAN_SELECT = f"SELECT rowid, {', '.join(COLUMNS)} FROM spans"
"""The span rows :meth:`RowDecoder.span` reads: ``rowid``, then the spans table's columns."""

_LOSS_COLUMNS = ("id", "kind", "reason", "destination", "count", "first_ns", "last_ns")
LOSS_SELECT = f"SELECT {', '.join(_LOSS_COLUMNS)}, message, pid FROM losses"
"""The loss rows :meth:`RowDecoder.loss` reads."""

_INT64 = range(-(2**63), 2**63)
# What SQLite cannot decode as UTF-8 arrives as lone surrogates (see decode_text).
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_text(raw: bytes) -> str:
    # Bytes that are not UTF-8 (another tool, a damaged page) would make sqlite3 fail the
    # whole query; decoded with surrogateescape they reach _Cells, which names the row.
    return raw.decode("utf-8", "surrogateescape")


def _clean(text: str) -> str:
    """``text`` with bytes that were not UTF-8 replaced by U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Cells:
    """One row's values, read column by column; what is wrong goes to ``problems``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.problems: list[str] = []

    def text(self, column: str) -> str | None:
        value = self.values[column]
        if value is None or (
            isinstance(value, str) and (value.isascii() or _SURROGATE.search(value) is None)
        ):
            return value
        if isinstance(value, str):
            self.problems.append(f"{column} is not valid UTF-8 (shown with U+FFFD)")
            return _clean(value)
        if isinstance(value, bytes):
            self.problems.append(f"{column} is a blob, not text")
            return value.decode("utf-8", "replace")
        return str(value)  # a number where text belongs reads as its digits

    def integer(self, column: str) -> int | None:
        value = self.values[column]
        if value is None or (isinstance(value, int) and value in _INT64):
            return value
        if isinstance(value, float) and value.is_integer() and int(value) in _INT64:
            return int(value)
        self.problems.append(f"{column} is not a whole number ({_shown(value)})")
        return None

    def json(self, column: str, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
        raw = self.values[column]
        empty = kind()
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "surrogateescape")
        if not isinstance(raw, str):
            self.problems.append(f"{column} is {_shown(raw)}, not JSON text")
            return empty
        if not raw.isascii() and _SURROGATE.search(raw):
            self.problems.append(f"{column} is not valid UTF-8 (shown with U+FFFD)")
            raw = _clean(raw)
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self.problems.append(f"{column} is not JSON ({_short(exc)})")
            return empty
        if not isinstance(value, kind):
            wanted = "an object" if kind is dict else "a list"
            self.problems.append(f"{column} is JSON {type(value).__name__}, not {wanted}")
            return empty
        if raw.count("[") + raw.count("{") <= _MAX_DEPTH:  # cannot be nested any deeper
            return value
        value, cut = _within_depth(value, _MAX_DEPTH)
        if cut:
            self.problems.append(
                f"{column} is nested deeper than {_MAX_DEPTH} levels (the rest kept as JSON text)"
            )
        return value


# Deeper values are kept as their JSON text: pydantic refuses to serialize past ~250 levels,
# so one absurd value would otherwise break `--json` for the whole session.
_MAX_DEPTH = 64


def _within_depth(value: Any, room: int) -> tuple[Any, bool]:
    if not isinstance(value, dict | list):
        return value, False
    if room == 0:
        return json.dumps(value, ensure_ascii=False), True
    items = value.items() if isinstance(value, dict) else enumerate(value)
    cut = False
    kept: dict[Any, Any] = {}
    for key, item in items:
        kept[key], deeper = _within_depth(item, room - 1)
        cut = cut or deeper
    if not cut:
        return value, False
    return (kept if isinstance(value, dict) else list(kept.values())), True


def _shown(value: object) -> str:
    if value is None:
        return "NULL"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _repeated(cells: _Cells) -> bool:
    flags = cells.values["flags"]  # an odd value means no: it is not a problem of the span's
    return isinstance(flags, int) and bool(flags & FLAG_REPEATED_CALL)


def _build_span(cells: _Cells, trace_id: str, span_id: str) -> StoredSpan:
    start_ns = cells.integer("start_ns")
    end_ns = cells.integer("end_ns")
    if start_ns is None:
        start_ns = end_ns if end_ns is not None else 0
    if end_ns is None:
        end_ns = start_ns
    tokens = {
        column: cells.integer(column)
        for column in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    attributes = cells.json("attributes", dict)
    if any(not isinstance(key, str) for key in attributes):
        attributes = {str(key): value for key, value in attributes.items()}
    return StoredSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=cells.text("parent_span_id") or None,
        name=_required(cells, "name", ""),
        kind=_required(cells, "kind", "INTERNAL"),
        status_code=_required(cells, "status_code", "UNSET"),
        status_message=cells.text("status_message"),
        session_id=cells.text("session_id"),
        user_id=cells.text("user_id"),
        scope=cells.text("scope"),
        repeated_call=_repeated(cells),
        **tokens,
        attributes=attributes,
        resource=cells.json("resource", dict),
        events=tuple(_events(cells)),
        start=utc_from_ns(start_ns),
        end=utc_from_ns(end_ns),
        start_ns=start_ns,
        end_ns=end_ns,
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
    )


def _required(cells: _Cells, column: str, default: str) -> str:
    value = cells.text(column)
    if value is None:
        cells.problems.append(f"{column} is NULL")
        return default
    return value


def _events(cells: _Cells) -> list[StoredEvent]:
    events = []
    bad = 0
    for event in cells.json("events", list):
        if not isinstance(event, dict):
            bad += 1
            continue
        name, stamp, attributes = event.get("name"), event.get("timestamp"), event.get("attributes")
        ok_stamp = isinstance(stamp, int) and not isinstance(stamp, bool) and stamp in _INT64
        if not isinstance(name, str) or not ok_stamp or not isinstance(attributes, dict | None):
            bad += 1
        timestamp_ns = stamp if ok_stamp and isinstance(stamp, int) else 0
        events.append(
            StoredEvent(
                name=name if isinstance(name, str) else "",
                timestamp_ns=timestamp_ns,
                timestamp=utc_from_ns(timestamp_ns),
                attributes=attributes if isinstance(attributes, dict) else {},
            )
        )
    if bad:
        cells.problems.append(f"{bad} event{'s' if bad != 1 else ''} malformed")
    return events


def _text_cell(value: object) -> str:
    if isinstance(value, str):
        return _clean(value) if _SURROGATE.search(value) else value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _build_loss(cells: _Cells, loss_id: Any) -> StoredLoss | None:
    """The loss record in ``cells``; ``None`` when it is incomplete (said in its problems)."""
    values = {column: cells.text(column) for column in ("kind", "reason", "destination")}
    numbers = {column: cells.integer(column) for column in ("count", "first_ns", "last_ns")}
    message, pid = cells.text("message") or "", cells.integer("pid")
    if cells.problems or not all(values.values()) or None in numbers.values():
        cells.problems.append("the record is incomplete")
        return None
    first_ns, last_ns = numbers["first_ns"] or 0, numbers["last_ns"] or 0
    return StoredLoss(
        id=loss_id,
        kind=values["kind"] or "",
        reason=values["reason"] or "",
        destination=values["destination"] or "",
        count=numbers["count"] or 0,
        first=utc_from_ns(first_ns),
        last=utc_from_ns(max(last_ns, first_ns)),
        first_ns=first_ns,
        last_ns=max(last_ns, first_ns),
        message=message,
        pid=pid,
    )


def trace_of(trace_id: str, spans: list[StoredSpan]) -> StoredTrace:
    start_ns = min(span.start_ns for span in spans)
    end_ns = max(span.end_ns for span in spans)
    return StoredTrace(
        trace_id=trace_id,
        spans=tuple(spans),
        start=utc_from_ns(start_ns),
        end=utc_from_ns(end_ns),
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
    )


class RowDecoder:
    """Turns a store's rows into models; the rows it cannot read whole go to :attr:`bad_rows`.

    Args:
        path: The store the rows come from, named when a bad row is logged.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._bad: dict[tuple[str, str], BadRow] = {}

    @property
    def bad_rows(self) -> tuple[BadRow, ...]:
        """The rows met so far that could not be read whole, in the order met, each once."""
        return tuple(self._bad.values())

    def spans(self, rows: list[tuple[Any, ...]]) -> list[StoredSpan]:
        """The spans of rows of :data:`SPAN_SELECT`; a row that cannot be placed is left out."""
        spans = []
        for row in rows:
            span = self.span(row)
            if span is not None:
                spans.append(span)
        return spans

    def span(self, row: tuple[Any, ...]) -> StoredSpan | None:
        """The span of one row of :data:`SPAN_SELECT`; ``None`` when it cannot be placed."""
        rowid, *values = row
        cells = _Cells(dict(zip(COLUMNS, values, strict=True)))
        trace_id, span_id = cells.text("trace_id"), cells.text("span_id")
        name = f"trace {trace_id or '?'} span {span_id or '?'}"
        if not trace_id or not span_id:
            self.report("spans", f"{rowid} ({name})", cells.problems, skipped=True)
            return None
        try:
            span = _build_span(cells, trace_id, span_id)
        except Exception as exc:  # one row must never fail the read
            cells.problems.append(f"cannot be read ({type(exc).__name__}: {exc})")
            self.report("spans", name, cells.problems, skipped=True)
            return None
        if cells.problems:
            self.report("spans", name, cells.problems, skipped=False)
        return span

    def loss(self, row: tuple[Any, ...]) -> StoredLoss | None:
        """The loss record of one row of :data:`LOSS_SELECT`; ``None`` when incomplete."""
        cells = _Cells(dict(zip((*_LOSS_COLUMNS, "message", "pid"), row, strict=True)))
        loss = _build_loss(cells, row[0])
        if loss is None:
            self.report("losses", f"id {row[0]}", cells.problems, skipped=True)
        return loss

    def listable(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows whose first value, a session id, is text a lookup can find again.

        A session id that is not UTF-8 would be listed under its repaired id, which names no
        session: such rows are left out and reported.
        """
        readable = []
        for row in rows:
            session_id = row[0]
            if session_id.isascii() or _SURROGATE.search(session_id) is None:
                readable.append(row)
            else:  # listed under the repaired id, it could not be looked up again
                problems = ["session_id is not valid UTF-8", "its spans are not listed"]
                name = f"of session {_clean(session_id)!r}"
                self.report("spans", name, problems, skipped=True)
        return readable

    def unlisted(self, rows: list[tuple[Any, ...]]) -> None:
        """Report span rows (rowid, trace_id, span_id, session_id) whose session id is not text."""
        for rowid, trace_id, span_id, session_id in rows:
            name = f"{rowid} (trace {_text_cell(trace_id)} span {_text_cell(span_id)})"
            problems = [f"session_id is {_shown(session_id)}, not text", "not listed"]
            self.report("spans", name, problems, skipped=True)

    def report(self, table: str, row: str, problems: list[str], *, skipped: bool) -> None:
        """Record a row that could not be read whole (once per table and row), and log it."""
        key = (table, row)
        if key in self._bad:
            return
        bad = BadRow(table=table, row=row, problems=tuple(problems), skipped=skipped)
        self._bad[key] = bad
        # INFO, not WARNING: the CLI prints these itself, and Python's last-resort handler
        # would print a warning a second time on stderr.
        logger.info("sessiontrace: %s in the store at %s", bad.message, self._path)
