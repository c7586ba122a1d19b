"""Text repair: a lone surrogate costs its own characters (U+FFFD), never its span or batch.

Python strings may hold lone surrogates (``os.fsdecode`` of a non-UTF-8 filename, a bad
``\\ud800`` escape in JSON input) that no UTF-8 encoder accepts: SQLite's binding and OTLP's
protobuf encoding both fail the whole batch on one. The export path checks each batch (cheap:
ASCII text is skipped at C speed) and replaces them in a copy of the span, counting every
value it repaired.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Status

from sessiontrace._spans import copy_span

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad(text: str) -> bool:
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def _value_is_bad(value: object) -> bool:
    if isinstance(value, str):
        return _bad(value)
    if isinstance(value, (tuple, list)):
        return any(isinstance(item, str) and _bad(item) for item in value)
    if isinstance(value, Mapping):
        return any(_value_is_bad(item) for item in value.values()) or any(
            isinstance(key, str) and _bad(key) for key in value
        )
    return False


def _attributes_are_bad(attributes: Mapping[str, Any] | None) -> bool:
    if not attributes:
        return False
    if type(attributes) is BoundedAttributes:
        attributes = attributes.copy()  # a C-speed copy beats its Python-level item access
    return any(_bad(key) or _value_is_bad(value) for key, value in attributes.items())


def needs_repair(span: ReadableSpan) -> bool:
    """Whether any text of ``span`` (name, attributes, events, status) has a lone surrogate.

    Example:
        >>> needs_repair(ReadableSpan("ok", attributes={"path": "caf\\u00e9"}))
        False
        >>> needs_repair(ReadableSpan("bad", attributes={"path": "x\\udcff"}))
        True
    """
    description = span.status.description
    return (
        _bad(span.name)
        or _attributes_are_bad(span.attributes)
        or any(_bad(event.name) or _attributes_are_bad(event.attributes) for event in span.events)
        or (description is not None and _bad(description))
    )


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def text(self, text: str) -> str:
        if not _bad(text):
            return text
        self.count += 1
        return _LONE_SURROGATE.sub("\ufffd", text)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (tuple, list)):
            return tuple(self.text(item) if isinstance(item, str) else item for item in value)
        if isinstance(value, Mapping):
            return {self.text(str(key)): self.value(item) for key, item in value.items()}
        return value

    def attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        return {self.text(key): self.value(value) for key, value in (attributes or {}).items()}


def repair_span(span: ReadableSpan) -> tuple[ReadableSpan, int]:
    """A copy of ``span`` with every lone surrogate replaced by U+FFFD, and how many values
    were repaired. A span with nothing to repair is returned as is, with 0.

    Example:
        >>> fixed, count = repair_span(ReadableSpan("s", attributes={"file": "a\\udcffb"}))
        >>> fixed.attributes["file"], count
        ('a\\ufffdb', 1)
    """
    if not needs_repair(span):
        return span, 0
    counter = _Counter()
    status = span.status
    description = status.description
    events: Sequence[Event] = [
        Event(counter.text(event.name), counter.attributes(event.attributes), event.timestamp)
        for event in span.events
    ]
    repaired = copy_span(
        span,
        name=counter.text(span.name),
        attributes=counter.attributes(span.attributes),
        events=events,
        status=Status(status.status_code, counter.text(description))
        if description is not None
        else status,
    )
    return repaired, counter.count


def repair_batch(spans: Sequence[ReadableSpan]) -> tuple[Sequence[ReadableSpan], int]:
    """``spans`` with lone surrogates repaired, and the number of values repaired."""
    if not any(needs_repair(span) for span in spans):
        return spans, 0
    total = 0
    out: list[ReadableSpan] = []
    for span in spans:
        fixed, count = repair_span(span)
        out.append(fixed)
        total += count
    return out, total
