"""The query columns of a stored span, read from its attributes once, when it is written.

Readers filter and total on these columns instead of decoding every span's attribute JSON:
the parent session and name a tracker stamps, the span type and step index, the cost that
instrumentation reported, and two small bit sets. ``flags`` says whether the span is an LLM
call, whether its session keys name two different sessions, whether it reached
OpenTelemetry's attribute count limit, and whether it repeats a call another span reported
(:data:`FLAG_REPEATED_CALL`, which only the exporter can tell); ``key_mask`` says which
session keys it carries. The exporter and the migration of older stores both use
:func:`derive`, so the columns mean the same whichever wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiontrace import _keys
from sessiontrace._usage import LLM_OPERATIONS, reported_cost, token_counts

FLAG_LLM_CALL = 1
"""The span is a call to a model (see ``sessiontrace._usage.is_llm_call``)."""

FLAG_CONFLICTING_KEYS = 2
"""The span's session keys name more than one session."""

FLAG_FULL = 4
"""The span has :data:`ATTRIBUTE_COUNT_LIMIT` attributes or more: it may have lost keys."""

FLAG_REPEATED_CALL = 8
"""The span reports a model call that a span stored before it reported already
(``sessiontrace._usage.CallLedger``'s rule): the session's tokens, LLM calls and cost leave
it out, its span and error counts keep it. Set by the exporter as spans arrive; rows stored
before this flag existed never have it."""

ATTRIBUTE_COUNT_LIMIT = 128
"""OpenTelemetry's default attribute count limit."""

_COST_KEYS = (_keys.OI_COST_TOTAL, _keys.LANGFUSE_COST)

KEY_BITS: dict[str, int] = {key: 1 << n for n, key in enumerate(_keys.SESSION_ID_KEYS)}
"""The bit of ``key_mask`` for each session key, in ``_keys.SESSION_ID_KEYS`` order."""

_KEY_BITS = tuple(KEY_BITS.items())

Derived = tuple[str | None, str | None, str | None, int | None, float | None, int, int]


def session_keys(attributes: Mapping[str, Any]) -> dict[str, str]:
    """The session keys a span carries, with their values as text.

    A key counts when its value is non-empty text or a whole number (not a bool): the same
    rule the exporter uses for the ``session_id`` column.

    Example:
        >>> session_keys({"session.id": "chat-1", "gen_ai.conversation.id": ""})
        {'session.id': 'chat-1'}
    """
    found: dict[str, str] = {}
    for key in _keys.SESSION_ID_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            found[key] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            found[key] = str(value)
    return found


def derive(
    attributes: Mapping[str, Any], *, has_tokens: bool | None = None, repeated: bool = False
) -> tuple[str | None, Derived]:
    """The session id of a span with these attributes, and its query columns in
    ``_schema.QUERY_COLUMNS`` order.

    ``has_tokens`` says whether the span reported token counts, when the caller already knows
    (the exporter does); ``None`` looks. ``repeated`` sets :data:`FLAG_REPEATED_CALL` (the
    exporter's ledger says the span repeats a call). This runs once per stored span: it reads
    each key once and calls as little as it can.

    Example:
        >>> derive({"session.id": "trip-2", "sessiontrace.parent_session.id": "trip-1",
        ...         "sessiontrace.step.index": 3})
        ('trip-2', ('trip-1', None, None, 3, None, 0, 1))
    """
    get = attributes.get
    session_id = None
    mask = flags = 0
    for key, bit in _KEY_BITS:
        value = get(key)
        if value is None:
            continue
        if value.__class__ is not str:  # the fast path is text; else the rule in full
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                value = str(value)
            elif not isinstance(value, str):
                continue
        if not value:
            continue
        mask |= bit
        if session_id is None:
            session_id = value
        elif value != session_id:
            flags = FLAG_CONFLICTING_KEYS
    if has_tokens is None:
        has_tokens = token_counts(attributes) != (None, None, None)
    operation = get(_keys.GENAI_OPERATION)
    if (
        has_tokens
        or get(_keys.OI_SPAN_KIND) == "LLM"
        or (isinstance(operation, str) and operation in LLM_OPERATIONS)
    ):
        flags |= FLAG_LLM_CALL
    if len(attributes) >= ATTRIBUTE_COUNT_LIMIT:
        flags |= FLAG_FULL
    if repeated:
        flags |= FLAG_REPEATED_CALL
    cost = None
    if _COST_KEYS[0] in attributes or _COST_KEYS[1] in attributes:
        cost = reported_cost(attributes)
    if _TRACKER_KEYS.isdisjoint(attributes):  # most spans: no tracker or step keys
        return session_id, (None, None, None, None, cost, flags, mask)
    parent, name, span_type, step = (
        get(_keys.PARENT_SESSION_ID),
        get(_keys.SESSION_NAME),
        get(_keys.SPAN_TYPE),
        get(_keys.STEP_INDEX),
    )
    return session_id, (
        parent if isinstance(parent, str) and parent else None,
        name if isinstance(name, str) and name else None,
        span_type if isinstance(span_type, str) and span_type else None,
        None if step is None else _step_index(step),
        cost,
        flags,
        mask,
    )


_TRACKER_KEYS = frozenset(
    (_keys.PARENT_SESSION_ID, _keys.SESSION_NAME, _keys.SPAN_TYPE, _keys.STEP_INDEX)
)


def _step_index(value: object) -> int | None:
    # An int from the tracker; text when it came through W3C baggage from another service.
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    return None
