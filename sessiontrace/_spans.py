"""copy_span: a finished span again, with some of its fields replaced.

The export path never changes an ended span (they are read-only); where it must send
something else (text repaired, stamped keys put back) it sends a copy made here.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan


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
    return ReadableSpan(**fields)
