"""SessionSpanProcessor: what reaches spans, under which keys, and that it never breaks them."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers.thirdparty import call_model
from sessiontrace import SessionSpanProcessor, using_attributes, using_session, without_session
from sessiontrace._processor import normalize_dialects
from sessiontrace.testing import capture_spans, strict_errors

FULL = dict(session_id="chat-1", user_id="ada", metadata={"plan": "pro", "n": 2}, tags=["beta"])


def test_every_dialect_gets_its_keys(spans, tracer):
    with using_attributes(**FULL), tracer.start_as_current_span("turn"):
        pass
    attributes = spans.attributes("turn")
    assert attributes["session.id"] == "chat-1"
    assert attributes["user.id"] == "ada"
    assert json.loads(attributes["metadata"]) == {"plan": "pro", "n": 2}
    assert attributes["tag.tags"] == ("beta",)
    assert attributes["gen_ai.conversation.id"] == "chat-1"
    assert attributes["langfuse.session.id"] == "chat-1"
    assert attributes["langfuse.user.id"] == "ada"
    assert attributes["langfuse.trace.metadata.plan"] == '"pro"'
    assert attributes["langfuse.trace.metadata.n"] == "2"
    assert attributes["langfuse.trace.tags"] == ("beta",)
    assert attributes["traceloop.association.properties.session_id"] == "chat-1"
    assert attributes["traceloop.association.properties.user_id"] == "ada"
    assert attributes["traceloop.association.properties.plan"] == "pro"


def test_default_dialects_are_openinference_and_genai():
    with capture_spans() as captured, using_attributes(**FULL):
        with captured.tracer.start_as_current_span("turn"):
            pass
    assert dict(captured.spans()[0].attributes) == {
        "session.id": "chat-1",
        "user.id": "ada",
        "metadata": '{"plan": "pro", "n": 2}',
        "tag.tags": ("beta",),
        "gen_ai.conversation.id": "chat-1",
    }


def test_only_what_is_in_force_is_stamped():
    with capture_spans(dialects=["langfuse"]) as captured, using_session("s"):
        with captured.tracer.start_as_current_span("turn"):
            pass
    assert dict(captured.spans()[0].attributes) == {"langfuse.session.id": "s"}


def test_nothing_is_stamped_outside_a_session_or_under_without_session(spans, tracer):
    with tracer.start_as_current_span("outside"):
        pass
    with using_session("s"), without_session(), tracer.start_as_current_span("worker"):
        pass
    assert spans.attributes("outside") == {}
    assert spans.attributes("worker") == {}


def test_spans_of_an_unknown_instrumentation_library_are_stamped(spans):
    with using_attributes(session_id="chat-9", user_id="bob"):
        assert call_model("hello") == "hi"
    attributes = spans.attributes("acme.chat")
    assert spans.named("acme.chat").instrumentation_scope.name == "acme.llm.instrumentation"
    assert attributes["session.id"] == "chat-9"
    assert attributes["user.id"] == "bob"
    assert attributes["acme.prompt"] == "hello"


def test_existing_attributes_are_never_overwritten(spans, tracer):
    with using_attributes(session_id="ours", user_id="ada"):
        with tracer.start_as_current_span("preset", attributes={"session.id": "theirs"}):
            pass
    attributes = spans.attributes("preset")
    assert attributes["session.id"] == "theirs"
    assert attributes["gen_ai.conversation.id"] == "ours"
    assert attributes["user.id"] == "ada"


def test_explicit_parent_context_carries_its_own_session(spans, tracer):
    with using_session("captured"):
        with tracer.start_as_current_span("parent") as parent:
            saved = trace.set_span_in_context(parent)
    with using_session("elsewhere"):
        child = tracer.start_span("child", context=saved)
        child.end()
        fresh_root = tracer.start_span("new-root", context=otel_context.Context())
        fresh_root.end()
    assert spans.attributes("child")["session.id"] == "captured"
    assert spans.named("child").parent.span_id == spans.named("parent").context.span_id
    # An explicit context that carries no session falls back to what is in force.
    assert spans.attributes("new-root")["session.id"] == "elsewhere"


def test_spans_started_without_being_current_are_stamped(spans, tracer):
    with using_session("manual"):
        span = tracer.start_span("manual")
    span.end()
    assert spans.attributes("manual")["session.id"] == "manual"


def test_stamped_keys_survive_200_further_attributes():
    provider = TracerProvider(shutdown_on_exit=False)  # default limit: 128 attributes
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SessionSpanProcessor(dialects="all"))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("big-llm-instrumentation")
    with using_attributes(**FULL), tracer.start_as_current_span("big") as span:
        for index in range(200):
            span.set_attribute(f"llm.input_messages.{index}.message.content", "x")
    provider.shutdown()
    exported = exporter.get_finished_spans()[0]
    attributes = exported.attributes
    assert len(attributes) == 128
    assert exported.dropped_attributes > 0
    for key in (
        "session.id",
        "user.id",
        "metadata",
        "tag.tags",
        "gen_ai.conversation.id",
        "langfuse.session.id",
        "traceloop.association.properties.session_id",
    ):
        assert key in attributes, key
    assert "llm.input_messages.199.message.content" in attributes
    assert "llm.input_messages.0.message.content" not in attributes


def test_without_reservation_the_sdk_evicts_stamped_keys_first():
    # The contrast that shows why reservation exists; it is per processor, nothing to undo.
    provider = TracerProvider(shutdown_on_exit=False, span_limits=SpanLimits(max_attributes=10))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SessionSpanProcessor(reserve_keys=False))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with using_session("s"), provider.get_tracer("t").start_as_current_span("big") as span:
        for index in range(20):
            span.set_attribute(f"k{index}", index)
    provider.shutdown()
    assert "session.id" not in exporter.get_finished_spans()[0].attributes


def test_an_internal_error_is_logged_once_and_the_span_goes_on(caplog, monkeypatch):
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    processor = SessionSpanProcessor()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    class BrokenDialects(tuple):
        def __hash__(self):
            raise RuntimeError("simulated bug")

    monkeypatch.setattr(processor, "_dialects", BrokenDialects(("openinference",)))
    caplog.set_level(logging.ERROR, logger="sessiontrace")
    tracer = provider.get_tracer("t")
    with strict_errors(False), using_session("s"):
        for _ in range(3):
            with tracer.start_as_current_span("survives"):
                pass
    provider.shutdown()
    assert [span.name for span in exporter.get_finished_spans()] == ["survives"] * 3
    records = [r for r in caplog.records if "internal error in SessionSpanProcessor" in r.message]
    assert len(records) == 1
    assert "simulated bug" in caplog.text


def test_strict_mode_surfaces_internal_errors(monkeypatch):
    processor = SessionSpanProcessor()

    class BrokenDialects(tuple):
        def __hash__(self):
            raise RuntimeError("simulated bug")

    monkeypatch.setattr(processor, "_dialects", BrokenDialects(("openinference",)))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    with using_session("s"), pytest.raises(RuntimeError, match="simulated bug"):
        provider.get_tracer("t").start_span("x")
    provider.shutdown()


@pytest.mark.parametrize(
    ("dialects", "words"),
    [
        ("phoenix", "unknown dialect(s) ['phoenix']"),
        (["langfuse", "otel"], "unknown dialect(s) ['otel']"),
        ("", "is empty"),
        ([1], "must hold str names"),
    ],
)
def test_bad_dialects_are_a_clear_error(dialects, words):
    with pytest.raises((ValueError, TypeError)) as raised:
        SessionSpanProcessor(dialects=dialects)
    assert words in str(raised.value)


def test_dialect_names_are_normalized():
    assert SessionSpanProcessor(dialects="Traceloop, openinference").dialects == (
        "openinference",
        "traceloop",
    )
    assert SessionSpanProcessor(dialects="all").dialects == (
        "openinference",
        "genai",
        "langfuse",
        "traceloop",
    )


def _stamp_one(provider_limits=None):
    provider = TracerProvider(shutdown_on_exit=False, span_limits=provider_limits)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SessionSpanProcessor(dialects="all"))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with using_attributes(**FULL):
        provider.get_tracer("t").start_span("s", attributes={"user.id": "preset"}).end()
    provider.shutdown()
    return dict(exporter.get_finished_spans()[0].attributes)


def test_direct_write_and_set_attributes_stamp_the_same(monkeypatch):
    from opentelemetry.sdk.trace import Span

    from sessiontrace import _processor

    # Count the calls of the SDK's own set_attributes (it still runs): the direct path must
    # not use it, the fallback must, so the two paths are both really taken here.
    calls = []
    real = Span.set_attributes

    def counted(self, attributes):
        calls.append(dict(attributes))
        return real(self, attributes)

    monkeypatch.setattr(Span, "set_attributes", counted)
    assert _processor.FAST_WRITE  # on this SDK the direct path is the one in use
    direct = _stamp_one()
    assert calls == [], "the direct path went through set_attributes"
    monkeypatch.setattr(_processor, "FAST_WRITE", False)
    assert _stamp_one() == direct
    assert [sorted(call) for call in calls] == [sorted(set(direct) - {"user.id"})]
    assert direct["user.id"] == "preset"
    assert direct["tag.tags"] == ("beta",)


def test_attribute_value_length_limit_is_honoured():
    attributes = _stamp_one(SpanLimits(max_attribute_length=4))
    assert attributes["session.id"] == "chat"
    assert attributes["langfuse.trace.metadata.plan"] == '"pro'


def test_a_nearly_full_span_at_start_still_gets_its_keys():
    provider = TracerProvider(shutdown_on_exit=False, span_limits=SpanLimits(max_attributes=6))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with using_attributes(**FULL):
        preset = {f"p{index}": index for index in range(5)}
        provider.get_tracer("t").start_span("s", attributes=preset).end()
    provider.shutdown()
    attributes = exporter.get_finished_spans()[0].attributes
    assert len(attributes) == 6
    assert attributes["session.id"] == "chat-1"


def test_creating_a_processor_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG)
    SessionSpanProcessor()
    SessionSpanProcessor(reserve_keys=False)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.DEBUG] == []


@pytest.mark.parametrize(
    ("dialects", "message"),
    [
        (5, "dialects must be a str, an iterable of str, or None; got int"),
        (b"genai", "dialects must be a str, an iterable of str, or None; got bytes"),
        (object(), "dialects must be a str, an iterable of str, or None; got object"),
        ([b"genai"], "dialects must hold str names, got bytes"),
    ],
)
def test_dialects_of_the_wrong_type_are_a_type_error(dialects, message):
    with pytest.raises(TypeError) as raised:
        SessionSpanProcessor(dialects=dialects)
    assert message in str(raised.value)
    with pytest.raises(TypeError) as raised:
        normalize_dialects(dialects)
    assert message in str(raised.value)


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_reserve_keys_must_be_a_bool(flag):
    with pytest.raises(TypeError, match="reserve_keys must be True or False, got"):
        SessionSpanProcessor(reserve_keys=flag)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.text(max_size=40),
        st.lists(st.one_of(st.text(max_size=12), st.integers(), st.none()), max_size=5),
        st.integers(),
        st.floats(),
        st.binary(max_size=8),
        st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    )
)
def test_any_dialects_value_is_accepted_or_a_clear_error(dialects):
    try:
        chosen = normalize_dialects(dialects)
    except (TypeError, ValueError) as error:
        assert "dialects" in str(error)
    else:
        assert chosen and set(chosen) <= {"openinference", "genai", "langfuse", "traceloop"}
