"""SessionSpanProcessor: stamps what is in force onto every span as it starts.

``on_start`` is the hot path. It reads one frame from the context and writes its precomputed,
already valid attribute dict into the span (straight into the SDK's store where that is safe,
else with one ``set_attributes`` call); it never overwrites an attribute the span already has,
never raises into the application, and keeps the stamped keys from being evicted when
instrumentation later fills the span past its attribute limit. It also keeps a weak reference
to each span, and fills in the values of the span's trace if ``update_current_trace`` bound
it (``_late_binding``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from weakref import ref

from opentelemetry import context as otel_context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from sessiontrace import _context, _keys, _reservation
from sessiontrace._context import get_current
from sessiontrace._frames import (
    Attributes,
    Frame,
    open_observed,
    register_dialects,
    tell_observer,
)
from sessiontrace._guard import internal_error
from sessiontrace._late_binding import bindings, track
from sessiontrace._reservation import ReservedAttributes
from sessiontrace._suppress import is_suppressed

logger = logging.getLogger("sessiontrace")


def normalize_dialects(
    dialects: str | Iterable[str] | None, argument: str = "dialects"
) -> tuple[str, ...]:
    """Validate a dialect choice: None for the default, "all", a comma list or a list of names.

    >>> normalize_dialects("langfuse, openinference")
    ('openinference', 'langfuse')
    """
    if dialects is None:
        return _keys.DEFAULT_DIALECTS
    if isinstance(dialects, (bytes, bytearray)) or not isinstance(dialects, (str, Iterable)):
        raise TypeError(
            f"{argument} must be a str, an iterable of str, or None; got "
            f"{type(dialects).__name__} (e.g. \"all\", \"openinference,langfuse\" or "
            "[\"genai\"])"
        )
    if isinstance(dialects, str):
        if dialects.strip().lower() == "all":
            return _keys.ALL_DIALECTS
        names = [name.strip().lower() for name in dialects.split(",") if name.strip()]
    else:
        names = []
        for name in dialects:
            if not isinstance(name, str):
                raise TypeError(
                    f"{argument} must hold str names, got {type(name).__name__}; name them "
                    f"from {list(_keys.ALL_DIALECTS)}"
                )
            names.append(name.strip().lower())
    unknown = [name for name in names if name not in _keys.ALL_DIALECTS]
    if unknown:
        raise ValueError(
            f"{argument} has unknown dialect(s) {unknown}; choose from "
            f"{list(_keys.ALL_DIALECTS)} or 'all'"
        )
    if not names:
        raise ValueError(
            f"{argument} is empty: name at least one of {list(_keys.ALL_DIALECTS)}, "
            "or pass None for the default"
        )
    return tuple(name for name in _keys.ALL_DIALECTS if name in names)


class SessionSpanProcessor(SpanProcessor):
    """Stamps session, user, metadata and tags in force onto every span started.

    Whichever tracer or instrumentation library creates the span, the values in force where
    it starts (or in the explicit parent context it is started with) are written under the
    attribute keys of each chosen dialect.

    Args:
        dialects: which families of keys to write: ``"openinference"``, ``"genai"``,
            ``"langfuse"``, ``"traceloop"``, a list or comma list of them, or ``"all"``.
            The default, OpenInference and GenAI, serves Phoenix, Langfuse and GenAI tools.
        reserve_keys: keep the stamped keys when a span overflows its attribute limit,
            evicting the oldest other attribute instead (see ``docs/attributes.md``). Only
            the spans this processor stamps are affected, never OpenTelemetry as a whole.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SessionSpanProcessor(dialects="all"))
    """

    def __init__(
        self, *, dialects: str | Iterable[str] | None = None, reserve_keys: bool = True
    ) -> None:
        if not isinstance(reserve_keys, bool):
            raise TypeError(
                f"reserve_keys must be True or False, got {type(reserve_keys).__name__}"
            )
        self._dialects = normalize_dialects(dialects)
        self._reserve = reserve_keys
        # The spans it started that are alive, for update_current_trace(): held weakly, each
        # reference taking itself out when its span is freed, so a span dropped without end()
        # costs nothing, and on_end has nothing to do.
        self._open: set[ref[Span]] = set()
        self._track = self._open.add
        self._forget = self._open.discard
        register_dialects(self, self._dialects)
        track(self)

    @property
    def dialects(self) -> tuple[str, ...]:
        """The dialects this processor writes."""
        return self._dialects

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            self._track(ref(span, self._forget))
            # Only sessiontrace writes this key, and only Entry tuples (_context): no isinstance.
            entry: Any = None
            if parent_context is not None:
                entry = parent_context.get(_keys.CONTEXT_KEY)
            if entry is None:
                entry = get_current().get(_keys.CONTEXT_KEY)
                if entry is None and _context.fallback_in_use:
                    entry = _context.request_entry.get()
                if entry is None and not bindings:
                    return
            if is_suppressed(parent_context):
                return
            if entry is not None:
                frame = entry.frame
                if frame.observer is not None:
                    frame.observer.follow(span.context.span_id)
                attributes = frame.attributes.get(self._dialects)
                if attributes is None:
                    attributes = frame.attributes_for(self._dialects)
                if attributes:
                    self._write(span, attributes)
            if bindings:
                bound = bindings.get(span.get_span_context().trace_id)
                if bound is not None:  # the trace's binding fills in what is not in force
                    self._write(span, bound.attributes_for(self._dialects))
        except Exception:
            internal_error("SessionSpanProcessor.on_start")

    def stamp_late(self, span: Span, frame: Frame) -> None:
        """Stamp ``frame`` on ``span``, an open span of a trace bound just now."""
        attributes = frame.attributes_for(self._dialects)
        if attributes:
            self._write(span, attributes)

    def _write(self, span: Span, attributes: Attributes) -> None:
        """Write ``attributes`` into ``span``, keeping every key it already has."""
        store: Any = getattr(span, "_attributes", None)
        kind = type(store)
        if self._reserve:
            if kind is BoundedAttributes and _reservation.SCOPED:
                # This span's own store only, switched in place (see _reservation).
                store.__class__ = kind = ReservedAttributes
            elif kind is not ReservedAttributes:
                _reservation.reserve(span, attributes)
        if (
            FAST_WRITE
            and (kind is BoundedAttributes or kind is ReservedAttributes)
            and store.max_value_len is None
            and not store._immutable
        ):
            with store._lock:
                entries = store._dict
                if entries and not entries.keys().isdisjoint(attributes):
                    attributes = {k: v for k, v in attributes.items() if k not in entries}
                if store.maxlen is None or len(entries) + len(attributes) <= store.maxlen:
                    entries.update(attributes)
                    return
        existing: Any = span.attributes or {}
        if existing and not existing.keys().isdisjoint(attributes):
            attributes = {k: v for k, v in attributes.items() if k not in existing}
        if attributes:
            span.set_attributes(attributes)

    def on_end(self, span: ReadableSpan) -> None:
        if not open_observed and (_reservation.SCOPED or not _reservation.has_open()):
            return
        try:
            context = span.context
            if context is None:
                return
            if not _reservation.SCOPED:
                _reservation.span_ended(span)
            tell_observer(context.span_id, span)
        except Exception:
            internal_error("SessionSpanProcessor.on_end")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _fast_write_self_test() -> bool:
    # Stamped values are built once per block as valid attribute values (str, tuple of str),
    # so on the span path they can go straight into the SDK's attribute dict instead of being
    # cleaned again per span by set_attributes. That relies on private fields: check their
    # shape on a probe first, and where they differ every span takes set_attributes.
    try:
        probe = BoundedAttributes(maxlen=4, immutable=False)
        probe["kept"] = 1
        with probe._lock:
            probe._dict.update({_keys.OI_SESSION_ID: "s", _keys.OI_TAGS: ("a",)})
        return (
            dict(probe) == {"kept": 1, _keys.OI_SESSION_ID: "s", _keys.OI_TAGS: ("a",)}
            and len(probe) == 3
            and probe.max_value_len is None
            and probe._immutable is False
        )
    except Exception:
        return False


FAST_WRITE = _fast_write_self_test()

