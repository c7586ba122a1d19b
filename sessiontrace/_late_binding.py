"""update_current_trace(): bind session values to the current trace after it has started.

Code written for Langfuse learns the session inside a traced function (``@observe()``, then
``langfuse.update_current_trace(session_id=...)``), when the root span and maybe some children
have started, or even ended, without it. A *binding* ties values to a trace id; it reaches:

1. the spans of the trace still open in this process, stamped at the call (each
   ``SessionSpanProcessor`` keeps a weak reference to every span it starts, in a set the
   reference leaves when its span is freed: one weakref and one set add per span, nothing at
   its end, and nothing kept of a span the application dropped);
2. the spans of the trace that start later, in any thread or task (``on_start`` looks the
   trace id up), and outgoing calls (the baggage propagator and ``carrier()`` read the binding
   of the current span's trace through :func:`frame_in`);
3. the spans that ended before the call and are still on sessiontrace's export path
   (``configure()``): each destination's batch step, :class:`BindAtExport`, sends a copy with
   the keys they lack.

A span never loses what it has: values in force where a span starts, and attributes
instrumentation set, are kept; the binding fills in what is missing. What a binding cannot reach
(spans that had left the export path before the call) is counted per trace and destination, so
the call can say how many. Bindings are kept for the ``MAX_BINDINGS`` traces bound last; a
forked child starts with none (``os.register_at_fork``).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan

from sessiontrace._context import entry_in, get_current
from sessiontrace._frames import Frame, merge
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._spans import copy_span
from sessiontrace._validate import check_id, check_metadata, check_tags

logger = logging.getLogger("sessiontrace")

# The traces whose bindings are kept: past it, the trace bound longest ago is forgotten (its
# spans that start or are exported later go without the values).
MAX_BINDINGS = 4096
# Traces whose exported spans each destination counts.
MAX_COUNTED_TRACES = 16_384

# One lock for every write below; readers on the span path (``bindings.get``) take none.
_lock = threading.Lock()
# trace id -> the frame bound to it, oldest first. Only ever cleared, never rebound: the
# processor imports the dict itself.
bindings: dict[int, Frame] = {}
_warn = LogOnce()


class OpenSpans(Protocol):
    """What a binding needs of a processor (``SessionSpanProcessor``): its open spans."""

    _open: set[weakref.ref[Any]]

    def stamp_late(self, span: Any, frame: Frame) -> None: ...


_processors: weakref.WeakSet[Any] = weakref.WeakSet()
_ledgers: weakref.WeakSet[ExportLedger] = weakref.WeakSet()


def track(processor: OpenSpans) -> None:
    """Let bindings reach ``processor``'s open spans (called by its ``__init__``)."""
    _processors.add(processor)


@dataclass(frozen=True)
class TraceBinding:
    """What :func:`update_current_trace` reached.

    Attributes:
        trace_id: the trace bound, 32 hex digits; None when there was no current span.
        bound: whether the values were bound (False: no current span).
        stamped_open: spans of the trace open in this process, stamped at the call.
        pending_export: spans of the trace that had ended and wait in an export queue;
            they are stamped as they are exported (spans being exported at that very moment
            are not counted, but stamped).
        already_exported: spans of the trace that had left sessiontrace's export path
            before the call, without the values: they cannot be reached any more.
        reason: why nothing was bound, or what could not be reached; "" when all was.

    Example:
        >>> TraceBinding("0" * 32, True, 2, 1, 0, "").stamped_open
        2
    """

    trace_id: str | None
    bound: bool
    stamped_open: int
    pending_export: int
    already_exported: int
    reason: str


def update_current_trace(
    session_id: str | None = None,
    *,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
) -> TraceBinding:
    """Bind values to the current trace: its open spans, its later spans, its queued spans.

    For code that learns the session inside a traced function, as with Langfuse's
    ``update_current_trace``. The trace is that of the span current in the OpenTelemetry
    context. Its spans still open in this process (the root too) are stamped now; spans that
    start later in the trace, in any thread or task that carries the context, are stamped as
    they start; spans that already ended but are still queued for export by ``configure()``
    are stamped as they are exported. Outgoing calls in the trace carry the session and user
    in their ``baggage``. A span keeps what it already has (values in force where it started,
    attributes its instrumentation set): the binding fills in the rest. Calling it again
    merges, as nested blocks do; a value already stamped on a span stays.

    Args:
        session_id: the session of the trace; None leaves it as is.
        user_id: the user; None leaves it as is.
        metadata: str keys to JSON-serialisable values, merged key by key.
        tags: a list of str, added to the trace's tags.

    Returns:
        A :class:`TraceBinding` with the counts of spans reached and not reached. With no
        current span nothing is bound: ``bound`` is False and a warning is logged once.

    Raises:
        TypeError: no value was given, or one has the wrong type.
        ValueError: a value breaks the rules of ``using_attributes`` (the message says which).

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from sessiontrace import SessionSpanProcessor, update_current_trace
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SessionSpanProcessor())
        >>> with provider.get_tracer("demo").start_as_current_span("request") as root:
        ...     result = update_current_trace(session_id="chat-42", user_id="ada")
        >>> root.attributes["session.id"], result.stamped_open
        ('chat-42', 1)
    """
    checked_session = None if session_id is None else check_id(session_id, "session_id")
    checked_user = None if user_id is None else check_id(user_id, "user_id")
    checked_metadata = None if metadata is None else check_metadata(metadata)
    checked_tags = () if tags is None else check_tags(tags)
    if checked_session is None and checked_user is None and metadata is None and tags is None:
        raise TypeError(
            "update_current_trace() needs at least one of session_id, user_id, metadata or "
            "tags, e.g. update_current_trace(session_id=conversation_id)"
        )
    span_context = trace.get_current_span(get_current()).get_span_context()
    if not span_context.is_valid:
        _warn.log(
            "no-span",
            "sessiontrace: update_current_trace() was called with no current span, so there "
            "is no trace to bind and nothing was bound; call it inside a traced function or "
            "span (or put the values in force with using_attributes() before the trace "
            "starts). This message is logged once.",
        )
        return TraceBinding(None, False, 0, 0, 0, "no current span: nothing was bound")
    trace_id = span_context.trace_id
    hex_id = format(trace_id, "032x")
    with guarded("update_current_trace"):
        with _lock:
            frame = merge(
                bindings.pop(trace_id, None),
                session_id=checked_session,
                user_id=checked_user,
                metadata=checked_metadata,
                tags=checked_tags,
            )
            bindings[trace_id] = frame  # now the newest
            while len(bindings) > MAX_BINDINGS:
                del bindings[next(iter(bindings))]
            exported = max((ledger.counts.get(trace_id, 0) for ledger in _ledgers), default=0)
        stamped = _stamp_open(trace_id, frame)
        pending = _queued(trace_id)
        reason = ""
        if exported:
            reason = (
                f"{exported} span(s) of this trace had been exported before the call, "
                "without these values; call update_current_trace() earlier (before those "
                "spans end) or put the values in force with using_attributes() around them"
            )
        return TraceBinding(hex_id, True, stamped, pending, exported, reason)
    return TraceBinding(hex_id, False, 0, 0, 0, "an internal error (logged): nothing bound")


def _stamp_open(trace_id: int, frame: Frame) -> int:
    """Stamp ``frame`` on every span of ``trace_id`` still open; how many there were."""
    stamped: set[int] = set()
    for processor in list(_processors):
        for held in _copy(processor._open):
            span = held()
            if span is None or not span.is_recording():
                continue
            span_context = span.get_span_context()
            if span_context.trace_id == trace_id:
                processor.stamp_late(span, frame)
                stamped.add(span_context.span_id)
    return len(stamped)


def _copy(opened: set[weakref.ref[Any]]) -> set[weakref.ref[Any]]:
    # Spans start and are freed in other threads meanwhile: a copy is made in one step.
    for _ in range(5):
        try:
            return opened.copy()
        except RuntimeError:  # pragma: no cover - changed during the copy
            continue
    return set()  # pragma: no cover


def _queued(trace_id: int) -> int:
    """Spans of ``trace_id`` waiting in an export queue whose batches are bound at export."""
    from sessiontrace.export import _queue  # the export package imports the processor

    most = 0
    for queue in list(_queue._queues):
        if not isinstance(queue._prepare, BindAtExport):
            continue
        with queue._lock:  # ExportQueue's own lock, held for one copy of its deque
            waiting = list(queue._queue)
        count = 0
        for span in waiting:
            context = span.context
            if context is not None and context.trace_id == trace_id:
                count += 1
        most = max(most, count)
    return most


def frame_in(context: Context) -> Frame | None:
    """What ``context`` has in force, with its trace's binding filling in what it lacks.

    For what carries values out of the process (``carrier()``, the baggage propagator).

    Example:
        >>> print(frame_in(Context()))
        None
    """
    entry = entry_in(context)
    frame = None if entry is None else entry.frame
    if not bindings:
        return frame
    span_context = trace.get_current_span(context).get_span_context()
    binding = bindings.get(span_context.trace_id) if span_context.is_valid else None
    if binding is None:
        return frame
    if frame is None:
        return binding
    return merge(
        binding,
        session_id=frame.session_id,
        user_id=frame.user_id,
        metadata=frame.metadata or None,
        tags=frame.tags,
    )


class ExportLedger:
    """One destination's count of exported spans per trace, for traces not bound then."""

    __slots__ = ("__weakref__", "counts")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}  # trace id -> spans, the trace counted last at the end
        _ledgers.add(self)

    def add(self, counts: Mapping[int, int]) -> None:
        """Count ``counts`` in (called with the lock held)."""
        ledger = self.counts
        for trace_id, count in counts.items():
            ledger[trace_id] = ledger.pop(trace_id, 0) + count
        while len(ledger) > MAX_COUNTED_TRACES:
            del ledger[next(iter(ledger))]


Prepare = Callable[[Sequence[ReadableSpan]], Sequence[ReadableSpan]]  # export._deliver's


class BindAtExport:
    """A destination's batch step: ``before``, then the bindings applied, then ``after``.

    In the export thread. A span whose trace is bound gets a copy with the binding's keys it
    lacks (for ``dialects``, as the processor stamps them); spans of traces not bound are
    counted, since a binding made later can no longer reach them.

    Example:
        >>> step = BindAtExport(("openinference",))
        >>> [span.name for span in step([ReadableSpan("chat")])]
        ['chat']
    """

    __slots__ = ("_after", "_before", "dialects", "ledger")

    def __init__(
        self,
        dialects: tuple[str, ...],
        before: Prepare | None = None,
        after: Prepare | None = None,
    ) -> None:
        self.dialects = dialects
        self._before = before
        self._after = after
        self.ledger = ExportLedger()

    def __call__(self, spans: Sequence[ReadableSpan]) -> Sequence[ReadableSpan]:
        if self._before is not None:
            spans = self._before(spans)
        spans = self.bind(spans)
        if self._after is not None:
            spans = self._after(spans)
        return spans

    def bind(self, spans: Sequence[ReadableSpan]) -> Sequence[ReadableSpan]:
        """``spans``, those of bound traces copied with the keys they lack."""
        trace_ids = [0 if span.context is None else span.context.trace_id for span in spans]
        found: dict[int, Frame] = {}
        unbound: dict[int, int] = {}
        with _lock:  # so that a binding made now sees these spans either bound or counted
            if bindings:
                for trace_id in trace_ids:
                    frame = bindings.get(trace_id)
                    if frame is not None:
                        found[trace_id] = frame
                    elif trace_id:
                        unbound[trace_id] = unbound.get(trace_id, 0) + 1
            else:
                for trace_id in trace_ids:
                    unbound[trace_id] = unbound.get(trace_id, 0) + 1
                unbound.pop(0, None)
            self.ledger.add(unbound)
        if not found:
            return spans
        out = list(spans)
        for index, (span, trace_id) in enumerate(zip(spans, trace_ids, strict=True)):
            frame = found.get(trace_id)
            if frame is None:
                continue
            attributes = frame.attributes_for(self.dialects)
            existing = span.attributes or {}
            missing = {key: value for key, value in attributes.items() if key not in existing}
            if missing:
                out[index] = copy_span(span, attributes={**existing, **missing})
        return out


def _after_fork_in_child() -> None:
    # The parent's traces are the parent's: the child binds its own, with a lock of its own.
    global _lock
    _lock = threading.Lock()
    bindings.clear()
    for processor in list(_processors):
        processor._open.clear()
    for ledger in list(_ledgers):
        ledger.counts.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
