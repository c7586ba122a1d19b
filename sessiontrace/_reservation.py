"""Keeping stamped keys through the attribute limit, scoped to the spans sessiontrace stamped.

OpenTelemetry keeps 128 attributes per span by default and, once full, evicts the oldest: on a
stamped span those are the keys stamped at start. Only the spans ``SessionSpanProcessor``
stamps are changed, and nothing of OpenTelemetry itself: every other span, event, link, log
record and resource in the process keeps the SDK's own eviction.

Two ways, chosen once at import by a self-check on the installed SDK:

* *Scoped* (``SCOPED`` is True): a stamped span's attribute store, when it is exactly the
  SDK's ``BoundedAttributes``, becomes a :class:`ReservedAttributes`, a private subclass whose
  eviction step passes over sessiontrace's keys. The store object stays the same (its class is
  switched), so contents, limits, lock, immutability and dropped count carry over untouched.
* *Fallback* (the self-check failed): spans are stamped through the public API only; what was
  stamped is remembered per open span, what the limit evicted is noted when the span ends, and
  :func:`restore_stamped` puts it back on the copy the export path sends.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._spans import copy_span

logger = logging.getLogger("sessiontrace")
_sdk_logger = logging.getLogger("opentelemetry.attributes")

# The most open spans whose stamped keys the fallback remembers; past it the oldest is
# forgotten (a span that never ends must not cost memory for ever).
FALLBACK_OPEN_LIMIT = 65_536
_OWNED_KEYS = _keys.OWNED_KEYS
_OWNED_PREFIXES = _keys.OWNED_PREFIXES


class ReservedAttributes(BoundedAttributes):
    """The SDK's attribute store, evicting the oldest key sessiontrace does not own when full.

    Only ever made by switching the class of a stamped span's own store (see :func:`reserve`);
    below the limit it behaves exactly as ``BoundedAttributes``.
    """

    def _setitem_locked(self, key: str, value: Any) -> None:
        # The SDK's step (opentelemetry/attributes/__init__.py), with another victim.
        entries: dict[str, Any] = self._dict
        entries.pop(key, None)
        if self.maxlen is not None and len(entries) >= self.maxlen:
            self._warn_full()
            self.dropped += 1
            for name in entries:  # the oldest first
                if name not in _OWNED_KEYS and not name.startswith(_OWNED_PREFIXES):
                    del entries[name]  # no further iteration after this: safe
                    break
            else:
                return  # every attribute left is ours: the newcomer is the one dropped
        entries[key] = value

    def _warn_full(self) -> None:
        # The line the SDK logs, under its logger, so filters set for it still apply.
        _sdk_logger.warning(
            "Attributes dict is full. Dropping the oldest key-value pair from attributes to "
            "make space for the new key-value pair.",
        )


class _QuietReserved(ReservedAttributes):
    """The self-check's probe overflows on purpose: no warning for that."""

    def _warn_full(self) -> None:
        pass


def _scoped_self_test() -> bool:
    # Relies on private shape: the span keeps its store in `_attributes`, the store is a plain
    # instance whose class can be switched, and both ways of writing (`span.set_attribute`,
    # through __setitem__, and `span.set_attributes`, through _set_items) end in
    # _setitem_locked. Check all of it on a real SDK span before trusting it.
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        if "_setitem_locked" not in BoundedAttributes.__dict__:
            return False
        provider = TracerProvider(
            # Its own sampler: the SDK's default reads OTEL_TRACES_SAMPLER, and a probe
            # sampled out (always_off, a ratio) would turn the fast path off by chance.
            sampler=ALWAYS_ON,
            resource=Resource.get_empty(),
            span_limits=SpanLimits(max_span_attributes=3),
            shutdown_on_exit=False,
        )
        span: Any = provider.get_tracer("sessiontrace.probe").start_span("sessiontrace.probe")
        store = span._attributes
        if type(store) is not BoundedAttributes:
            return False
        store.__class__ = _QuietReserved
        span.set_attributes({_keys.OI_SESSION_ID: "s", "a": 1})
        span.set_attribute("b", 2)
        span.set_attribute("c", 3)  # full: "a" goes, not the stamped key
        span.set_attributes({"d": 4})  # full: "b" goes
        span.end()
        ended = span.attributes or {}
        return (
            dict(ended) == {_keys.OI_SESSION_ID: "s", "c": 3, "d": 4}
            and store.dropped == 2
            and span.dropped_attributes == 2
            and span._attributes is store
            and store._immutable is True
        )
    except Exception:
        return False


SCOPED = _scoped_self_test()
if not SCOPED:  # pragma: no cover - only on an SDK whose attribute store has changed
    logger.debug(
        "sessiontrace: this opentelemetry-sdk stores span attributes differently; stamped "
        "keys evicted by the attribute limit are put back on export instead (restore_stamped)"
    )

# --- fallback: remember what was stamped, note what was evicted ------------------------
_lock = threading.Lock()
_open: dict[int, Mapping[str, AttributeValue]] = {}  # span id -> what was stamped
# Ended spans that lost stamped keys -> those keys; the span is the key, held weakly, so an
# entry lives exactly as long as the exported span does.
_evicted: weakref.WeakKeyDictionary[ReadableSpan, dict[str, AttributeValue]] = (
    weakref.WeakKeyDictionary()
)


def reserve(span: Any, stamped: Mapping[str, AttributeValue]) -> None:
    """Keep ``stamped`` (just written to ``span``) through the span's attribute limit.

    Called by ``SessionSpanProcessor.on_start`` for each span it stamps, never raising.
    """
    if SCOPED:
        store = getattr(span, "_attributes", None)
        if type(store) is BoundedAttributes:
            store.__class__ = ReservedAttributes
        return  # any other store (another processor swapped it) is left alone
    context = span.get_span_context()
    with _lock:
        if len(_open) >= FALLBACK_OPEN_LIMIT:
            del _open[next(iter(_open))]
        _open[context.span_id] = stamped


def span_ended(span: ReadableSpan) -> None:
    """Fallback only: note which stamped keys the limit evicted from ``span``."""
    context = span.context
    if context is None:
        return
    with _lock:
        stamped = _open.pop(context.span_id, None)
    if not stamped:
        return
    present = span.attributes or {}
    missing = {key: value for key, value in stamped.items() if key not in present}
    if missing:
        with _lock:
            _evicted[span] = missing


def has_open() -> bool:
    """Whether the fallback remembers any open span (so on_end can skip it cheaply)."""
    return bool(_open)


def restore_stamped(span: ReadableSpan) -> ReadableSpan:
    """``span``, or a copy of it with the stamped keys the attribute limit evicted put back.

    For the export path. On the scoped path nothing is ever evicted and ``span`` itself comes
    back; on the fallback the copy keeps the span's attribute count, giving up its oldest
    attributes that sessiontrace does not own for the restored keys, and counts them as
    dropped.

    Args:
        span: an ended span, as a span processor or exporter receives it.

    Returns:
        ``span`` unchanged when it lost nothing, else a new ``ReadableSpan``.

    Example:
        >>> from opentelemetry.sdk.trace import ReadableSpan
        >>> span = ReadableSpan("chat")
        >>> restore_stamped(span) is span
        True
    """
    with _lock:
        missing = _evicted.get(span)
    if not missing:
        return span
    present = dict(span.attributes or {})
    room = len(present)
    gave_up = 0
    for key in list(present):
        if len(present) + len(missing) <= room:
            break
        if not _keys.is_owned_key(key):
            del present[key]
            gave_up += 1
    merged = {**missing, **present}
    attributes = BoundedAttributes(maxlen=None, attributes=merged, immutable=True)
    attributes.dropped = span.dropped_attributes + gave_up - len(missing)
    return copy_span(span, attributes=attributes)
