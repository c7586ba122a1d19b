"""SessionSpanProcessor: stamps what is in force onto every span as it starts.

``on_start`` is the hot path. It reads one frame from the context and writes its precomputed
attribute dict with one ``set_attributes`` call; it never overwrites an attribute the span
already has, never raises into the application, and keeps the stamped keys from being evicted
when instrumentation later fills the span past its attribute limit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._guard import internal_error
from sessiontrace._state import register_dialects

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
            evicting the oldest other attribute instead.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SessionSpanProcessor(dialects="all"))
    """

    def __init__(
        self, *, dialects: str | Iterable[str] | None = None, reserve_keys: bool = True
    ) -> None:
        self._dialects = normalize_dialects(dialects)
        self._reserve = reserve_keys and RESERVATION_WORKS
        register_dialects(self._dialects)

    @property
    def dialects(self) -> tuple[str, ...]:
        """The dialects this processor writes."""
        return self._dialects

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            # Only sessiontrace writes this key, and only Frame objects: no isinstance here.
            frame: Any = None
            if parent_context is not None:
                frame = parent_context.get(_keys.CONTEXT_KEY)
            if frame is None:
                frame = otel_context.get_current().get(_keys.CONTEXT_KEY)
                if frame is None:
                    return
            attributes = frame.attributes.get(self._dialects)
            if attributes is None:
                attributes = frame.attributes_for(self._dialects)
            if not attributes:
                return
            existing = span.attributes
            if existing:
                attributes = {
                    key: value for key, value in attributes.items() if key not in existing
                }
            span.set_attributes(attributes)
            if self._reserve:
                reserve_stamped_keys(span)
        except Exception:
            internal_error("SessionSpanProcessor.on_start")

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _ReservingAttributes(BoundedAttributes):
    """Span attributes that, when full, evict the oldest attribute sessiontrace does not own."""

    def _setitem_locked(self, key: str, value: AttributeValue) -> None:
        entries: dict[str, Any] = self._dict
        if key in entries:
            del entries[key]
        elif self.maxlen is not None and len(entries) >= self.maxlen:
            self.dropped += 1
            victim = next((name for name in entries if not _keys.is_owned_key(name)), None)
            if victim is None:
                return  # every attribute left is ours: the newcomer is the one dropped
            del entries[victim]
        entries[key] = value


def reserve_stamped_keys(span: Span) -> None:
    """Make ``span``'s attribute store keep sessiontrace's keys when it overflows."""
    attributes = getattr(span, "_attributes", None)
    if type(attributes) is BoundedAttributes and attributes.maxlen is not None:
        attributes.__class__ = _ReservingAttributes


def _reservation_self_test() -> bool:
    # The SDK's eviction lives in private methods that change between releases: check that
    # ours takes effect on this release, and fall back to plain stamping where it does not.
    try:
        probe = BoundedAttributes(maxlen=2, immutable=False)
        probe["probe"] = 0
        probe[_keys.OI_SESSION_ID] = "s"
        probe.__class__ = _ReservingAttributes
        probe["other"] = 1
        probe["more"] = 2
        return _keys.OI_SESSION_ID in probe and "probe" not in probe and "more" in probe
    except Exception:
        return False


RESERVATION_WORKS = _reservation_self_test()
if not RESERVATION_WORKS:
    logger.debug(
        "sessiontrace: this opentelemetry-sdk evicts attributes differently; stamped keys "
        "are not reserved on spans that overflow their attribute limit"
    )
