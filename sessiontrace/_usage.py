"""What an LLM span used: token counts, cost and model, read from whichever keys it carries.

One reading serves the local store (per span) and the SessionTracker (live totals), so the
two always agree. A span is read from the first key family it carries, never from two, so an
instrumentation that writes both OpenInference and GenAI counts is not counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sessiontrace import _keys

# Token attributes by family, in the order they are tried: (prompt, completion, total).
# A span is counted from the first family it carries, never from two, so an instrumentation
# that writes both OpenInference and GenAI counts is not counted twice.
_TOKEN_FAMILIES: tuple[tuple[str, str, str | None], ...] = (
    (_keys.OI_TOKENS_PROMPT, _keys.OI_TOKENS_COMPLETION, _keys.OI_TOKENS_TOTAL),
    (_keys.GENAI_INPUT_TOKENS, _keys.GENAI_OUTPUT_TOKENS, None),
    (
        _keys.TRACELOOP_PROMPT_TOKENS,
        _keys.TRACELOOP_COMPLETION_TOKENS,
        _keys.TRACELOOP_TOTAL_TOKENS,
    ),
)


def token_counts(attributes: Mapping[str, Any]) -> tuple[int | None, int | None, int | None]:
    """Prompt, completion and total tokens of one span, from the first dialect it carries.

    The total is the span's own total when it has one, else prompt plus completion.

    Args:
        attributes: The span's attributes.

    Returns:
        ``(prompt, completion, total)``, each ``None`` when the span does not report it.

    Example:
        >>> token_counts({"llm.token_count.prompt": 3, "gen_ai.usage.input_tokens": 3})
        (3, None, 3)
    """
    for prompt_key, completion_key, total_key in _TOKEN_FAMILIES:
        prompt = _as_count(attributes.get(prompt_key))
        completion = _as_count(attributes.get(completion_key))
        total = _as_count(attributes.get(total_key)) if total_key else None
        if prompt is None and completion is None and total is None:
            continue
        if total is None:
            total = (prompt or 0) + (completion or 0)
            if total > _MAX_COUNT:
                total = None
        return prompt, completion, total
    return None, None, None


# A token count is a whole number from 0 to SQLite's largest integer: anything else (a
# negative count, 10**30) is not a count a backend reported, and would fail the store's write.
_MAX_COUNT = 2**63 - 1


def _as_count(value: object) -> int | None:
    if value.__class__ is int:  # the usual case, first (a bool's class is bool)
        return value if 0 <= value <= _MAX_COUNT else None
    if value is None:
        return None
    count: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    # isdecimal, not isdigit: int() refuses digits such as "²" that isdigit accepts.
    elif isinstance(value, str) and value.strip().isdecimal():
        try:
            count = int(value)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            return None
    if count is None or not 0 <= count <= _MAX_COUNT:
        return None
    return count


_MODEL_KEYS = (_keys.OI_MODEL_NAME, _keys.GENAI_RESPONSE_MODEL, _keys.GENAI_REQUEST_MODEL)
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
"""The GenAI ``gen_ai.operation.name`` values that make a span a call to a model."""


def model_name(attributes: Mapping[str, Any]) -> str | None:
    """The model a span called, if it names one.

    >>> model_name({"gen_ai.request.model": "gpt-4o-mini"})
    'gpt-4o-mini'
    """
    for key in _MODEL_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def is_llm_call(attributes: Mapping[str, Any]) -> bool:
    """Whether a span is a call to a model: OpenInference kind LLM, a GenAI chat, or tokens.

    >>> is_llm_call({"openinference.span.kind": "LLM"})
    True
    """
    if attributes.get(_keys.OI_SPAN_KIND) == "LLM":
        return True
    # A stored value may be any JSON shape: a list or object is not hashable, so it is never
    # looked up in the set (it raised TypeError).
    op = attributes.get(_keys.GENAI_OPERATION)
    if isinstance(op, str) and op in LLM_OPERATIONS:
        return True
    return token_counts(attributes) != (None, None, None)


def reported_cost(attributes: Mapping[str, Any]) -> float | None:
    """The cost in USD that instrumentation put on a span, if any.

    >>> reported_cost({"llm.cost.total": 0.0021})
    0.0021
    """
    for key in (_keys.OI_COST_TOTAL, _keys.LANGFUSE_COST):
        value = attributes.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None
