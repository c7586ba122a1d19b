"""_redaction: the rule set on real spans, and Redactor in front of real exporters.

Spans come from the real OpenTelemetry SDK with sessiontrace's processor stamping them, made
by code that knows nothing about sessiontrace (as instrumentation does); they are exported to
an in-memory exporter and to the real SQLite store, whose file is then searched byte by byte.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from sessiontrace import Redaction, Redactor, SessionSpanProcessor, using_attributes
from sessiontrace.store import SessionStore, SQLiteSpanExporter

SECRET_MAIL = "grace.hopper@navy.example"
SECRET_KEY = "sk-proj-0123456789abcdefghijklmnopqrstuv"
CARD = "4111 1111 1111 1111"


def provider_with(*exporters) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SessionSpanProcessor(dialects="all"))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


def traced_call(provider: TracerProvider, **scope) -> None:
    """What an instrumentation library records for one LLM call, inside a session."""
    tracer = provider.get_tracer("acme.llm.instrumentation")
    with using_attributes(**scope):
        with tracer.start_as_current_span("acme.chat") as span:
            span.set_attribute("input.value", f"Mail {SECRET_MAIL}, key {SECRET_KEY}")
            span.set_attribute("llm.input_messages.0.message.content", f"card {CARD}")
            span.set_attribute("acme.recipients", ["ops@example.org", "nobody"])
            span.set_attribute("acme.retries", 2)
            span.add_event("exception", {"exception.message": f"no reply from {SECRET_MAIL}"})
            span.set_status(Status(StatusCode.ERROR, f"quota of {SECRET_MAIL} exceeded"))


def test_every_string_event_and_status_is_masked_and_counted(memory):
    provider = provider_with(Redactor(memory))
    traced_call(provider, session_id="chat-1", user_id="u-7")
    (span,) = memory.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["input.value"] == "Mail [email], key [api-key]"
    assert attributes["llm.input_messages.0.message.content"] == "card [card]"
    assert attributes["acme.recipients"] == ("[email]", "nobody")
    assert attributes["acme.retries"] == 2
    assert span.events[0].attributes == {"exception.message": "no reply from [email]"}
    assert span.status.description == "quota of [email] exceeded"
    assert attributes["sessiontrace.redaction.count"] == 6  # 2 + 1 + 1 matches, event, status
    assert attributes["session.id"] == "chat-1" and attributes["user.id"] == "u-7"


def test_sessiontrace_keys_are_never_masked_even_when_they_look_like_secrets(memory):
    provider = provider_with(Redactor(memory))
    traced_call(provider, session_id="ada@example.com", user_id="ada@example.com",
                tags=["ada@example.com"])  # fmt: skip
    attributes = dict(memory.get_finished_spans()[0].attributes or {})
    for key in ("session.id", "user.id", "gen_ai.conversation.id", "langfuse.session.id",
                "langfuse.user.id", "traceloop.association.properties.session_id",
                "traceloop.association.properties.user_id"):  # fmt: skip
        assert attributes[key] == "ada@example.com", key
    assert attributes["tag.tags"] == ("ada@example.com",)
    assert attributes["langfuse.trace.tags"] == ("ada@example.com",)


def test_the_store_file_never_holds_the_secrets(tmp_path: Path):
    db = tmp_path / "sessions.db"
    provider = provider_with(Redactor(SQLiteSpanExporter(db)))
    traced_call(provider, session_id="chat-1", user_id="u-7")
    provider.shutdown()
    with SessionStore(db) as store:
        (span,) = store.spans("chat-1")
    assert span.attributes["input.value"] == "Mail [email], key [api-key]"
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    for secret in (SECRET_MAIL, SECRET_KEY, CARD, "ops@example.org"):
        assert secret.encode() not in raw, secret


def test_key_rules_drop_mask_and_a_callable_decides_the_rest(memory):
    seen: list[str] = []

    def custom(key, value):
        seen.append(key)
        if key == "acme.retries":
            return None
        return value.upper() if isinstance(value, str) and key.startswith("acme.") else value

    rules = Redaction(
        patterns={"ticket": r"TICKET-\d+"},
        drop_keys=["llm.input_messages.*"],
        mask_keys=["input.*"],
        custom=custom,
    )
    provider = provider_with(Redactor(memory, rules))
    with using_attributes(session_id="chat-1"):
        with provider.get_tracer("acme").start_as_current_span("acme.chat") as span:
            span.set_attribute("input.value", "anything")
            span.set_attribute("llm.input_messages.0.message.content", "gone")
            span.set_attribute("acme.note", "see TICKET-42 from a@example.com")
            span.set_attribute("acme.retries", 3)
    attributes = dict(memory.get_finished_spans()[0].attributes or {})
    assert attributes["input.value"] == "[masked]"
    assert "llm.input_messages.0.message.content" not in attributes
    assert attributes["acme.note"] == "SEE [TICKET] FROM [EMAIL]"
    assert "acme.retries" not in attributes
    assert "session.id" not in seen  # the callable never sees sessiontrace's keys
    assert attributes["sessiontrace.redaction.count"] == 5  # masked, dropped, 2 matches, dropped


def test_a_raising_callable_fails_closed_and_is_logged_once(memory, caplog):
    def broken(key, value):
        raise RuntimeError("boom")

    provider = provider_with(Redactor(memory, Redaction(defaults=False, custom=broken)))
    with caplog.at_level(logging.WARNING, logger="sessiontrace"):
        for _ in range(3):
            provider.get_tracer("t").start_span("s", attributes={"acme.secret": "x"}).end()
    assert [dict(s.attributes or {})["acme.secret"] for s in memory.get_finished_spans()] == [
        "[redaction-failed]"
    ] * 3
    assert caplog.text.count("the redaction callable raised") == 1


def test_a_span_with_nothing_to_mask_is_sent_as_it_is(memory):
    provider = provider_with(memory)
    provider.get_tracer("t").start_span("plain", attributes={"acme.n": 1, "a": "b"}).end()
    (span,) = memory.get_finished_spans()
    assert Redaction().redact(span) is span


def test_a_span_the_rules_fail_on_is_dropped_and_counted_never_sent_unmasked(memory):
    from sessiontrace.export._losses import LEDGER

    class Unreadable(ReadableSpan):
        @property
        def attributes(self):  # a span another SDK built, with attributes that cannot be read
            raise RuntimeError("unreadable")

    key = ("dropped", "redaction-failed", "InMemorySpanExporter")
    before = LEDGER.totals().get(key, 0)
    redactor = Redactor(memory)
    redactor.export([Unreadable("broken"), ReadableSpan("fine", attributes={"m": "a@b.example"})])
    assert [span.name for span in memory.get_finished_spans()] == ["fine"]
    assert LEDGER.totals().get(key, 0) - before == 1


@pytest.mark.parametrize(
    ("arguments", "error", "fragment"),
    [
        ({"patterns": ["x"]}, TypeError, "patterns must be a mapping"),
        ({"patterns": {"": "x"}}, ValueError, "label must be non-empty"),
        ({"drop_keys": "input.*"}, TypeError, "not one string"),
        ({"mask_keys": [""]}, ValueError, "non-empty glob"),
        ({"custom": "upper"}, TypeError, "custom must be callable"),
        ({"defaults": "yes"}, TypeError, "defaults must be True or False"),
    ],
)
def test_bad_rules_are_refused_at_the_call_naming_the_argument(arguments, error, fragment):
    with pytest.raises(error, match=fragment):
        Redaction(**arguments)


def test_redactor_refuses_what_is_not_an_exporter():
    with pytest.raises(TypeError, match="exporter must be a SpanExporter"):
        Redactor(object())  # type: ignore[arg-type]


def configured(tmp_path: Path, memory: InMemorySpanExporter, **arguments) -> TracerProvider:
    from sessiontrace import configure

    return configure(
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        store_path=tmp_path / "sessions.db",
        exporters=[memory],
        **arguments,
    )


def store_attributes(tmp_path: Path) -> dict:
    with SessionStore(tmp_path / "sessions.db") as store:
        (span,) = store.spans("chat-1")
    return span.attributes


def test_configure_redact_masks_before_every_destination(tmp_path, memory):
    provider = configured(tmp_path, memory, store=True, redact=True)
    traced_call(provider, session_id="chat-1", user_id="u-7")
    provider.shutdown()
    exported = dict(memory.get_finished_spans()[0].attributes or {})
    stored = store_attributes(tmp_path)
    for attributes in (exported, stored):
        assert attributes["input.value"] == "Mail [email], key [api-key]"
        assert attributes["sessiontrace.redaction.count"] == 6
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert SECRET_MAIL.encode() not in raw


def test_the_environment_variable_turns_it_on(tmp_path, memory, monkeypatch):
    monkeypatch.setenv("SESSIONTRACE_REDACT", "true")
    provider = configured(tmp_path, memory, store=True)
    traced_call(provider, session_id="chat-1")
    provider.shutdown()
    assert store_attributes(tmp_path)["input.value"] == "Mail [email], key [api-key]"


def test_without_redact_nothing_is_masked(tmp_path, memory):
    provider = configured(tmp_path, memory, store=True)
    traced_call(provider, session_id="chat-1")
    provider.shutdown()
    assert SECRET_MAIL in store_attributes(tmp_path)["input.value"]


def test_openinference_and_genai_switches_apply_to_every_span_with_redact_off(
    tmp_path, memory, monkeypatch
):
    monkeypatch.setenv("OPENINFERENCE_HIDE_INPUTS", "true")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "false")
    provider = configured(tmp_path, memory, store=True)
    with using_attributes(session_id="chat-1"):
        # Made by code that is no OpenInference instrumentation and never read the switches.
        provider.get_tracer("acme").start_span("acme.chat", attributes={
            "input.value": "private question",
            "input.mime_type": "text/plain",
            "llm.input_messages.0.message.content": "private question",
            "gen_ai.input.messages": '[{"role": "user"}]',
            "output.value": f"reply to {SECRET_MAIL}",
        }).end()  # fmt: skip
    provider.shutdown()
    for attributes in (store_attributes(tmp_path), dict(memory.get_finished_spans()[0].attributes)):
        assert attributes["input.value"] == "__REDACTED__"
        for key in ("input.mime_type", "llm.input_messages.0.message.content",
                    "gen_ai.input.messages"):  # fmt: skip
            assert key not in attributes
        assert attributes["output.value"] == f"reply to {SECRET_MAIL}"  # defaults are off


def test_redaction_happens_before_the_durable_spool_writes_to_disk(tmp_path, memory):
    from helpers.programs import free_port

    provider = configured(tmp_path, memory, endpoint=f"http://127.0.0.1:{free_port()}",
                          durable=True, redact=True, shutdown_timeout=1.0)  # fmt: skip
    traced_call(provider, session_id="chat-1")
    provider.force_flush(5000)
    provider.shutdown()
    spool = tmp_path / "spool.db"
    assert spool.exists()
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert SECRET_MAIL.encode() not in raw and SECRET_KEY.encode() not in raw
    assert b"[api-key]" in raw  # the masked span is what was spooled


def test_configure_refuses_a_bad_redact_naming_it(tmp_path, memory):
    with pytest.raises(TypeError, match=r"configure\(redact=\.\.\.\)"):
        configured(tmp_path, memory, redact="yes")


attribute_values = st.one_of(
    st.text(max_size=80),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.text(max_size=40), max_size=4).map(tuple),
    st.lists(st.integers(), max_size=4).map(tuple),
    st.sampled_from([SECRET_MAIL, SECRET_KEY, CARD, f"Bearer {SECRET_KEY}"]),
)
attribute_maps = st.dictionaries(
    st.one_of(
        st.text(min_size=1, max_size=30),
        st.sampled_from(
            ["session.id", "user.id", "tag.tags", "input.value", "sessiontrace.step.name"]
        ),
    ),
    attribute_values,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(attributes=attribute_maps, event=attribute_maps, status=st.text(max_size=60))
def test_any_span_is_redacted_without_error_and_keeps_sessiontraces_keys(attributes, event, status):
    span = ReadableSpan(
        "any",
        attributes=attributes,
        events=[Event("e", event)],
        status=Status(StatusCode.ERROR, status),
    )
    redacted = Redaction().redact(span)
    masked = dict(redacted.attributes or {})
    for key in ("session.id", "user.id", "tag.tags", "sessiontrace.step.name"):
        if key in attributes:
            assert repr(masked[key]) == repr(attributes[key])  # NaN too
    own = {"session.id", "user.id", "tag.tags", "sessiontrace.step.name"}
    event_attributes = redacted.events[0].attributes or {}
    shown = [*masked.items(), *event_attributes.items(), ("", redacted.status.description)]
    for key, value in shown:
        if key not in own:
            assert SECRET_MAIL not in str(value) and SECRET_KEY not in str(value), key
    assert (redacted is span) == ("sessiontrace.redaction.count" not in masked)
