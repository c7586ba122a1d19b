"""copy_span: a finished span again, with some of its fields replaced.

The export path never changes an ended span (they are read-only); where it must send
something else (text repaired, stamped keys put back) it sends a copy made here. The copy
keeps the counts of what the span dropped at its limits (attributes, events, links), which
the OTLP exporters send on: the SDK reads them from its bounded containers, so the copy's
attributes, events and links go into such containers, with the original counts.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
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
