"""What an LLM span used: token counts, cost and model, read from whichever keys it carries.

One reading serves the local store (per span) and the SessionTracker (live totals), so the
two always agree. A span is read from the first key family it carries, never from two, so an
instrumentation that writes both OpenInference and GenAI counts is not counted twice.

One call can also be reported by two spans: ``anthropic`` 2.x makes its own span for every
call (scope ``com.anthropic.sdk.python``), beside the span of OpenInference's or Traceloop's
instrumentation. :class:`CallLedger` says which token-reporting span repeats a call already
counted, so live totals count each call once (see its rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from sessiontrace import _keys

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

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


# Cached prompt tokens, per family: (read, written). Each family's prompt count already holds
# them (OpenInference, Traceloop, OpenTelemetry's and Anthropic's own spans all report the
# whole prompt), so they only price part of the prompt at other rates.
_CACHE_FAMILIES = (
    (
        ("llm.token_count.prompt_details.cache_read",),
        ("llm.token_count.prompt_details.cache_write",),
    ),
    (
        ("gen_ai.usage.cache_read.input_tokens",),
        ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens"),
    ),
)


def cache_tokens(attributes: Mapping[str, Any]) -> tuple[int, int]:
    """Prompt tokens read from and written to a prompt cache, from the first family the span
    carries; ``(0, 0)`` when it reports none.

    Example:
        >>> cache_tokens({"gen_ai.usage.cache_read.input_tokens": 40})
        (40, 0)
    """
    for read_keys, write_keys in _CACHE_FAMILIES:
        read = _first_count(attributes, read_keys)
        written = _first_count(attributes, write_keys)
        if read is not None or written is not None:
            return read or 0, written or 0
    return 0, 0


def _first_count(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        count = _as_count(attributes.get(key))
        if count is not None:
            return count
    return None


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


# The id of the API response a span reports (OTel GenAI). Written by the anthropic SDK's own
# span and by Traceloop's instrumentations; OpenInference does not write it.
_RESPONSE_ID = _keys.GENAI_RESPONSE_ID


class CallRecord(NamedTuple):
    """What :class:`CallLedger` needs of one span that reported tokens."""

    span_id: int
    parent_id: int | None
    response_id: str | None
    tokens: tuple[int | None, int | None]  # (prompt, completion)
    start_ns: int
    end_ns: int


def call_record(
    span: ReadableSpan,
    attributes: Mapping[str, Any],
    prompt: int | None,
    completion: int | None,
) -> CallRecord | None:
    """The ledger's record of ``span`` (its ``attributes`` already read), which reported
    ``prompt`` and ``completion`` tokens.

    None when the span reported no tokens or has no context: there is nothing to match.
    """
    if prompt is None and completion is None:  # most spans: nothing to match, no work
        return None
    context = span.context
    if context is None:
        return None
    response_id = attributes.get(_RESPONSE_ID)
    start = span.start_time or 0
    return CallRecord(
        context.span_id,
        span.parent.span_id if span.parent is not None else None,
        response_id if isinstance(response_id, str) and response_id else None,
        (prompt, completion),
        start,
        span.end_time or start,
    )


class CallLedger:
    """Which token-reporting spans repeat a model call that an earlier span already reported.

    A span repeats a call when, of the spans seen before it, one

    - carries the same ``gen_ai.response.id`` and overlaps it in time (Traceloop's span and
      the anthropic SDK's: Traceloop never makes its span current, so the SDK's span is in
      another trace; Traceloop's stream counts one output token more, so counts may differ),
    - is its parent or its child and reports the same prompt and completion tokens
      (OpenInference's span of ``messages.create`` around the SDK's span), or
    - has the same parent, reports the same tokens, overlaps it in time, and exactly one of
      the two carries a response id (OpenInference's span of ``messages.stream``, which is
      not current when the SDK sends the request). Two spans that both carry one are the
      same call only by the first rule, so concurrent identical calls stay apart; a span
      stands for one sibling at most, and only a span that was counted stands for one.

    The first span of a call to end is the one counted. Records are kept for the
    :data:`KEPT` spans and parents seen last (the spans of one call end together) and
    :data:`SIBLINGS` children per parent. Not thread-safe: the owner holds its lock.

    Example:
        >>> ledger = CallLedger()
        >>> sdk = CallRecord(2, 1, "msg_1", (48, 5), 10, 20)
        >>> wrapper = CallRecord(1, None, None, (48, 5), 5, 25)
        >>> ledger.repeats(sdk), ledger.repeats(wrapper)
        (False, True)
    """

    KEPT = 1024
    SIBLINGS = 64

    __slots__ = ("_by_parent", "_by_response", "_by_span", "_taken")

    def __init__(self) -> None:
        self._by_span: dict[int, CallRecord] = {}
        self._by_parent: dict[int | None, _Siblings] = {}
        self._by_response: dict[str, CallRecord] = {}
        self._taken: dict[int, None] = {}  # no sibling's original: matched, or a repeat

    def repeats(self, record: CallRecord) -> bool:
        """Whether ``record``'s span repeats a call seen before; remembers it either way."""
        same = self._by_response.get(record.response_id) if record.response_id else None
        same_response = same is not None and _overlap(same, record)
        repeated = same_response or self._related(record)
        if repeated:
            _keep(self._taken, record.span_id, None)
        _keep(self._by_span, record.span_id, record)
        siblings = self._by_parent.pop(record.parent_id, None)
        if siblings is None:
            siblings = _Siblings()
        siblings.add(record)
        _keep(self._by_parent, record.parent_id, siblings)
        if record.response_id and not same_response:
            _keep(self._by_response, record.response_id, record)
        return repeated

    def seen(self, span_id: int) -> bool:
        """Whether the span ``span_id`` is among the :data:`KEPT` spans seen last."""
        return span_id in self._by_span

    def _related(self, record: CallRecord) -> bool:
        if record.parent_id is not None:
            parent = self._by_span.get(record.parent_id)
            if parent is not None and parent.tokens == record.tokens:
                return True
        children = self._by_parent.get(record.span_id)
        if children is not None:
            for child in children.records:
                if child.tokens == record.tokens:
                    return True
        lacks_id = record.response_id is None
        siblings = self._by_parent.get(record.parent_id)
        if siblings is None or not (
            siblings.with_id if lacks_id else len(siblings) - siblings.with_id
        ):
            return False  # no sibling of the other kind: the usual case, without a look
        for sibling in siblings.records:
            if (
                sibling.tokens == record.tokens
                and (sibling.response_id is None) is not lacks_id
                and sibling.span_id not in self._taken
                and _overlap(sibling, record)
            ):
                _keep(self._taken, sibling.span_id, None)
                return True
        return False


class _Siblings:
    """The last :data:`CallLedger.SIBLINGS` records of one parent, and how many carry an id."""

    __slots__ = ("records", "with_id")

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self.with_id = 0

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: CallRecord) -> None:
        self.records.append(record)
        self.with_id += record.response_id is not None
        if len(self.records) > CallLedger.SIBLINGS:
            self.with_id -= self.records.pop(0).response_id is not None


def _overlap(one: CallRecord, other: CallRecord) -> bool:
    return one.start_ns <= other.end_ns and other.start_ns <= one.end_ns


def _keep(records: dict[Any, Any], key: object, value: object) -> None:
    records.pop(key, None)  # a key seen again becomes the newest
    records[key] = value
    if len(records) > CallLedger.KEPT:
        del records[next(iter(records))]  # the oldest: dicts keep insertion order
