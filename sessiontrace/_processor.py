"""SessionSpanProcessor: stamps what is in force onto every span as it starts.

``on_start`` is the hot path. It reads one frame from the context and writes its precomputed,
already valid attribute dict into the span (straight into the SDK's store where that is safe,
else with one ``set_attributes`` call); it never overwrites an attribute the span already has,
never raises into the application, and keeps the stamped keys from being evicted when
instrumentation later fills the span past its attribute limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys, _state
from sessiontrace._guard import internal_error
from sessiontrace._state import FRAME, get_current, open_observed, register_dialects

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
    if isinstance(dialects, str):
        if dialects.strip().lower() == "all":
            return _keys.ALL_DIALECTS
        names = [name.strip().lower() for name in dialects.split(",") if name.strip()]
    else:
        names = []
        for name in dialects:
            if not isinstance(name, str):
                raise TypeError(f"{argument} must hold str names, got {type(name).__name__}")
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
            evicting the oldest other attribute instead (see ``docs/attributes.md``).

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SessionSpanProcessor(dialects="all"))
    """

    def __init__(
        self, *, dialects: str | Iterable[str] | None = None, reserve_keys: bool = True
    ) -> None:
        self._dialects = normalize_dialects(dialects)
        register_dialects(self, self._dialects)
        if reserve_keys:
            install_reservation()

    @property
    def dialects(self) -> tuple[str, ...]:
        """The dialects this processor writes."""
        return self._dialects

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            # Only sessiontrace writes this key, and only Entry tuples: no isinstance here.
            entry: Any = None
            if parent_context is not None:
                entry = parent_context.get(_keys.CONTEXT_KEY)
            if entry is None:
                entry = get_current().get(_keys.CONTEXT_KEY)
                if entry is None:
                    if not _state.fallback_in_use:
                        return
                    entry = _state.request_entry.get()
                    if entry is None:
                        return
            frame = entry[FRAME]
            if frame.observer is not None:
                open_observed[span.context.span_id] = frame.observer
            attributes = frame.attributes.get(self._dialects)
            if attributes is None:
                attributes = frame.attributes_for(self._dialects)
            if not attributes:
                return
            if FAST_WRITE:
                store = getattr(span, "_attributes", None)
                if (
                    type(store) is BoundedAttributes
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
            span.set_attributes(attributes)
        except Exception:
            internal_error("SessionSpanProcessor.on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if not open_observed:
            return
        try:
            context = span.context
            observer = open_observed.pop(context.span_id, None) if context else None
            if observer is not None:
                observer.span_ended(span)
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

_sdk_logger = logging.getLogger("opentelemetry.attributes")


def _reserving_setitem_locked(self: BoundedAttributes, key: str, value: AttributeValue) -> None:
    """The SDK's ``BoundedAttributes._setitem_locked``, evicting the oldest key not ours."""
    entries: dict[str, Any] = self._dict
    entries.pop(key, None)
    if self.maxlen is not None and len(entries) >= self.maxlen:
        if not _probing:
            _sdk_logger.warning(
                "Attributes dict is full. Dropping the oldest key-value pair from attributes to "
                "make space for the new key-value pair.",
            )
        self.dropped += 1
        victim = next((name for name in entries if not _keys.is_owned_key(name)), None)
        if victim is None:
            return  # every attribute left is ours: the newcomer is the one dropped
        del entries[victim]
    entries[key] = value


_original_setitem_locked = getattr(BoundedAttributes, "_setitem_locked", None)
_probing = False  # the self-check overflows a probe on purpose: no warning for that
_reservation_lock = threading.Lock()


def install_reservation() -> bool:
    """Make full attribute stores evict the oldest attribute sessiontrace does not own.

    OpenTelemetry evicts the oldest attribute first, which on a span is the one stamped at
    start. Replacing the SDK's eviction step (a private method, so checked first on a probe)
    costs nothing per span. Returns whether reservation is in effect.
    """
    with _reservation_lock:
        if BoundedAttributes.__dict__.get("_setitem_locked") is _reserving_setitem_locked:
            return True
        if not _reservation_self_test():
            logger.debug(
                "sessiontrace: this opentelemetry-sdk evicts attributes differently; stamped "
                "keys are not reserved on spans that overflow their attribute limit"
            )
            return False
        BoundedAttributes._setitem_locked = _reserving_setitem_locked  # type: ignore[method-assign]
        return True


def uninstall_reservation() -> None:
    """Put the SDK's own eviction back (for tests)."""
    with _reservation_lock:
        if _original_setitem_locked is not None:
            BoundedAttributes._setitem_locked = _original_setitem_locked  # type: ignore[method-assign]


def _reservation_self_test() -> bool:
    # The SDK's eviction lives in a private method that may change between releases: check on
    # a probe that the store routes through it and that ours keeps the stamped key.
    global _probing
    if _original_setitem_locked is None:
        return False
    _probing = True
    try:

        class Probe(BoundedAttributes):
            _setitem_locked = _reserving_setitem_locked

        probe = Probe(maxlen=2, immutable=False)
        probe["probe"] = 0
        probe[_keys.OI_SESSION_ID] = "s"
        probe["other"] = 1
        probe.update({"more": 2})
        return dict(probe) == {_keys.OI_SESSION_ID: "s", "more": 2} and probe.dropped == 2
    except Exception:
        return False
    finally:
        _probing = False
