"""A tracker's live totals (spans, LLM calls, tokens, cost, errors), its prices, its summary.

Each span that ends under a tracker adds what it carries (:func:`counts_of`): tokens and model
as instrumentation reports them (``_usage``), a cost it reports, else one computed from the
tracker's ``prices``. :class:`TrackerSummary` is the immutable view of the totals at a moment.

Example:
    >>> check_prices({"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}})
    {'gpt-4o-mini': (0.15, 0.6)}
    >>> priced({"m": (1.0, 2.0)}, "m", 1_000_000, 500_000)
    2.0
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import AttributeValue
from pydantic import BaseModel, ConfigDict

from sessiontrace import _keys
from sessiontrace._usage import (
    CallLedger,
    CallRecord,
    cache_tokens,
    call_record,
    is_llm_call,
    model_name,
    reported_cost,
    token_counts,
)

TrackerStatus = Literal["running", "ok", "error"]
# model: (prompt, completion) or (prompt, completion, cache_read, cache_write), USD per 1M tokens
Prices = Mapping[str, tuple[float, ...]]


class TrackerSummary(BaseModel):
    """A live tracker's totals now, from ``tracker.summary()``: in memory, not the store's.

    Immutable. Tokens, cost and errors include the tracker's sub-sessions. ``end()`` returns
    the final one and writes it as the ``sessiontrace.summary`` span, which the store reads
    back as :class:`sessiontrace.store.StoredTrackerSummary`; a row of the store's session
    listing, for any session, is :class:`sessiontrace.store.SessionSummary`.

    Example:
        >>> from sessiontrace import SessionTracker
        >>> with SessionTracker("run-1") as tracker:
        ...     pass
        >>> tracker.summary().status
        'ok'
    """

    model_config = ConfigDict(frozen=True)

    session_id: str
    name: str | None
    user_id: str | None
    parent_session_id: str | None
    status: TrackerStatus
    error: str | None
    steps: int
    spans: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None
    errors: int
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float
    children: tuple[str, ...]


def summary_attributes(summary: TrackerSummary, name: str | None) -> dict[str, AttributeValue]:
    """The attributes of a tracker's summary span (``sessiontrace.summary.*``)."""
    attributes: dict[str, AttributeValue] = {
        _keys.SPAN_TYPE: "summary",
        _keys.STATUS: summary.status,
    }
    for field in (
        "steps",
        "spans",
        "llm_calls",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "errors",
    ):
        attributes[_keys.SUMMARY_PREFIX + field] = getattr(summary, field)
    attributes[_keys.SUMMARY_PREFIX + "duration_ms"] = summary.duration_seconds * 1000
    if summary.cost_usd is not None:
        attributes[_keys.SUMMARY_PREFIX + "cost_usd"] = summary.cost_usd
    if name:
        attributes[_keys.SESSION_NAME] = name
    return attributes


class SpanCounts(NamedTuple):
    """What one ended span adds to the totals."""

    llm_call: bool
    prompt: int
    completion: int
    total: int
    cost: float | None
    failed: bool
    call: CallRecord | None = None  # for CallLedger: is this span a call counted already?


def counts_of(span: ReadableSpan, prices: Prices) -> SpanCounts | None:
    """What ``span`` adds; None for a tracker's own summary span, which adds nothing.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> span = TracerProvider().get_tracer("t").start_span("llm", attributes={
        ...     "llm.model_name": "m", "llm.token_count.prompt": 1000})
        >>> span.end()
        >>> counts_of(span, {"m": (2.0, 8.0)}).cost
        0.002
    """
    attributes = span.attributes or {}
    if attributes.get(_keys.SPAN_TYPE) == "summary":
        return None
    prompt, completion, total = token_counts(attributes)
    cost = reported_cost(attributes)
    if cost is None and prices:
        cost = priced(prices, model_name(attributes), prompt, completion, cache_tokens(attributes))
    return SpanCounts(
        is_llm_call(attributes),
        prompt or 0,
        completion or 0,
        total or 0,
        cost,
        span.status.status_code is StatusCode.ERROR,
        call_record(span, attributes, prompt, completion),
    )


class Totals:
    """Running totals; the owner holds its lock around :meth:`add` and reads."""

    __slots__ = ("calls", "completion", "cost", "errors", "llm_calls", "prompt", "spans", "total")

    def __init__(self) -> None:
        self.spans = self.llm_calls = self.errors = 0
        self.prompt = self.completion = self.total = 0
        self.cost: float | None = None
        self.calls = CallLedger()  # a call two spans report is counted once

    def summary(
        self,
        *,
        started_ns: int | None,
        ended_ns: int | None,
        **fields: Any,
    ) -> TrackerSummary:
        """The totals as a :class:`TrackerSummary`, with the tracker's own ``fields``."""
        end_ns = ended_ns or time.time_ns()
        return TrackerSummary(
            spans=self.spans,
            llm_calls=self.llm_calls,
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            total_tokens=self.total,
            cost_usd=self.cost,
            errors=self.errors,
            started_at=_datetime(started_ns),
            ended_at=_datetime(ended_ns),
            duration_seconds=0.0 if started_ns is None else (end_ns - started_ns) / 1e9,
            **fields,
        )

    def add(self, counts: SpanCounts) -> None:
        self.spans += 1
        self.errors += counts.failed
        if counts.call is not None and self.calls.repeats(counts.call):
            return  # another span of the same call was counted (CallLedger's rule)
        self.llm_calls += counts.llm_call
        self.prompt += counts.prompt
        self.completion += counts.completion
        self.total += counts.total
        if counts.cost is not None:
            self.cost = (self.cost or 0.0) + counts.cost


_PRICES_FORM = (
    "prices must map model names (str) to {'prompt': usd, 'completion': usd} per million "
    "tokens, e.g. {'gpt-4o-mini': {'prompt': 0.15, 'completion': 0.6}}, optionally with "
    "'cache_read' and 'cache_write' rates for cached prompt tokens, or be None"
)
_RATE_KEYS = ("prompt", "completion", "cache_read", "cache_write")


def check_prices(prices: object) -> dict[str, tuple[float, ...]]:
    """Validate ``prices`` whole before anything is kept (nothing half-applied).

    A model's rates are ``(prompt, completion)``, or with ``cache_read`` / ``cache_write``
    given, ``(prompt, completion, cache_read, cache_write)``: a cache rate left out is the
    prompt rate.

    Example:
        >>> check_prices({"claude": {"prompt": 3, "completion": 15, "cache_read": 0.3}})
        {'claude': (3.0, 15.0, 0.3, 3.0)}
    """
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise TypeError(f"{_PRICES_FORM}; got {type(prices).__name__} ({prices!r:.60})")
    checked: dict[str, tuple[float, ...]] = {}
    for model, rates in prices.items():
        if not isinstance(model, str) or not model:
            raise TypeError(f"{_PRICES_FORM}; got the model name {model!r:.60}")
        if not isinstance(rates, Mapping):
            raise TypeError(
                f"{_PRICES_FORM}; prices[{model!r}] is {type(rates).__name__} ({rates!r:.60})"
            )
        unknown = sorted(repr(key) for key in rates if key not in _RATE_KEYS)
        if unknown:
            raise ValueError(
                f"prices[{model!r}] has unknown key(s) {', '.join(unknown)}; {_PRICES_FORM}"
            )
        given: dict[str, float] = {}
        for key in _RATE_KEYS:
            if key not in rates and key.startswith("cache"):
                continue
            rate = rates.get(key, 0.0)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise TypeError(
                    f"prices[{model!r}][{key!r}] must be a number of USD per million tokens, "
                    f"got {type(rate).__name__} ({rate!r:.60})"
                )
            if not 0 <= rate < float("inf"):
                raise ValueError(
                    f"prices[{model!r}][{key!r}] must be a finite number >= 0 of USD per "
                    f"million tokens, got {rate!r}"
                )
            given[key] = float(rate)
        pair = (given["prompt"], given["completion"])
        if "cache_read" in given or "cache_write" in given:
            cached = (given.get("cache_read", pair[0]), given.get("cache_write", pair[0]))
            checked[model] = (*pair, *cached)
        else:
            checked[model] = pair
    return checked


def rates_by_name(prices: Prices) -> dict[str, dict[str, float]]:
    """Checked prices back in the form ``check_prices`` takes (a sub-tracker inherits them).

    Example:
        >>> rates_by_name({"m": (1.0, 2.0)})
        {'m': {'prompt': 1.0, 'completion': 2.0}}
    """
    return {model: dict(zip(_RATE_KEYS, rates, strict=False)) for model, rates in prices.items()}


def priced(
    prices: Prices,
    model: str | None,
    prompt: int | None,
    completion: int | None,
    cached: tuple[int, int] = (0, 0),
) -> float | None:
    """The cost of ``prompt`` and ``completion`` tokens of ``model`` at ``prices``, if priced.

    ``cached`` is the prompt tokens read from and written to a cache, which ``prompt`` holds
    (every instrumentation counts them in): with cache rates, those are priced at them.

    Example:
        >>> rates = {"claude": (3.0, 15.0, 0.3, 3.75)}
        >>> round(priced(rates, "claude", 1_000_000, 0, cached=(800_000, 100_000)), 4)
        0.915
    """
    if model is None or model not in prices or (prompt is None and completion is None):
        return None
    rates = prices[model]
    prompt_rate, completion_rate = rates[0], rates[1]
    cost = (prompt or 0) * prompt_rate + (completion or 0) * completion_rate
    if len(rates) == 4 and cached != (0, 0):
        read, written = cached
        read = min(read, prompt or 0)
        written = min(written, (prompt or 0) - read)  # never more cached than the prompt
        cost += read * (rates[2] - prompt_rate) + written * (rates[3] - prompt_rate)
    return cost / 1_000_000


def _datetime(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
