"""Flatten finished spans into rows of the store's ``spans`` table, fast.

This runs once per stored span, so it avoids the slow paths: the SDK's attribute store is
copied at C speed (``_spans.attributes_of``, behind a self-check with the public properties
as the fallback), enum names come from tables, and token counts are only looked for when a
token key is present. A span that reports tokens is shown to the exporter's
:class:`RepeatedCalls`, which says whether it repeats a call already stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from sessiontrace import _keys
from sessiontrace._spans import attributes_of, has_events
from sessiontrace._usage import _TOKEN_FAMILIES, CallLedger, CallRecord, call_record, token_counts
from sessiontrace.store._columns import derive

Row = tuple[Any, ...]


class RepeatedCalls:
    """Whether a token-reporting span repeats a model call already stored (``CallLedger``).

    One per exporter, called under its lock, spans in the order they ended. A span seen again
    (an export retried, or a batch encoded a second time after its text was repaired) gets its
    first answer back, so storing it again never turns the counted span of a call into a
    repeat of itself (for the :data:`CallLedger.KEPT` spans seen last; only the repeats
    among them are kept here, so a span the ledger has seen costs one look-up).

    Example:
        >>> calls = RepeatedCalls()
        >>> sdk = CallRecord(2, 1, "msg_1", (48, 5), 10, 20)
        >>> wrapper = CallRecord(1, None, None, (48, 5), 5, 25)
        >>> calls(sdk), calls(wrapper), calls(sdk), calls(wrapper)
        (False, True, False, True)
    """

    __slots__ = ("_ledger", "_repeats")

    def __init__(self) -> None:
        self._ledger = CallLedger()
        self._repeats: dict[int, None] = {}  # the repeats among the spans the ledger keeps

    def __call__(self, record: CallRecord) -> bool:
        span_id = record.span_id
        if self._ledger.seen(span_id):  # stored again: its first answer
            return span_id in self._repeats
        if not self._ledger.repeats(record):
            return False
        self._repeats[span_id] = None
        if len(self._repeats) > CallLedger.KEPT:  # none older is in the ledger any more
            del self._repeats[next(iter(self._repeats))]
        return True


_NO_EVENTS = "[]"


def span_to_row(
    span: ReadableSpan,
    resource_json: str | None = None,
    repeats: Callable[[CallRecord], bool] | None = None,
) -> Row:
    """Flatten one span into a ``spans`` row, in :data:`COLUMNS` order.

    ``resource_json`` is the span's resource already encoded (the exporter encodes it once
    per batch); without it the resource is encoded here. ``repeats`` (the exporter's
    :class:`RepeatedCalls`) is asked about a span that reports tokens; when it says the span
    repeats a call, the row is flagged ``FLAG_REPEATED_CALL``. This runs once per stored span, so
    it avoids the slow paths: the SDK's attribute mapping is copied with its own ``copy()``,
    enum names come from tables, and token counts are only looked for when a token key is
    present.
    """
    context = span.context
    attributes = attributes_of(span)
    if _TOKEN_KEYS.isdisjoint(attributes):
        prompt = completion = total = None
    else:
        prompt, completion, total = token_counts(attributes)
    repeated = False
    if repeats is not None and (prompt is not None or completion is not None):
        record = call_record(span, attributes, prompt, completion)
        repeated = record is not None and repeats(record)
    session_id, derived = derive(
        attributes,
        has_tokens=prompt is not None or completion is not None or total is not None,
        repeated=repeated,
    )
    scope = span.instrumentation_scope
    start_ns = span.start_time or 0
    parent = span.parent
    status = span.status
    events = span.events if has_events(span) else ()
    if resource_json is None:
        resource_json = to_json(dict(span.resource.attributes))
    return (
        f"{context.trace_id:032x}" if context else "0" * 32,
        f"{context.span_id:016x}" if context else "0" * 16,
        f"{parent.span_id:016x}" if parent else None,
        span.name,
        _KIND_NAMES[span.kind],
        start_ns,
        span.end_time or start_ns,
        _STATUS_NAMES[status.status_code],
        status.description,
        session_id,
        _first_id(attributes, _keys.USER_ID_KEYS),
        prompt,
        completion,
        total,
        to_json(attributes),
        resource_json,
        scope.name if scope else None,
        to_json(
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
        *derived,
    )


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


def to_json(value: object) -> str:
    """``value`` as compact JSON text, non-ASCII kept; odd values as their string form.

    Example:
        >>> to_json({"session.id": "chat-1", "tag.tags": ("a", "b"), "n": 2})
        '{"session.id":"chat-1","tag.tags":["a","b"],"n":2}'
    """
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


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


_ENCODER = json.JSONEncoder(default=_json_default, ensure_ascii=False, separators=(",", ":"))

# The C encoder that json.JSONEncoder.encode makes anew on every call, made once: a third of
# to_json's time for a span of ten attributes (measured in benchmarks/store_upkeep.py). No
# markers dict (the circular-reference check): a cycle (only a mapping that holds itself can
# make one: attribute values are primitives and sequences of them) ends in RecursionError, and
# one dict shared between threads would report a value two threads encode at once as circular.
# json.encoder.c_make_encoder is an implementation detail of the standard library: it is used
# only where it encodes a probe exactly as the public encoder does.
def _made_encoder() -> Any:
    try:
        made = c_make_encoder(
            None, _json_default, encode_basestring, None, ":", ",", False, False, True
        )
        probe = {"k": ["é", 1, 2.5, None, True, float("nan")], "m": b"x"}
        return made if "".join(made(probe, 0)) == _ENCODER.encode(probe) else None
    except Exception:
        return None


_C_ENCODE = _made_encoder()
