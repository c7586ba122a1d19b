"""_spans.copy_span: an ended span again, some fields replaced, the rest as they were."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sessiontrace._spans import copy_span

# Every field a ReadableSpan exposes (instrumentation_info is deprecated in favour of
# instrumentation_scope, and reading it warns). Found by looking, so a field the SDK adds
# later and copy_span leaves out fails the tests below.
FIELDS = sorted(
    name
    for name, value in vars(ReadableSpan).items()
    if isinstance(value, property) and name != "instrumentation_info"
)
REMOTE = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))


def _ended_span(limits: SpanLimits | None = None) -> ReadableSpan:
    """A real SDK span with something in every field, ended."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout"}),
        span_limits=limits,
        shutdown_on_exit=False,
    )
    tracer = provider.get_tracer("tests.spans", "1.2.3", schema_url="https://example.com/s")
    with tracer.start_as_current_span("parent"):
        span = tracer.start_span(
            "chat",
            kind=SpanKind.CLIENT,
            attributes={"session.id": "s-1", "tokens": 7, "tags": ("a", "b")},
            links=[Link(REMOTE, {"why": "retry"})],
            start_time=1_000,
        )
    span.add_event("first token", {"at": 1}, timestamp=1_500)
    span.set_status(Status(StatusCode.ERROR, "rate limited"))
    span.end(end_time=2_000)
    assert isinstance(span, ReadableSpan)
    return span


def _fields(span: ReadableSpan) -> dict[str, object]:
    values = {name: getattr(span, name) for name in FIELDS}
    values["attributes"] = dict(values["attributes"] or {})
    return values


def test_every_field_is_covered():
    # If this changes, the SDK added or removed a field: check copy_span copies it.
    assert FIELDS == [
        "attributes",
        "context",
        "dropped_attributes",
        "dropped_events",
        "dropped_links",
        "end_time",
        "events",
        "instrumentation_scope",
        "kind",
        "links",
        "name",
        "parent",
        "resource",
        "start_time",
        "status",
    ]


def test_a_copy_without_changes_has_every_field_of_the_original():
    span = _ended_span()
    copy = copy_span(span)
    assert copy is not span
    assert type(copy) is ReadableSpan
    assert _fields(copy) == _fields(span)
    # Spot checks that the fields compared are the real ones, not all None.
    assert copy.parent is not None and copy.parent.span_id == span.parent.span_id
    assert copy.resource.attributes["service.name"] == "checkout"
    assert copy.instrumentation_scope == InstrumentationScope(
        "tests.spans", "1.2.3", "https://example.com/s"
    )
    assert copy.links[0].context == REMOTE and copy.links[0].attributes["why"] == "retry"
    assert (copy.start_time, copy.end_time, copy.kind) == (1_000, 2_000, SpanKind.CLIENT)


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "turn"},
        {"attributes": {"session.id": "repaired"}},
        {"events": [Event("replaced", {"n": 2}, 1_700)]},
        {"status": Status(StatusCode.OK)},
        {"links": []},
        {"end_time": 3_000},
        {"name": "both", "attributes": {}},
    ],
    ids=lambda changes: "+".join(changes),
)
def test_only_the_fields_given_change(changes):
    span = _ended_span()
    before = _fields(span)
    copy = copy_span(span, **changes)
    after = _fields(copy)
    for name, value in changes.items():
        assert after[name] == (tuple(value) if name in ("events", "links") else value)
    unchanged = {name for name in FIELDS if name not in changes and not name.startswith("dropped")}
    assert {name: after[name] for name in unchanged} == {name: before[name] for name in unchanged}
    # The original is left as it was.
    assert _fields(span) == before


def test_the_copys_attributes_are_read_only():
    copy = copy_span(_ended_span(), attributes={"a": 1})
    with pytest.raises(TypeError):
        copy.attributes["a"] = 2  # type: ignore[index]


def test_an_unknown_field_is_a_type_error():
    with pytest.raises(TypeError):
        copy_span(_ended_span(), colour="red")


def test_a_span_made_by_hand_copies_too():
    copy = copy_span(ReadableSpan("chat", attributes={"a": 1}), name="turn")
    assert (copy.name, dict(copy.attributes)) == ("turn", {"a": 1})
    assert copy.context is None and copy.parent is None


def test_a_copy_keeps_the_counts_of_what_the_span_dropped():
    provider = TracerProvider(
        span_limits=SpanLimits(max_span_attributes=1, max_events=1), shutdown_on_exit=False
    )
    span = provider.get_tracer("t").start_span("full", attributes={"a": 1, "b": 2})
    span.add_event("one")
    span.add_event("two")
    span.end()
    assert (span.dropped_attributes, span.dropped_events) == (1, 1)
    copy = copy_span(span, name="renamed")
    assert (copy.dropped_attributes, copy.dropped_events) == (1, 1)
