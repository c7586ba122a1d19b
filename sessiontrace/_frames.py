"""Frames: the values in force, merged, and their span attributes per dialect, built once.

A *frame* holds merged values and, built when the first span asks for them, the span
attributes for each dialect set a processor writes. Frames never change, so a scope reuses the
frame it built the last time it was entered under the same outer frame. Where frames are kept
in the OpenTelemetry context is ``_context``'s job; which keys each dialect writes is the table
``_keys.DIALECTS``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._json_values import encode_json
from sessiontrace._validate import EMPTY_METADATA, encode_metadata

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


def tell_observer(span_id: int, span: Any) -> None:
    """The tracker hand-off: tell the observer that ``span`` (started under it) ended."""
    link = open_observed.pop(span_id, None)
    if link is not None:
        observer = link.ended(span_id)
        if observer is not None:
            observer.span_ended(span)


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
    """Count ``dialects`` among the live processors' sets while ``owner`` is alive.

    Read by whatever stamps a span for every processor at once (a server span that was open
    before the request's session was known).
    """
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
    """Values in force, with their span attributes per dialect set; never changed once built.

    The metadata's JSON and the span attributes are built when first asked for (by the first
    span stamped under the frame), not on every block entry: the values were checked at the
    call that made the scope, so building them later cannot fail.
    """

    __slots__ = (
        "_metadata_json",
        "attributes",
        "extra",
        "metadata",
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
        tags: tuple[str, ...],
        extra: Mapping[str, AttributeValue] = EMPTY_METADATA,
        observer: ObserverLink | None = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.metadata = metadata
        self._metadata_json: str | None = None
        self.tags = tags
        # sessiontrace's own keys (step index, parent session), stamped in every dialect.
        self.extra = extra
        # Told of every span started and ended under this frame (a SessionTracker's link).
        self.observer = observer
        # Per dialect set, built on first use: a frame's attributes never change.
        self.attributes: dict[tuple[str, ...], Attributes] = {}

    @property
    def metadata_json(self) -> str:
        """The metadata as one JSON object ("" when there is none), encoded once."""
        text = self._metadata_json
        if text is None:
            text = self._metadata_json = encode_metadata(self.metadata) if self.metadata else ""
        return text

    def attributes_for(self, dialects: tuple[str, ...]) -> Attributes:
        """The span attributes for ``dialects``: built on the first call, then kept."""
        found = self.attributes.get(dialects)
        if found is None:
            found = self.attributes[dialects] = build_attributes(self, dialects)
        return found

    def snapshot(self) -> SessionContext:
        return SessionContext(self.session_id, self.user_id, self.metadata, self.tags)


def merge(
    outer: Frame | None,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
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
            tags,
            MappingProxyType(dict(extra)) if extra else EMPTY_METADATA,
            observer,
        )
    if session_id is not None and session_id != outer.session_id:
        # A different session: the outer tracker's keys (step, parent) and its totals stay out.
        outer = Frame(outer.session_id, outer.user_id, outer.metadata, outer.tags)
    if metadata:
        if outer.metadata:
            metadata = MappingProxyType({**outer.metadata, **metadata})
    else:
        metadata = outer.metadata
    if tags and outer.tags:
        tags = outer.tags + tuple(tag for tag in tags if tag not in outer.tags)
    return Frame(
        session_id if session_id is not None else outer.session_id,
        user_id if user_id is not None else outer.user_id,
        metadata,
        tags or outer.tags,
        MappingProxyType({**outer.extra, **extra}) if extra else outer.extra,
        observer if observer is not None else outer.observer,
    )


def build_attributes(frame: Frame, dialects: tuple[str, ...]) -> Attributes:
    """The span attributes that carry ``frame`` in each of ``dialects`` (see ``_keys.DIALECTS``)."""
    out: Attributes = {}
    session_id, user_id, tags = frame.session_id, frame.user_id, frame.tags
    metadata = frame.metadata
    for name in dialects:
        dialect = _keys.DIALECTS[name]
        if session_id is not None and dialect.session_id is not None:
            out[dialect.session_id] = session_id
        if user_id is not None and dialect.user_id is not None:
            out[dialect.user_id] = user_id
        if metadata:
            if dialect.metadata is not None:
                out[dialect.metadata] = frame.metadata_json
            prefix = dialect.metadata_prefix
            if prefix is not None:
                for key, value in metadata.items():
                    text = value if dialect.metadata_text and type(value) is str else None
                    out[prefix + key] = encode_json(value) if text is None else text
        if tags and dialect.tags is not None:
            out[dialect.tags] = tags
    out.update(frame.extra)
    return out


EMPTY_FRAME = Frame(None, None, EMPTY_METADATA, ())
