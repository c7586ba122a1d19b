"""SessionTracker: an agent run as a session of steps, with state snapshots and live totals.

While a tracker is started, its session, user, metadata, tags and (inside a step) the step
index are in force like any ``using_*`` block, so auto-instrumented spans carry them. Each step
is a span of its own; the tracker is told of every span that ends under it and keeps totals
(spans, LLM calls, tokens, cost, errors) as they happen.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType, TracebackType
from typing import Any, Literal

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from pydantic import BaseModel, ConfigDict

from sessiontrace import _keys
from sessiontrace._context import Entry, current_frame, entries, pop, push, stacked
from sessiontrace._frames import ObserverLink, merge
from sessiontrace._guard import guarded
from sessiontrace._observe import describe_error, record_error
from sessiontrace._tracker_checks import check_prices, flag, hex_id, positive, priced
from sessiontrace._usage import is_llm_call, model_name, reported_cost, token_counts
from sessiontrace._validate import check_id, check_metadata, check_state, check_tags, encode_json
from sessiontrace._version import __version__
from sessiontrace._wrap import AsyncContextFromSync

logger = logging.getLogger("sessiontrace")
_tracer = trace.get_tracer("sessiontrace", __version__)

DEFAULT_MAX_STATE_BYTES = 10_000
TrackerStatus = Literal["running", "ok", "error"]


class StepLimitError(RuntimeError):
    """Raised by ``step()``/``next_step()`` when a tracker's ``max_steps`` is reached."""


class TrackerSummary(BaseModel):
    """Totals of a tracker at one moment; immutable. Tokens and cost include sub-sessions.

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


class _Totals:
    __slots__ = ("completion", "cost", "errors", "llm_calls", "prompt", "spans", "total")

    def __init__(self) -> None:
        self.spans = self.llm_calls = self.errors = 0
        self.prompt = self.completion = self.total = 0
        self.cost: float | None = None


def _open_step() -> _Step | None:
    """The innermost step in force here, whichever tracker it belongs to."""
    for entry in entries():
        if type(entry.owner) is _Step:
            return entry.owner
    return None


class _Step(AsyncContextFromSync):
    """One step: its span, its state, and how to undo putting it in force."""

    __slots__ = ("_token", "index", "name", "span", "state", "tracker")

    def __init__(self, tracker: SessionTracker, index: int, name: str | None) -> None:
        self.tracker = tracker
        self.index = index
        self.name = name
        self.state: dict[str, Any] = {}
        self.span: Span | None = None
        self._token: Entry | None = None

    def open(self) -> None:
        tracker = self.tracker
        self.state = (
            tracker._state
        )  # the state carries over: each step starts where the last left it
        attributes: dict[str, AttributeValue] = {
            _keys.SPAN_TYPE: "step",
            _keys.STEP_INDEX: self.index,
        }
        if self.name:
            attributes[_keys.STEP_NAME] = self.name
        if tracker._remote_traces:
            attributes[_keys.PARENT_TRACE_IDS] = tuple(tracker._remote_traces)
        name = f"step {self.index}" + (f": {self.name}" if self.name else "")
        parent = tracker._parent_context()
        # The step span starts in the tracker's context, as a root (or under the session span).
        self.span = _tracer.start_span(
            name, context=parent, attributes=attributes, links=tracker._links()
        )
        frame = merge(
            tracker._own_frame, extra={_keys.STEP_INDEX: self.index}, observer=tracker._link
        )
        self._token = push(frame, self, span=self.span)

    def close(self, error: BaseException | None) -> None:
        # Undo the context first: from the wrong thread or task this raises and changes nothing.
        if self._token is not None:
            _pop(self._token, "step")
            self._token = None
        span = self.span
        if span is not None:
            with guarded("SessionTracker step end"):
                if self.state:
                    span.set_attribute(_keys.STATE, encode_json(self.state))
                if error is not None:
                    record_error(span, error)
                span.end()

    # A step is its own context manager: `with tracker.step("plan"):`.
    def __enter__(self) -> _Step:
        self.tracker._begin_step(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(exc)


def _pop(token: Entry, what: str) -> None:
    if not pop(token):
        raise RuntimeError(
            f"the tracker's {what} was ended in another thread or asyncio task than the one "
            "that started it; start and end it in the same one (or use `with`)"
        )


class SessionTracker(AsyncContextFromSync):
    """An agent run as one session: steps, state snapshots, sub-sessions and live totals.

    Use it as a context manager (``with`` / ``async with``) or call ``start()`` and ``end()``.
    While started, the session, user, metadata and tags are in force for every span, and
    inside a step so is the step index (``sessiontrace.step.index``).

    Args:
        session_id: the session id; a unique one (``uuid4().hex``) is made when None.
        user_id: the user id.
        name: a name for the run, e.g. ``"book-flight"``.
        metadata: str keys to JSON-serialisable values, as ``using_metadata``.
        tags: a list of str, as ``using_tags``.
        max_steps: the most steps allowed; one more raises ``StepLimitError``.
        generate_id: with False, a missing ``session_id`` is a ``ValueError``.
        steps_as_children: make steps children of one session span instead of each the root
            of its own trace (the default, so each step is one trace in a session view).
        max_state_bytes: the largest state snapshot per step, as JSON (default 10,000).
        prices: USD per million tokens per model, e.g. ``{"gpt-4o-mini": {"prompt": 0.15,
            "completion": 0.6}}``, used for spans that carry no cost of their own.

    Example:
        >>> from sessiontrace import SessionTracker
        >>> with SessionTracker(name="book-flight", user_id="ada") as tracker:
        ...     with tracker.step("plan"):
        ...         tracker.set_state("goal", "flight to Oslo")
        >>> tracker.summary().steps
        1
    """

    def __init__(
        self,
        session_id: str | None = None,
        *,
        user_id: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        max_steps: int | None = None,
        generate_id: bool = True,
        steps_as_children: bool = False,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
        prices: Mapping[str, Mapping[str, float]] | None = None,
        _parent: SessionTracker | None = None,
    ) -> None:
        # Every argument is checked before anything is kept: nothing is half-applied.
        generate_id = flag(generate_id, "generate_id")
        steps_as_children = flag(steps_as_children, "steps_as_children")
        if session_id is None:
            if not generate_id:
                raise ValueError(
                    "session_id is None and generate_id=False: pass a session_id, or leave "
                    "generate_id on to get a unique one"
                )
            session_id = uuid.uuid4().hex
        self.session_id = check_id(session_id, "session_id")
        self.user_id = None if user_id is None else check_id(user_id, "user_id")
        self.name = None if name is None else check_id(name, "name")
        self._metadata: Mapping[str, Any] = (
            MappingProxyType({}) if metadata is None else check_metadata(metadata)
        )
        self._tags = () if tags is None else check_tags(tags)
        self.max_steps = positive(max_steps, "max_steps", allow_none=True)
        self.max_state_bytes: int = (
            positive(max_state_bytes, "max_state_bytes", allow_none=False) or 0
        )
        self._prices = check_prices(prices)
        self._steps_as_children = steps_as_children
        self._parent = _parent
        self._remote_parents: list[SpanContext] = []
        self._remote_traces: list[str] = []

        self._lock = threading.Lock()
        # What frames hold of this tracker: a weak reference, so no cache keeps it alive.
        self._link = ObserverLink(self)
        self._totals = _Totals()
        self._steps = 0
        self._children: list[SessionTracker] = []
        self._status: TrackerStatus = "running"
        self._error: str | None = None
        self._started_ns: int | None = None
        self._ended_ns: int | None = None
        self._session_span: Span | None = None
        self._session_context = Context()
        self._root_context = Context()
        self._own_frame: Any = None
        self._token: Entry | None = None
        self._imperative_step: _Step | None = None
        self._state: dict[str, Any] = {}  # the agent's state as the last set_state left it
        self._last_step_span: Span | None = None

    def __repr__(self) -> str:
        return f"SessionTracker({self.session_id!r}, name={self.name!r}, status={self._status!r})"

    # --- lifecycle ---------------------------------------------------------------------
    def _frame(self) -> Any:
        extra: dict[str, AttributeValue] = {}
        if self._parent is not None:
            extra[_keys.PARENT_SESSION_ID] = self._parent.session_id
        return merge(
            current_frame(),
            session_id=self.session_id,
            user_id=self.user_id,
            metadata=self._metadata or None,
            tags=self._tags,
            extra=extra,
            observer=self._link,
        )

    def start(self) -> SessionTracker:
        """Start the session: its values are in force until ``end()``.

        Raises:
            RuntimeError: it was started before.
        """
        if self._started_ns is not None:
            raise RuntimeError(f"{self!r} was already started; a tracker runs once")
        self._started_ns = time.time_ns()
        self._own_frame = self._frame()
        # A root context with the tracker in force: steps and the summary start from it, so
        # they are stamped wherever step() and end() are called from.
        self._root_context = stacked(self._own_frame, self, Context())
        if self._steps_as_children:
            attributes: dict[str, AttributeValue] = {_keys.SPAN_TYPE: "session"}
            if self.name:
                attributes[_keys.SESSION_NAME] = self.name
            self._session_span = _tracer.start_span(
                f"session {self.name or self.session_id}",
                context=self._root_context,
                attributes=attributes,
                links=self._links(),
            )
            self._session_context = trace.set_span_in_context(
                self._session_span, self._root_context
            )
        self._token = push(self._own_frame, self, span=self._session_span)
        return self

    def end(
        self, status: Literal["ok", "error"] | None = None, *, error: BaseException | None = None
    ) -> TrackerSummary:
        """End the session: close an open step, write the summary span, restore the context.

        Args:
            status: ``"ok"`` or ``"error"``; by default "error" when ``error`` is given.
            error: the exception that ended the run, recorded on the session and summary.

        Returns:
            The final summary.
        """
        if status not in (None, "ok", "error"):
            raise ValueError(f"status must be 'ok', 'error' or None, got {status!r:.60}")
        if error is not None and not isinstance(error, BaseException):
            raise TypeError(
                f"error must be the exception that ended the run, or None; got "
                f"{type(error).__name__} ({error!r:.60})"
            )
        if self._started_ns is None:
            raise RuntimeError(f"{self!r} was never started: call start() or use `with`")
        if self._ended_ns is not None:
            return self.summary()
        if self._imperative_step is not None:
            self._imperative_step.close(error)  # raises, changing nothing, if misplaced
            self._imperative_step = None
        if self._token is not None:
            _pop(self._token, "session")
            self._token = None
        with self._lock:
            self._status = status or ("error" if error is not None else "ok")
            if error is not None:
                self._error = describe_error(error)
            self._ended_ns = time.time_ns()
        summary = self.summary()
        try:
            with guarded("SessionTracker end"):
                self._write_summary(summary, error)
                if self._session_span is not None:
                    span = self._session_span
                    span.set_attribute(_keys.STATUS, summary.status)
                    if error is not None:
                        record_error(span, error)
                    span.end()
        finally:
            # Spans started under this tracker that never end are forgotten with it.
            self._link.close()
        return summary

    def _parent_context(self) -> Context:
        """Where this tracker's own spans start: under the session span, or as roots."""
        return self._session_context if self._session_span is not None else self._root_context

    def _write_summary(self, summary: TrackerSummary, error: BaseException | None) -> None:
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
        if self.name:
            attributes[_keys.SESSION_NAME] = self.name
        span = _tracer.start_span(
            "sessiontrace.summary", context=self._parent_context(), attributes=attributes
        )
        if error is not None:
            # As observe() and steps do: an exception event (type, message, stack) and status.
            record_error(span, error)
        elif summary.status == "error":
            span.set_status(Status(StatusCode.ERROR, summary.error))
        span.end()

    def __enter__(self) -> SessionTracker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end(error=exc)

    # --- steps ---------------------------------------------------------------------------
    def step(self, name: str | None = None) -> _Step:
        """A block for the next step: ``with tracker.step("search"):`` (or ``async with``).

        The step is a span (the root of a new trace by default); every span inside carries
        ``sessiontrace.step.index``.

        Raises:
            StepLimitError: ``max_steps`` steps were taken already.
            RuntimeError: the tracker is not started, or has ended.
        """
        return _Step(self, -1, None if name is None else check_id(name, "name"))

    def next_step(self, name: str | None = None) -> int:
        """Close the step opened by the last ``next_step()`` (if any) and open the next one.

        For code that does not use blocks. Returns the new step's index.
        """
        step = _Step(self, -1, None if name is None else check_id(name, "name"))
        self._check_can_step(step)
        if self._imperative_step is not None:
            previous, self._imperative_step = self._imperative_step, None
            previous.close(None)
        self._begin_step(step)
        self._imperative_step = step
        return step.index

    def _check_can_step(self, step: _Step) -> None:
        if self._started_ns is None or self._ended_ns is not None:
            raise RuntimeError(
                f"{self!r} is not running: steps go between start() and end() (or inside `with`)"
            )
        if self.max_steps is not None and self._steps >= self.max_steps:
            raise StepLimitError(
                f"max_steps={self.max_steps} reached: step {self._steps} "
                f"({step.name or 'unnamed'}) would exceed it; raise max_steps or end the run"
            )

    def _begin_step(self, step: _Step) -> None:
        with self._lock:
            self._check_can_step(step)
            step.index = self._steps
            self._steps += 1
        step.open()
        self._last_step_span = step.span

    def set_state(self, key: str, value: Any) -> None:
        """Set one key of the agent's state; the step's snapshot is written once, on its span.

        State carries over: each step starts with the state the previous one left, so a
        step's snapshot is the whole state at the end of that step, not only its changes.

        Raises:
            RuntimeError: no step of this tracker is open here.
            TypeError: ``value`` is not JSON-serialisable.
            ValueError: the step's snapshot would exceed ``max_state_bytes``.
        """
        step = _open_step()
        if step is None or step.tracker is not self:
            raise RuntimeError(
                "set_state() needs an open step of this tracker: call it inside "
                "`with tracker.step(...)` or after tracker.next_step()"
            )
        check_state(key, value)
        candidate = {**step.state, key: value}
        try:
            text = encode_json(candidate)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"state {key!r} is not JSON-serialisable ({error}); convert it first"
            ) from None
        size = len(text.encode("utf-8"))
        if size > self.max_state_bytes:
            raise ValueError(
                f"step {step.index}'s state would be {size} bytes as JSON with {key!r}; the "
                f"limit is {self.max_state_bytes} (max_state_bytes): store less, or a "
                "reference to it"
            )
        step.state = json.loads(text)  # a private deep copy
        with self._lock:
            self._state = step.state

    # --- sub-sessions and links -----------------------------------------------------------
    def child(
        self,
        name: str | None = None,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        max_steps: int | None = None,
    ) -> SessionTracker:
        """A tracker for a sub-agent: its spans carry this session as parent and its steps
        link to this tracker's current step; its totals roll into this tracker's.

        User, metadata and tags default to this tracker's.
        """
        child = SessionTracker(
            session_id,
            user_id=user_id if user_id is not None else self.user_id,
            name=name,
            metadata=metadata if metadata is not None else dict(self._metadata) or None,
            tags=tags if tags is not None else self._tags or None,
            max_steps=max_steps,
            steps_as_children=self._steps_as_children,
            max_state_bytes=self.max_state_bytes,
            prices={m: {"prompt": p, "completion": c} for m, (p, c) in self._prices.items()},
            _parent=self,
        )
        with self._lock:
            self._children.append(child)
        return child

    def set_parent(self, trace_id: str | int, span_id: str | int | None = None) -> None:
        """Link this session's steps to work done elsewhere, e.g. another service's trace.

        Args:
            trace_id: 32 hex digits (as in ``traceparent``) or an int.
            span_id: 16 hex digits or an int. With it, steps get an OpenTelemetry link to that
                span; without it (a link needs a real span), the trace id is recorded on the
                steps as ``sessiontrace.parent_trace.ids`` instead.
        """
        trace_number = hex_id(trace_id, "trace_id", 32)
        if span_id is None:
            self._remote_traces.append(format(trace_number, "032x"))
            return
        span_number = hex_id(span_id, "span_id", 16)
        self._remote_parents.append(
            SpanContext(trace_number, span_number, is_remote=True, trace_flags=TraceFlags(1))
        )

    def _links(self) -> list[Link]:
        links = [Link(context) for context in self._remote_parents]
        parent = self._parent
        if parent is not None:
            step = _open_step()
            span = step.span if step is not None and step.tracker is parent else None
            span = span or parent._last_step_span or parent._session_span
            if span is not None:
                links.append(
                    Link(span.get_span_context(), {_keys.PARENT_SESSION_ID: parent.session_id})
                )
        return links

    # --- totals -----------------------------------------------------------------------
    def span_ended(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        if attributes.get(_keys.SPAN_TYPE) == "summary":
            return
        llm = is_llm_call(attributes)
        prompt, completion, total = token_counts(attributes)
        cost = reported_cost(attributes)
        if cost is None and self._prices:
            cost = priced(self._prices, model_name(attributes), prompt, completion)
        failed = span.status.status_code is StatusCode.ERROR
        tracker: SessionTracker | None = self
        while tracker is not None:  # a sub-session's spans count for its parents too
            with tracker._lock:
                totals = tracker._totals
                totals.spans += 1
                totals.llm_calls += llm
                totals.prompt += prompt or 0
                totals.completion += completion or 0
                totals.total += total or 0
                totals.errors += failed
                if cost is not None:
                    totals.cost = (totals.cost or 0.0) + cost
            tracker = tracker._parent

    def summary(self) -> TrackerSummary:
        """The totals now, as an immutable model (safe to call at any time, from any thread)."""
        with self._lock:
            totals = self._totals
            end_ns = self._ended_ns or time.time_ns()
            started = self._started_ns
            return TrackerSummary(
                session_id=self.session_id,
                name=self.name,
                user_id=self.user_id,
                parent_session_id=None if self._parent is None else self._parent.session_id,
                status=self._status,
                error=self._error,
                steps=self._steps,
                spans=totals.spans,
                llm_calls=totals.llm_calls,
                prompt_tokens=totals.prompt,
                completion_tokens=totals.completion,
                total_tokens=totals.total,
                cost_usd=totals.cost,
                errors=totals.errors,
                started_at=_datetime(started),
                ended_at=_datetime(self._ended_ns),
                duration_seconds=0.0 if started is None else (end_ns - started) / 1e9,
                children=tuple(child.session_id for child in self._children),
            )

    # --- across services ---------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        """Headers for an outgoing HTTP call: ``traceparent``, ``baggage``, ``X-Session-Id``.

        ``baggage`` carries the session id, user id and step index (W3C baggage, standard
        OpenTelemetry propagators); ``traceparent`` points at the current step's span.
        Every value is visible ASCII, so any HTTP server accepts it: baggage values are
        percent-encoded UTF-8 (W3C), and ``X-Session-Id`` is percent-encoded the way the
        sessiontrace middlewares decode it, so the id arrives unchanged.

        Example:
            >>> from sessiontrace import SessionTracker
            >>> SessionTracker(session_id="café 1").headers()["X-Session-Id"]
            'caf%C3%A9%201'
        """
        from sessiontrace.integrations._inbound import encode_id  # the middlewares' rule

        step = _open_step()
        span = step.span if step is not None and step.tracker is self else None
        span = span or self._last_step_span or self._session_span
        context = Context()
        if span is not None:
            context = trace.set_span_in_context(span, context)
        baggage_values: dict[str, object] = {_keys.BAGGAGE_SESSION_ID: self.session_id}
        if self.user_id is not None:
            baggage_values[_keys.BAGGAGE_USER_ID] = self.user_id
        if step is not None and step.tracker is self:
            baggage_values[_keys.BAGGAGE_STEP_INDEX] = str(step.index)
        for key, value in baggage_values.items():
            context = baggage.set_baggage(key, value, context)
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context)
        W3CBaggagePropagator().inject(carrier, context)
        carrier[_keys.SESSION_HEADER] = encode_id(self.session_id)
        return carrier


def _datetime(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
