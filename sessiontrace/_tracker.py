"""SessionTracker: an agent run as a session of steps, with state snapshots and live totals.

While a tracker is started, its session, user, metadata, tags and (inside a step) the step
index are in force like any ``using_*`` block, so auto-instrumented spans carry them. Each step
is a span of its own; the tracker is told of every span that ends under it and keeps totals
(spans, LLM calls, tokens, cost, errors) as they happen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, Span, SpanContext, TraceFlags
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys, _totals
from sessiontrace._context import Entry, current_frame, here, push, stacked
from sessiontrace._frames import ObserverLink, merge
from sessiontrace._guard import guarded
from sessiontrace._observe import describe_error, record_error
from sessiontrace._propagation import outgoing_headers
from sessiontrace._totals import Totals, TrackerStatus, TrackerSummary, check_prices, counts_of
from sessiontrace._tracker_checks import agent_keys, end_args, flag, hex_id, id_or_new, positive
from sessiontrace._tracker_spans import (
    Step,
    links_for,
    open_step,
    start_session_span,
    state_with,
    undo_push,
    write_summary_span,
)
from sessiontrace._validate import check_id, check_metadata, check_tags
from sessiontrace._wrap import AsyncContextFromSync

DEFAULT_MAX_STATE_BYTES = 10_000


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
            "completion": 0.6}}`` (and ``"cache_read"``/``"cache_write"``), for spans with no cost.
        agent_name: the agent's name on the run's ``invoke_agent`` spans; ``name`` by default.
        agent_id: a stable id of the agent, if it has one (of the agent, not of the run).
        agent_description: what the agent does, e.g. ``"Books flights"``.

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
        agent_name: str | None = None,
        agent_id: str | None = None,
        agent_description: str | None = None,
        _parent: SessionTracker | None = None,
    ) -> None:
        # Every argument is checked before anything is kept: nothing is half-applied.
        generate_id = flag(generate_id, "generate_id")
        steps_as_children = flag(steps_as_children, "steps_as_children")
        self.session_id = check_id(id_or_new(session_id, generate_id), "session_id")
        self.user_id = None if user_id is None else check_id(user_id, "user_id")
        self.name = None if name is None else check_id(name, "name")
        self._agent = agent_keys(self.name, agent_name, agent_id, agent_description)
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
        self._totals = Totals()
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
        self._pushed_at: tuple[int, object] = (0, None)
        self._imperative_step: Step | None = None
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
            self._session_span = start_session_span(
                self._root_context, self.session_id, self.name, self._links(), self._agent
            )
            self._session_context = trace.set_span_in_context(
                self._session_span, self._root_context
            )
        self._token = push(self._own_frame, self, span=self._session_span)
        self._pushed_at = here()
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
        end_args(status, error)
        if self._started_ns is None:
            raise RuntimeError(f"{self!r} was never started: call start() or use `with`")
        if self._ended_ns is not None:
            return self.summary()
        if self._imperative_step is not None:
            self._imperative_step.close(error)  # raises, changing nothing, if misplaced
            self._imperative_step = None
        if self._token is not None:
            undo_push(self._token, self._pushed_at, "session")
            self._token = None
        with self._lock:
            self._status = status or ("error" if error is not None else "ok")
            if error is not None:
                self._error = describe_error(error)
            self._ended_ns = time.time_ns()
        summary = self.summary()
        try:
            with guarded("SessionTracker end"):
                write_summary_span(self._parent_context(), summary, self.name, error)
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
    def step(self, name: str | None = None) -> Step:
        """A block for the next step: ``with tracker.step("search"):`` (or ``async with``).

        The step is a span (the root of a new trace by default); every span inside carries
        ``sessiontrace.step.index``.

        Raises:
            StepLimitError: ``max_steps`` steps were taken already.
            RuntimeError: the tracker is not started, or has ended.
        """
        return Step(self, -1, None if name is None else check_id(name, "name"))

    def next_step(self, name: str | None = None) -> int:
        """Close the step opened by the last ``next_step()`` (if any) and open the next one.

        For code that does not use blocks. Returns the new step's index.
        """
        step = Step(self, -1, None if name is None else check_id(name, "name"))
        step.check_can_begin()
        if self._imperative_step is not None:
            previous, self._imperative_step = self._imperative_step, None
            previous.close(None)
        step.begin()
        self._imperative_step = step
        return step.index

    def set_state(self, key: str, value: Any) -> None:
        """Set one key of the agent's state; the step's snapshot is written once, on its span.

        State carries over: each step starts with the state the previous one left, so a
        step's snapshot is the whole state at the end of that step, not only its changes.

        Raises:
            RuntimeError: no step of this tracker is open here.
            TypeError: ``value`` is not JSON-serialisable.
            ValueError: the step's snapshot would exceed ``max_state_bytes``.
        """
        step = open_step()
        if step is None or step.tracker is not self:
            raise RuntimeError(
                "set_state() needs an open step of this tracker: call it inside "
                "`with tracker.step(...)` or after tracker.next_step()"
            )
        step.state = state_with(step, key, value, self.max_state_bytes)
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
        agent_name: str | None = None,
        agent_id: str | None = None,
        agent_description: str | None = None,
    ) -> SessionTracker:
        """A tracker for a sub-agent: its spans carry this session as parent and its steps
        link to this tracker's current step; its totals roll into this tracker's.

        User, metadata and tags default to this tracker's; the agent is the sub-agent's own
        (``agent_name`` defaults to the child's ``name``).
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
            prices=_totals.rates_by_name(self._prices),
            agent_name=agent_name,
            agent_id=agent_id,
            agent_description=agent_description,
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
        parent = self._parent
        if parent is None:
            return links_for(self._remote_parents, None, None)
        return links_for(self._remote_parents, parent.session_id, parent._step_span())

    def _step_span(self) -> Span | None:
        """The span of this tracker's step in force here, else its last step's or session's."""
        step = open_step()
        span = step.span if step is not None and step.tracker is self else None
        return span or self._last_step_span or self._session_span

    # --- totals -----------------------------------------------------------------------
    def span_ended(self, span: ReadableSpan) -> None:
        counts = counts_of(span, self._prices)
        if counts is None:
            return
        tracker: SessionTracker | None = self
        while tracker is not None:  # a sub-session's spans count for its parents too
            with tracker._lock:
                tracker._totals.add(counts)
            tracker = tracker._parent

    def summary(self) -> TrackerSummary:
        """The totals now, as an immutable model (safe to call at any time, from any thread)."""
        with self._lock:
            return self._totals.summary(
                session_id=self.session_id,
                name=self.name,
                user_id=self.user_id,
                parent_session_id=None if self._parent is None else self._parent.session_id,
                status=self._status,
                error=self._error,
                steps=self._steps,
                started_ns=self._started_ns,
                ended_ns=self._ended_ns,
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
        step = open_step()
        index = step.index if step is not None and step.tracker is self else None
        return outgoing_headers(self.session_id, self.user_id, index, self._step_span())
