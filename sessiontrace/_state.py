"""What is in force: the immutable snapshot, the merge rules, and its place in the OTel context.

A *frame* holds merged values and, built once, the span attributes for each dialect set that a
live processor asked for. Frames never change, so a scope reuses the frame it built the last
time it was entered under the same outer frame. What the OpenTelemetry context holds under
``CONTEXT_KEY`` is an *entry*: the frame, plus what one ``with`` needs to find itself and undo
itself on exit. Whatever carries the OpenTelemetry context (asyncio tasks, the threading
instrumentation, LangChain's executors) carries the session too.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._validate import EMPTY_METADATA, encode_json

Attributes = dict[str, AttributeValue]


class SpanObserver(Protocol):
    """Told of each span that ends, if it started under a frame (SessionTracker is one)."""

    def span_ended(self, span: Any) -> None: ...


class ObserverLink:
    """What frames hold of a tracker: a weak reference, and the ids of its spans still open.

    Frames outlive their blocks in caches (a scope reuses the frame it built last time) and in
    contexts captured by threads or tasks, so they must not keep a tracker, or its state,
    alive. The ids let the tracker's end forget its spans that never ended.
    """

    __slots__ = ("_observer", "open")

    def __init__(self, observer: SpanObserver) -> None:
        self._observer = weakref.ref(observer)
        # None once closed: spans started later are not followed.
        self.open: set[int] | None = set()

    def observer(self) -> SpanObserver | None:
        """The tracker, while it is alive."""
        return self._observer()

    def follow(self, span_id: int) -> None:
        """Have ``span_id``'s end reported to the observer (no-op once closed)."""
        ids = self.open
        if ids is None:
            return
        open_observed[span_id] = self
        ids.add(span_id)
        if self.open is None:  # closed meanwhile, maybe before seeing span_id: undo
            open_observed.pop(span_id, None)

    def ended(self, span_id: int) -> SpanObserver | None:
        """``span_id`` ended: stop following it; the observer to tell, if still alive."""
        ids = self.open
        if ids is not None:
            ids.discard(span_id)
        return self._observer()

    def close(self) -> None:
        """Stop following: forget every span still open (spans that never end cost nothing)."""
        ids, self.open = self.open, None
        # A copy: a span starting in another thread may still add to the set (and then, seeing
        # the link closed, take itself out again).
        for span_id in list(ids or ()):
            if open_observed.get(span_id) is self:
                open_observed.pop(span_id, None)


# Spans started under an observer and not yet ended, by span id: how on_end finds it. Holds
# links, never trackers; a tracker's end() takes its spans out.
open_observed: dict[int, ObserverLink] = {}


@dataclass(frozen=True)
class SessionContext:
    """An immutable snapshot of what sessiontrace has in force.

    Example:
        >>> from sessiontrace import current, using_session
        >>> with using_session("chat-42"):
        ...     current().session_id
        'chat-42'
    """

    session_id: str | None = None
    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: EMPTY_METADATA)
    tags: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The metadata is a read-only view (a mappingproxy), which pickle refuses: it travels
        # as a dict and is made read-only again (a snapshot sent to a process pool).
        return (_unpickle_context, (self.session_id, self.user_id, dict(self.metadata), self.tags))


def _unpickle_context(
    session_id: str | None, user_id: str | None, metadata: dict[str, Any], tags: tuple[str, ...]
) -> SessionContext:
    return SessionContext(
        session_id, user_id, MappingProxyType(metadata) if metadata else EMPTY_METADATA, tags
    )


EMPTY_CONTEXT = SessionContext()

# --- dialect sets that live processors asked for -----------------------------------------
_registry_lock = threading.Lock()
_wanted: dict[tuple[str, ...], int] = {_keys.DEFAULT_DIALECTS: 1}
_dialect_sets: tuple[tuple[str, ...], ...] = (_keys.DEFAULT_DIALECTS,)


def register_dialects(owner: object, dialects: tuple[str, ...]) -> None:
    """Have new frames precompute attributes for ``dialects`` while ``owner`` is alive."""
    global _dialect_sets
    with _registry_lock:
        _wanted[dialects] = _wanted.get(dialects, 0) + 1
        _dialect_sets = tuple(_wanted)
    weakref.finalize(owner, _unregister, dialects)


def live_dialect_sets() -> tuple[tuple[str, ...], ...]:
    """The dialect sets of the processors alive now (the default set always among them)."""
    return _dialect_sets


def _unregister(dialects: tuple[str, ...]) -> None:
    global _dialect_sets
    with _registry_lock:
        _wanted[dialects] -= 1
        if _wanted[dialects] <= 0 and dialects != _keys.DEFAULT_DIALECTS:
            del _wanted[dialects]
        _dialect_sets = tuple(_wanted)


class Frame:
    """Values in force, with their span attributes per dialect set; never changed once built."""

    __slots__ = (
        "attributes",
        "extra",
        "metadata",
        "metadata_json",
        "observer",
        "session_id",
        "tags",
        "user_id",
    )

    def __init__(
        self,
        session_id: str | None,
        user_id: str | None,
        metadata: Mapping[str, Any],
        metadata_json: str,
        tags: tuple[str, ...],
        extra: Mapping[str, AttributeValue] = EMPTY_METADATA,
        observer: ObserverLink | None = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.metadata = metadata
        self.metadata_json = metadata_json
        self.tags = tags
        # sessiontrace's own keys (step index, parent session), stamped in every dialect.
        self.extra = extra
        # Told of every span started and ended under this frame (a SessionTracker's link).
        self.observer = observer
        self.attributes: dict[tuple[str, ...], Attributes] = {
            dialects: build_attributes(self, dialects) for dialects in _dialect_sets
        }

    def attributes_for(self, dialects: tuple[str, ...]) -> Attributes:
        """The span attributes for ``dialects``: precomputed, or built once and kept."""
        found = self.attributes.get(dialects)
        if found is None:
            found = self.attributes[dialects] = build_attributes(self, dialects)
        return found

    def snapshot(self) -> SessionContext:
        return SessionContext(self.session_id, self.user_id, self.metadata, self.tags)


# What the OpenTelemetry context holds under CONTEXT_KEY: a plain tuple, the cheapest object
# to build on every block entry, read by position:
#   0 FRAME      the Frame in force
#   1 OWNER      the scope a `with` statement entered; None for decorators and set_session()
#   2 RESTORE    the Context that was current before, to put back on leaving
#   3 ENCLOSING  the nearest entry with an owner, so a scope's exit finds its own entry past
#                entries put on top of it (a set_session() inside a block)
Entry = tuple[Frame, Any, "Context | None", Any]
FRAME: Final = 0
OWNER: Final = 1
RESTORE: Final = 2
ENCLOSING: Final = 3


def merge(
    outer: Frame | None,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    metadata_json: str = "",
    tags: tuple[str, ...] = (),
    extra: Mapping[str, AttributeValue] | None = None,
    observer: ObserverLink | None = None,
) -> Frame:
    """A new frame: ``outer``'s values overlaid with the given ones (inner wins).

    Metadata and extra keys merge key by key, tags are a union in order of first appearance.
    """
    if outer is None or outer is EMPTY_FRAME:
        return Frame(
            session_id,
            user_id,
            metadata or EMPTY_METADATA,
            metadata_json,
            tags,
            MappingProxyType(dict(extra)) if extra else EMPTY_METADATA,
            observer,
        )
    if session_id is not None and session_id != outer.session_id:
        # A different session: the outer tracker's keys (step, parent) and its totals stay out.
        outer = Frame(
            outer.session_id, outer.user_id, outer.metadata, outer.metadata_json, outer.tags
        )
    if metadata:
        if outer.metadata:
            merged_metadata = {**outer.metadata, **metadata}
            metadata_json = encode_json(merged_metadata)
            metadata = MappingProxyType(merged_metadata)
    else:
        metadata, metadata_json = outer.metadata, outer.metadata_json
    if tags and outer.tags:
        tags = outer.tags + tuple(tag for tag in tags if tag not in outer.tags)
    return Frame(
        session_id if session_id is not None else outer.session_id,
        user_id if user_id is not None else outer.user_id,
        metadata,
        metadata_json,
        tags or outer.tags,
        MappingProxyType({**outer.extra, **extra}) if extra else outer.extra,
        observer if observer is not None else outer.observer,
    )


def build_attributes(frame: Frame, dialects: tuple[str, ...]) -> Attributes:
    """The span attributes that carry ``frame`` in each of ``dialects``."""
    out: Attributes = {}
    session_id, user_id, metadata, tags = (
        frame.session_id,
        frame.user_id,
        frame.metadata,
        frame.tags,
    )
    for dialect in dialects:
        if dialect == _keys.OPENINFERENCE:
            if session_id is not None:
                out[_keys.OI_SESSION_ID] = session_id
            if user_id is not None:
                out[_keys.OI_USER_ID] = user_id
            if metadata:
                out[_keys.OI_METADATA] = frame.metadata_json
            if tags:
                out[_keys.OI_TAGS] = tags
        elif dialect == _keys.GENAI:
            if session_id is not None:
                out[_keys.GENAI_CONVERSATION_ID] = session_id
            if user_id is not None:
                out[_keys.GENAI_USER_ID] = user_id
        elif dialect == _keys.LANGFUSE:
            if session_id is not None:
                out[_keys.LANGFUSE_SESSION_ID] = session_id
            if user_id is not None:
                out[_keys.LANGFUSE_USER_ID] = user_id
            for key, value in metadata.items():
                # As the Langfuse SDK writes them: every value JSON-encoded, str included.
                out[_keys.LANGFUSE_METADATA_PREFIX + key] = encode_json(value)
            if tags:
                out[_keys.LANGFUSE_TAGS] = tags
        elif dialect == _keys.TRACELOOP:
            if session_id is not None:
                out[_keys.TRACELOOP_SESSION_ID] = session_id
            if user_id is not None:
                out[_keys.TRACELOOP_USER_ID] = user_id
            for key, value in metadata.items():
                text = value if isinstance(value, str) else encode_json(value)
                out[_keys.TRACELOOP_PROPERTY_PREFIX + key] = text
    out.update(frame.extra)
    return out


EMPTY_FRAME = Frame(None, None, EMPTY_METADATA, "", ())


# --- reading and writing the current OpenTelemetry context -------------------------------
def _runtime_variable() -> contextvars.ContextVar[Context] | None:
    # OpenTelemetry keeps the current Context in one ContextVar of its default runtime
    # context. Reading and setting it directly saves two layers of calls on every block and
    # every span; with another runtime context configured, the public API is used instead.
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(
        variable, contextvars.ContextVar
    ):
        return variable
    return None


_VARIABLE = _runtime_variable()
get_current: Callable[[], Context]
set_current: Callable[[Context], object]
if _VARIABLE is not None:
    get_current = _VARIABLE.get
    set_current = _VARIABLE.set
else:  # pragma: no cover - only with a custom OTEL_PYTHON_CONTEXT
    get_current = otel_context.get_current
    set_current = otel_context.attach


# The entry an HTTP middleware put in force for a request, kept apart from the OpenTelemetry
# context: instrumentation that attaches a freshly extracted context per request (the
# OpenTelemetry ASGI, WSGI and Flask middlewares) replaces the context that holds ours. Read
# only where the OpenTelemetry context holds no entry at all, and only once a middleware has
# used it (so code without one never pays for the look-up).
request_entry: contextvars.ContextVar[Entry | None] = contextvars.ContextVar(
    "sessiontrace.request", default=None
)
fallback_in_use = False


def use_request_fallback() -> None:
    """Called by the HTTP middlewares: from now on, look for a request's entry too."""
    global fallback_in_use
    fallback_in_use = True


def entry_in(context: Context) -> Entry | None:
    """The entry ``context`` holds, else the request's (see ``request_entry``)."""
    entry: Entry | None = context.get(_keys.CONTEXT_KEY)  # type: ignore[assignment]
    if entry is None and fallback_in_use:
        entry = request_entry.get()
    return entry


def enclosing(context: Context) -> Entry | None:
    """What a new entry on top of ``context`` records as its nearest entry with an owner."""
    outer = entry_in(context)
    if outer is None:
        return None
    return outer if outer[OWNER] is not None else outer[ENCLOSING]


def current_entry() -> Entry | None:
    """The entry in force in the current OpenTelemetry context (or request), if any."""
    return entry_in(get_current())


def current_frame() -> Frame | None:
    """The frame in force in the current OpenTelemetry context, if any."""
    entry = current_entry()
    return None if entry is None else entry[FRAME]
