"""The query columns of a stored span, read from its attributes once, when it is written.

Readers filter and total on these columns instead of decoding every span's attribute JSON:
the parent session and name a tracker stamps, the span type and step index, the cost that
instrumentation reported, and two small bit sets. ``flags`` says whether the span is an LLM
call, whether its session keys name two different sessions, and whether it reached
OpenTelemetry's attribute count limit; ``key_mask`` says which session keys it carries. The
exporter and the migration of older stores both use :func:`derive`, so the columns mean the
same whichever wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiontrace import _keys
from sessiontrace._usage import is_llm_call, reported_cost

FLAG_LLM_CALL = 1
"""The span is a call to a model (see ``sessiontrace._usage.is_llm_call``)."""

FLAG_CONFLICTING_KEYS = 2
"""The span's session keys name more than one session."""

FLAG_FULL = 4
"""The span has :data:`ATTRIBUTE_COUNT_LIMIT` attributes or more: it may have lost keys."""

ATTRIBUTE_COUNT_LIMIT = 128
"""OpenTelemetry's default attribute count limit."""

# What is_llm_call looks at besides token counts.
_CALL_KEYS = (_keys.OI_SPAN_KIND, _keys.GENAI_OPERATION)

KEY_BITS: dict[str, int] = {key: 1 << n for n, key in enumerate(_keys.SESSION_ID_KEYS)}
"""The bit of ``key_mask`` for each session key, in ``_keys.SESSION_ID_KEYS`` order."""

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


def derive(attributes: Mapping[str, Any], *, has_tokens: bool | None = None) -> Derived:
    """The query columns of a span with these attributes, in ``_schema.QUERY_COLUMNS`` order.

    ``has_tokens`` says whether the span reported token counts, when the caller already knows
    (the exporter does); ``None`` looks.

    Example:
        >>> derive({"session.id": "trip-2", "sessiontrace.parent_session.id": "trip-1",
        ...         "sessiontrace.step.index": 3})
        ('trip-1', None, None, 3, None, 0, 1)
    """
    keys = session_keys(attributes)
    mask = 0
    for key in keys:
        mask |= KEY_BITS[key]
    if has_tokens is None:
        llm = is_llm_call(attributes)
    else:
        llm = has_tokens or is_llm_call({key: attributes.get(key) for key in _CALL_KEYS})
    flags = FLAG_LLM_CALL if llm else 0
    if len(set(keys.values())) > 1:
        flags |= FLAG_CONFLICTING_KEYS
    if len(attributes) >= ATTRIBUTE_COUNT_LIMIT:
        flags |= FLAG_FULL
    return (
        _text(attributes.get(_keys.PARENT_SESSION_ID)),
        _text(attributes.get(_keys.SESSION_NAME)),
        _text(attributes.get(_keys.SPAN_TYPE)),
        _step_index(attributes.get(_keys.STEP_INDEX)),
        reported_cost(attributes),
        flags,
        mask,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


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
