"""The spans a tracker writes: one per step, in force like a block, and its summary.

``SessionTracker.step()`` makes a :class:`Step`; beginning it takes the next index (within
``max_steps``) and pushes the tracker's frame plus the step index (``_context.push``, owned by
the step), so every span inside carries ``sessiontrace.step.index``; closing it writes the
state snapshot on the step's span and ends it. A step that is the root of its trace (the
default) is the agent's ``invoke_agent`` span there; under a session span, the session span
is, and the step is a plain span. The step in force is found among the context's
entries (:func:`open_step`). At its end a tracker writes one summary span of its totals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._context import Entry, current_frame, entries, here, push, undo
from sessiontrace._frames import EMPTY_FRAME, merge
from sessiontrace._genai_agent import NO_ATTRIBUTES
from sessiontrace._guard import guarded
from sessiontrace._json_values import encode_json
from sessiontrace._observe import record_error
from sessiontrace._totals import TrackerSummary, summary_attributes
from sessiontrace._validate import check_state
from sessiontrace._version import __version__
from sessiontrace._wrap import AsyncContextFromSync

if TYPE_CHECKING:
    from sessiontrace._tracker import SessionTracker

tracer = trace.get_tracer("sessiontrace", __version__)


class StepLimitError(RuntimeError):
    """Raised by ``step()``/``next_step()`` when a tracker's ``max_steps`` is reached."""


def open_step() -> Step | None:
    """The innermost step in force here, whichever tracker it belongs to.

    None inside ``without_session()``: nothing from sessiontrace is in force there, steps
    included (its cleared frame hides the entries under it).
    """
    for entry in entries():
        if type(entry.owner) is Step:
            return entry.owner
        if entry.frame is EMPTY_FRAME:
            return None
    return None


class Step(AsyncContextFromSync):
    """One step: its span, its state, and how to undo putting it in force."""

    __slots__ = ("_pushed_at", "_token", "index", "name", "span", "state", "tracker")

    def __init__(self, tracker: SessionTracker, index: int, name: str | None) -> None:
        self.tracker = tracker
        self.index = index
        self.name = name
        self.state: dict[str, Any] = {}
        self.span: Span | None = None
        self._token: Entry | None = None
        self._pushed_at: tuple[int, object] = (0, None)

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
        if not tracker._steps_as_children:
            # The root of its own trace, so the agent's turn there: invoke_agent (_genai_agent).
            attributes.update(tracker._agent)
        name = f"step {self.index}" + (f": {self.name}" if self.name else "")
        parent = tracker._parent_context()
        # The step span starts in the tracker's context, as a root (or under the session span).
        self.span = tracer.start_span(
            name, context=parent, attributes=attributes, links=tracker._links()
        )
        # Over what is in force here when the tracker is (blocks opened inside it, such as a
        # using_metadata() around the step, stay in force in the step), else over the
        # tracker's own values (a step opened where the tracker is not, e.g. another thread).
        # The tracker's session wins either way: the step is its.
        outer = current_frame()
        if outer is None or not any(entry.owner is tracker for entry in entries()):
            outer = tracker._own_frame
        frame = merge(
            outer,
            session_id=tracker.session_id,
            extra={**tracker._own_frame.extra, _keys.STEP_INDEX: self.index},
            observer=tracker._link,
        )
        self._token = push(frame, self, span=self.span)
        self._pushed_at = here()

    def close(self, error: BaseException | None) -> None:
        # Undo the context first: from the wrong thread or task this raises and changes nothing.
        if self._token is not None:
            undo_push(self._token, self._pushed_at, "step")
            self._token = None
        span = self.span
        if span is not None:
            with guarded("SessionTracker step end"):
                if self.state:
                    span.set_attribute(_keys.STATE, encode_json(self.state))
                if error is not None:
                    record_error(span, error)
                span.end()

    def check_can_begin(self) -> None:
        """Raise unless the tracker is running and below ``max_steps``."""
        tracker = self.tracker
        if tracker._started_ns is None or tracker._ended_ns is not None:
            raise RuntimeError(
                f"{tracker!r} is not running: steps go between start() and end() (or inside "
                "`with`)"
            )
        if tracker.max_steps is not None and tracker._steps >= tracker.max_steps:
            raise StepLimitError(
                f"max_steps={tracker.max_steps} reached: step {tracker._steps} "
                f"({self.name or 'unnamed'}) would exceed it; raise max_steps or end the run"
            )

    def begin(self) -> None:
        """Take the tracker's next step index and open the step."""
        tracker = self.tracker
        with tracker._lock:
            self.check_can_begin()
            self.index = tracker._steps
            tracker._steps += 1
        self.open()
        tracker._last_step_span = self.span

    # A step is its own context manager: `with tracker.step("plan"):`.
    def __enter__(self) -> Step:
        self.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(exc)


def undo_push(token: Entry, pushed_at: tuple[int, object], what: str) -> None:
    """Undo a tracker's or step's push (see ``_context.undo``); raise and change nothing where
    that would be wrong."""
    undo(
        token,
        pushed_at,
        f"the tracker's {what} was ended",
        f"start and end the {what} in the same thread or task and at the same level (or use "
        "`with`)",
    )


def state_with(step: Step, key: str, value: Any, max_bytes: int) -> dict[str, Any]:
    """``step``'s state with ``key`` set to ``value``, as a private deep copy; or raise.

    Raises:
        TypeError: ``value`` is not JSON-serialisable.
        ValueError: the snapshot would exceed ``max_bytes`` as JSON.
    """
    check_state(key, value)
    candidate = {**step.state, key: value}
    try:
        text = encode_json(candidate)
    except (TypeError, ValueError) as error:
        message = f"state {key!r} is not JSON-serialisable ({error}); convert it first"
        raise TypeError(message) from None
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValueError(
            f"step {step.index}'s state would be {size} bytes as JSON with {key!r}; the "
            f"limit is {max_bytes} (max_state_bytes): store less, or a reference to it"
        )
    copy: dict[str, Any] = json.loads(text)
    return copy


def start_session_span(
    context: Context,
    session_id: str,
    name: str | None,
    links: list[Link],
    agent: Mapping[str, AttributeValue] = NO_ATTRIBUTES,
) -> Span:
    """Start the span a tracker's steps are children of (``steps_as_children=True``): the
    run's root, and so its ``invoke_agent`` span, with the ``agent`` keys (_genai_agent)."""
    attributes: dict[str, AttributeValue] = {_keys.SPAN_TYPE: "session"}
    if name:
        attributes[_keys.SESSION_NAME] = name
    attributes.update(agent)
    return tracer.start_span(
        f"session {name or session_id}", context=context, attributes=attributes, links=links
    )


def links_for(
    remote: list[SpanContext], parent_session_id: str | None, parent_step: Span | None
) -> list[Link]:
    """Links for a tracker's spans: to remote parents, and to its parent tracker's step."""
    links = [Link(context) for context in remote]
    if parent_session_id is not None and parent_step is not None:
        attributes = {_keys.PARENT_SESSION_ID: parent_session_id}
        links.append(Link(parent_step.get_span_context(), attributes))
    return links


def write_summary_span(
    context: Context, summary: TrackerSummary, name: str | None, error: BaseException | None
) -> None:
    """Write the tracker's summary span (``sessiontrace.summary.*``) in ``context``."""
    span = tracer.start_span(
        "sessiontrace.summary", context=context, attributes=summary_attributes(summary, name)
    )
    if error is not None:
        # As observe() and steps do: an exception event (type, message, stack) and status.
        record_error(span, error)
    elif summary.status == "error":
        span.set_status(Status(StatusCode.ERROR, summary.error))
    span.end()
