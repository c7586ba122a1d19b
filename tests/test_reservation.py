"""Stamped keys survive the attribute limit, on stamped spans only; OpenTelemetry is untouched.

Every test here failed before issue #8, when reservation replaced
``BoundedAttributes._setitem_locked`` for the whole process: other providers' spans, events,
links and plain attribute stores kept "owned" keys instead of evicting the earliest.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

from sessiontrace import (
    SessionSpanProcessor,
    SessionTracker,
    _processor,
    _reservation,
    configure,
    using_attributes,
)
from sessiontrace._keys import is_owned_key
from sessiontrace._reservation import restore_stamped

FULL = dict(session_id="chat-1", user_id="ada", metadata={"plan": "pro"}, tags=["beta"])
STAMPED = ("session.id", "user.id", "metadata", "tag.tags", "gen_ai.conversation.id")
SDK_FILE = "opentelemetry/attributes/__init__.py"


def stamping_provider(limits=None, **processor):
    provider = TracerProvider(shutdown_on_exit=False, span_limits=limits)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SessionSpanProcessor(**processor))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def fill(span, count, *, many=False):
    """``count`` more attributes: one by one (set_attribute) or in one set_attributes call."""
    if many:
        span.set_attributes({f"llm.input_messages.{i}": "x" for i in range(count)})
    else:
        for index in range(count):
            span.set_attribute(f"llm.input_messages.{index}", "x")


@pytest.fixture
def fallback(monkeypatch):
    """The path taken where the self-check fails: the public API, restore_stamped on export."""
    monkeypatch.setattr(_reservation, "SCOPED", False)
    monkeypatch.setattr(_processor, "FAST_WRITE", False)
    monkeypatch.setattr(_reservation, "_open", {})
    yield


def test_the_self_check_passes_on_the_installed_sdk():
    assert _reservation.SCOPED
    assert _reservation._scoped_self_test()


@pytest.mark.parametrize("many", [False, True], ids=["set_attribute", "set_attributes"])
def test_stamped_keys_survive_200_more_attributes(many):
    provider, exporter = stamping_provider()  # the default limit: 128
    with using_attributes(**FULL), provider.get_tracer("t").start_as_current_span("big") as span:
        fill(span, 200, many=many)
    provider.shutdown()
    (exported,) = exporter.get_finished_spans()
    assert len(exported.attributes) == 128
    assert all(key in exported.attributes for key in STAMPED)
    assert exported.attributes["session.id"] == "chat-1"
    # What gave way are the oldest other attributes, as the SDK would have chosen them.
    assert "llm.input_messages.199" in exported.attributes
    assert "llm.input_messages.0" not in exported.attributes
    assert exported.dropped_attributes == len(STAMPED) + 200 - 128
    assert restore_stamped(exported) is exported  # nothing to put back on this path


def test_the_reserved_store_keeps_value_length_limit_and_immutability():
    provider, exporter = stamping_provider(SpanLimits(max_attributes=8, max_attribute_length=4))
    tracer = provider.get_tracer("t")
    with using_attributes(**FULL), tracer.start_as_current_span("s") as span:
        fill(span, 20)
        span.set_attribute("long", "abcdefgh")
    span.set_attribute("after-end", 1)  # ignored by the SDK: the store is read-only now
    provider.shutdown()
    (exported,) = exporter.get_finished_spans()
    attributes = exported.attributes
    assert (attributes["session.id"], attributes["long"]) == ("chat", "abcd")
    assert "after-end" not in attributes
    assert len(attributes) == 8
    with pytest.raises(TypeError):
        attributes["late"] = 1
    assert span.attributes == attributes


def test_a_span_of_another_provider_keeps_the_sdks_eviction(spans):
    # No sessiontrace processor on this provider: its spans are never touched, even while a
    # session is in force and the global provider stamps its own spans.
    provider = TracerProvider(shutdown_on_exit=False, span_limits=SpanLimits(max_attributes=4))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with using_attributes(**FULL), provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attributes({"session.id": "theirs", "user.id": "theirs", "a": 1, "b": 2})
        span.set_attribute("c", 3)
        span.set_attribute("tag.tags", ("x",))
    provider.shutdown()
    (exported,) = exporter.get_finished_spans()
    assert list(exported.attributes) == ["a", "b", "c", "tag.tags"]  # the earliest went first


def test_events_and_links_of_a_stamped_span_keep_the_sdks_eviction():
    limits = SpanLimits(max_event_attributes=2, max_link_attributes=2)
    provider, exporter = stamping_provider(limits)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("target") as target:
        pass
    owned_first = {"session.id": "e", "a": 1, "b": 2}
    with using_attributes(**FULL):
        span = tracer.start_span("s", links=[Link(target.get_span_context(), owned_first)])
        span.add_event("e", owned_first)
        span.add_link(target.get_span_context(), owned_first)
        span.end()
    provider.shutdown()
    exported = exporter.get_finished_spans()[-1]
    assert exported.attributes["session.id"] == "chat-1"
    assert dict(exported.events[0].attributes) == {"a": 1, "b": 2}
    assert [dict(link.attributes) for link in exported.links] == [{"a": 1, "b": 2}] * 2


def test_a_plain_store_outside_any_span_keeps_the_sdks_eviction():
    SessionSpanProcessor()  # once, reservation used to change every store in the process
    store = BoundedAttributes(maxlen=2, immutable=False)
    store.update({"session.id": "s", "a": 1})
    store["b"] = 2
    store["sessiontrace.step.index"] = 3
    assert dict(store) == {"b": 2, "sessiontrace.step.index": 3}
    assert store.dropped == 2
    assert type(store) is BoundedAttributes


def test_opentelemetry_is_not_patched(tmp_path):
    provider = TracerProvider(shutdown_on_exit=False)
    SessionSpanProcessor()
    configure(
        tracer_provider=provider, exporters=[InMemorySpanExporter()], batch=False, store=False
    )
    with using_attributes(**FULL), SessionTracker("run") as tracker, tracker.step():
        provider.get_tracer("t").start_span("stamped").end()
    provider.shutdown()
    own = BoundedAttributes.__dict__["_setitem_locked"]
    assert own.__code__.co_filename.endswith(SDK_FILE), own.__code__.co_filename
    assert own.__qualname__ == "BoundedAttributes._setitem_locked"
    for name in ("__setitem__", "_set_items", "__init__", "__deepcopy__", "copy"):
        assert BoundedAttributes.__dict__[name].__code__.co_filename.endswith(SDK_FILE), name
    assert not hasattr(_processor, "_reserving_setitem_locked")


def test_reserve_keys_false_leaves_the_sdks_eviction_on_stamped_spans():
    provider, exporter = stamping_provider(SpanLimits(max_attributes=10), reserve_keys=False)
    with using_attributes(**FULL), provider.get_tracer("t").start_as_current_span("s") as span:
        fill(span, 20)
    provider.shutdown()
    assert "session.id" not in exporter.get_finished_spans()[0].attributes


def test_a_full_span_keeps_its_stamped_keys_and_warns_like_the_sdk(caplog):
    provider, exporter = stamping_provider(SpanLimits(max_attributes=6))
    caplog.set_level(logging.WARNING, logger="opentelemetry.attributes")
    with using_attributes(**FULL), provider.get_tracer("t").start_as_current_span("s") as span:
        fill(span, 3)
    provider.shutdown()
    attributes = exporter.get_finished_spans()[0].attributes
    assert list(attributes) == [*STAMPED, "llm.input_messages.2"]
    warned = [r for r in caplog.records if r.name == "opentelemetry.attributes"]
    assert len(warned) == 2 and "Attributes dict is full" in warned[0].getMessage()


def test_when_only_stamped_keys_are_left_the_newcomer_is_dropped():
    provider, exporter = stamping_provider(SpanLimits(max_attributes=len(STAMPED)))
    with using_attributes(**FULL), provider.get_tracer("t").start_as_current_span("s") as span:
        fill(span, 3)
    provider.shutdown()
    (exported,) = exporter.get_finished_spans()
    assert list(exported.attributes) == list(STAMPED)
    assert exported.dropped_attributes == 3


# --- the fallback, where the self-check fails -------------------------------------------
def test_the_self_check_fails_when_writes_bypass_the_eviction_step(monkeypatch):
    def direct(self, attributes):  # a future SDK that no longer routes through the step
        with self._lock:
            self._dict.update(attributes)

    monkeypatch.setattr(BoundedAttributes, "_set_items", direct)
    assert not _reservation._scoped_self_test()


def test_the_self_check_fails_when_the_store_is_not_a_plain_bounded_attributes(monkeypatch):
    monkeypatch.delattr(BoundedAttributes, "_setitem_locked")
    assert not _reservation._scoped_self_test()


@pytest.mark.parametrize("many", [False, True], ids=["set_attribute", "set_attributes"])
def test_fallback_puts_evicted_stamped_keys_back_on_export(fallback, many):
    provider, exporter = stamping_provider()
    with using_attributes(**FULL), provider.get_tracer("t").start_as_current_span("big") as span:
        fill(span, 200, many=many)
        assert type(span._attributes) is BoundedAttributes  # nothing private was touched
    provider.shutdown()
    (exported,) = exporter.get_finished_spans()
    assert not any(key in exported.attributes for key in STAMPED)  # the SDK evicted them
    restored = restore_stamped(exported)
    assert restored is not exported
    assert len(restored.attributes) == 128
    assert {key: restored.attributes[key] for key in ("session.id", "user.id")} == {
        "session.id": "chat-1",
        "user.id": "ada",
    }
    assert all(key in restored.attributes for key in STAMPED)
    assert "llm.input_messages.199" in restored.attributes
    assert "llm.input_messages.72" not in restored.attributes  # gave way to the stamped keys
    assert restored.dropped_attributes == exported.dropped_attributes
    assert (restored.name, restored.context, restored.parent) == (
        exported.name,
        exported.context,
        exported.parent,
    )
    assert (restored.start_time, restored.end_time, restored.status) == (
        exported.start_time,
        exported.end_time,
        exported.status,
    )
    assert restore_stamped(restored) is restored
    assert not _reservation._open


def test_fallback_leaves_spans_that_lost_nothing_as_they_are(fallback):
    provider, exporter = stamping_provider()
    with using_attributes(**FULL), provider.get_tracer("t").start_as_current_span("small") as span:
        fill(span, 10)
    provider.shutdown()
    (exported,) = exporter.get_finished_spans()
    assert restore_stamped(exported) is exported
    assert not _reservation._open and not _reservation._evicted


def test_fallback_forgets_spans_that_never_end(fallback, monkeypatch):
    monkeypatch.setattr(_reservation, "FALLBACK_OPEN_LIMIT", 10)
    provider, _ = stamping_provider()
    with using_attributes(**FULL):
        for _ in range(50):
            provider.get_tracer("t").start_span("never-ended")
    assert len(_reservation._open) == 10
    provider.shutdown()


# --- hostile sequences of writes --------------------------------------------------------
KEYS = st.sampled_from(["a", "b", "c", "d", "e", "session.id", "tag.tags", "sessiontrace.x"])


def model_eviction(limit, initial, writes):
    """What a store that evicts the oldest key sessiontrace does not own must end up with."""
    entries = dict(initial)
    for key, value in writes:
        entries.pop(key, None)
        if len(entries) >= limit:
            victim = next((k for k in entries if not is_owned_key(k)), None)
            if victim is None:
                continue
            del entries[victim]
        entries[key] = value
    return entries


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=2, max_value=8),
    writes=st.lists(st.tuples(KEYS, st.integers()), max_size=30),
    many=st.booleans(),
)
def test_any_sequence_of_writes_matches_the_model(limit, writes, many):
    provider, exporter = stamping_provider(SpanLimits(max_attributes=limit))
    tracer = provider.get_tracer("t")
    with using_attributes(session_id="s"), tracer.start_as_current_span("x") as span:
        for key, value in writes:
            if many:
                span.set_attributes({key: value})
            else:
                span.set_attribute(key, value)
    provider.shutdown()
    exported = exporter.get_finished_spans()[0]
    stamped = {"session.id": "s", "gen_ai.conversation.id": "s"}
    expected = model_eviction(limit, stamped, writes)
    assert dict(exported.attributes) == expected
    assert len(exported.attributes) <= limit
