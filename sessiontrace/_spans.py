"""Finished spans: read their attributes fast, and copy one with some of its fields replaced.

The export path never changes an ended span (they are read-only); where it must send
something else (text repaired, stamped keys put back) it sends a copy made here. The copy
keeps the counts of what the span dropped at its limits (attributes, events, links), which
the OTLP exporters send on: the SDK reads them from its bounded containers, so the copy's
attributes, events and links go into such containers, with the original counts.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util import BoundedList


def copy_span(span: ReadableSpan, **changes: Any) -> ReadableSpan:
    """A new ``ReadableSpan`` with ``span``'s fields, except those given in ``changes``.

    Example:
        >>> copy_span(ReadableSpan("chat", attributes={"a": 1}), name="turn").name
        'turn'
    """
    fields: dict[str, Any] = {
        "name": span.name,
        "context": span.context,
        "parent": span.parent,
        "resource": span.resource,
        "attributes": span.attributes,
        "events": span.events,
        "links": span.links,
        "kind": span.kind,
        "status": span.status,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "instrumentation_scope": span.instrumentation_scope,
    }
    fields.update(changes)
    attributes = BoundedAttributes(maxlen=None, attributes=fields["attributes"], immutable=True)
    attributes.dropped = span.dropped_attributes
    fields["attributes"] = attributes
    for name, dropped in (("events", span.dropped_events), ("links", span.dropped_links)):
        bounded: BoundedList[Any] = BoundedList.from_seq(None, fields[name] or ())
        bounded.dropped = dropped
        fields[name] = bounded
    return ReadableSpan(**fields)


def attributes_of(span: ReadableSpan) -> dict[str, Any]:
    """A plain dict of the span's attributes, a copy. The public ``span.attributes`` is a read-only
    proxy whose copy goes key by key through Python; the SDK's own store copies at C speed.
    """
    if FAST_READ:
        held = span._attributes
        if isinstance(held, BoundedAttributes):
            return held.copy()  # type: ignore[return-value]
    return dict(span.attributes or {})


def has_events(span: ReadableSpan) -> bool:
    return bool(span._events) if FAST_READ else bool(span.events)


def _fast_read_self_test() -> bool:
    # The two private fields read above (ReadableSpan._attributes, ._events) have this shape
    # in the SDK releases we know; check it on a probe, and where it differs take the public
    # properties for every span.
    try:
        # Its own sampler: the default reads OTEL_TRACES_SAMPLER (always_off would fail this).
        provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
        probe: Any = provider.get_tracer("sessiontrace-probe").start_span("probe")
        probe.set_attribute("kept", 1)
        probe.end()
        held = getattr(probe, "_attributes", None)
        return (
            isinstance(held, BoundedAttributes)
            and held.copy() == dict(probe.attributes or {}) == {"kept": 1}
            and not getattr(probe, "_events", ())
            and not probe.events
        )
    except Exception:
        return False


FAST_READ = _fast_read_self_test()
