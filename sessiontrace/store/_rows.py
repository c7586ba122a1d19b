"""Decode stored rows into the reader's models, naming every value that is wrong.

A row written by another tool or damaged on disk never fails a read: each bad value is
replaced and described in ``_Cells.problems``, which the reader turns into a ``BadRow``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sessiontrace.store._models import (
    StoredEvent,
    StoredLoss,
    StoredSpan,
    StoredTrace,
    _time,
)

_INT64 = range(-(2**63), 2**63)
# What SQLite cannot decode as UTF-8 arrives as lone surrogates (see _decode_text).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _decode_text(raw: bytes) -> str:
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
        **tokens,
        attributes=attributes,
        resource=cells.json("resource", dict),
        events=tuple(_events(cells)),
        start=_time(start_ns),
        end=_time(end_ns),
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
                timestamp=_time(timestamp_ns),
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
        first=_time(first_ns),
        last=_time(max(last_ns, first_ns)),
        first_ns=first_ns,
        last_ns=max(last_ns, first_ns),
        message=message,
        pid=pid,
    )


def _trace(trace_id: str, spans: list[StoredSpan]) -> StoredTrace:
    start_ns = min(span.start_ns for span in spans)
    end_ns = max(span.end_ns for span in spans)
    return StoredTrace(
        trace_id=trace_id,
        spans=tuple(spans),
        start=_time(start_ns),
        end=_time(end_ns),
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
    )
