"""configure(): exporters over the wire, settings precedence, idempotence, the local store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from helpers.otlp_receiver import OTLPGrpcReceiver, OTLPHttpReceiver
from sessiontrace import configure, using_attributes
from sessiontrace._settings import resolve
from sessiontrace.store import SessionStore

OTEL_VARIABLES = [
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "SESSIONTRACE_DIALECTS",
    "SESSIONTRACE_STORE",
    "SESSIONTRACE_STORE_PATH",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for variable in OTEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


def one_turn(provider: TracerProvider, name: str = "turn") -> None:
    with using_attributes(session_id="chat-7", user_id="ada", tags=["beta"]):
        with provider.get_tracer("app").start_as_current_span(name):
            pass
    provider.shutdown()


def test_stamped_keys_arrive_over_otlp_http():
    with OTLPHttpReceiver() as receiver:
        provider = configure(
            endpoint=receiver.endpoint,
            headers={"Authorization": "Bearer k"},
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        one_turn(provider)
        (span,) = receiver.wait_for_spans(1)
        headers = receiver.headers()[0]
    assert span.name == "turn"
    assert span.attributes["session.id"] == "chat-7"
    assert span.attributes["gen_ai.conversation.id"] == "chat-7"
    assert span.attributes["user.id"] == "ada"
    assert span.attributes["tag.tags"] == ["beta"]
    assert headers["authorization"] == "Bearer k"


def test_environment_selects_grpc_endpoint_headers_and_dialects(monkeypatch):
    with OTLPGrpcReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s%20ecret,x-team=llm")
        monkeypatch.setenv("SESSIONTRACE_DIALECTS", "langfuse")
        provider = configure(tracer_provider=TracerProvider(shutdown_on_exit=False))
        one_turn(provider)
        (span,) = receiver.wait_for_spans(1)
        headers = receiver.headers()[0]
    assert span.attributes["langfuse.session.id"] == "chat-7"
    assert "session.id" not in span.attributes
    assert headers["x-api-key"] == "s ecret"
    assert headers["x-team"] == "llm"


def test_traces_endpoint_is_used_as_is_and_arguments_beat_environment(monkeypatch):
    with OTLPHttpReceiver() as receiver, OTLPHttpReceiver() as ignored:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ignored.traces_endpoint)
        provider = configure(
            traces_endpoint=receiver.traces_endpoint,
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        one_turn(provider)
        receiver.wait_for_spans(1)
        assert ignored.spans() == []


def test_full_traces_url_as_endpoint_is_not_doubled():
    with OTLPHttpReceiver() as receiver:
        provider = configure(
            endpoint=receiver.traces_endpoint,
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        one_turn(provider)
        assert len(receiver.wait_for_spans(1)) == 1


def test_calling_twice_does_not_double_processors_or_spans():
    with OTLPHttpReceiver() as first, OTLPHttpReceiver() as second:
        provider = TracerProvider(shutdown_on_exit=False)
        configure(endpoint=first.endpoint, tracer_provider=provider, batch=False)
        configure(endpoint=second.endpoint, tracer_provider=provider, batch=False)
        assert len(provider._active_span_processor._span_processors) == 1
        one_turn(provider)
        (span,) = second.wait_for_spans(1)
        assert first.spans() == []
    assert span.attributes["session.id"] == "chat-7"


def test_no_endpoint_means_the_local_store(tmp_path):
    provider = configure(tracer_provider=TracerProvider(shutdown_on_exit=False))
    one_turn(provider)
    with SessionStore(tmp_path / ".sessiontrace" / "sessions.db") as store:
        (summary,) = store.sessions()
    assert (summary.session_id, summary.user_id, summary.span_count) == ("chat-7", "ada", 1)


def test_store_and_endpoint_together(tmp_path):
    with OTLPHttpReceiver() as receiver:
        provider = configure(
            endpoint=receiver.endpoint,
            store=True,
            store_path=tmp_path / "both.db",
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        one_turn(provider)
        receiver.wait_for_spans(1)
    with SessionStore(tmp_path / "both.db") as store:
        assert store.session("chat-7").span_count == 1


def test_existing_global_sdk_provider_is_adopted_not_replaced(spans, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    installed = trace.get_tracer_provider()
    before = len(installed._active_span_processor._span_processors)
    assert configure() is installed
    assert configure() is installed  # a second call keeps it adopted
    assert len(installed._active_span_processor._span_processors) == before + 1
    with using_attributes(session_id="chat-7"):
        installed.get_tracer("app").start_span("turn").end()
    installed.force_flush()
    # Adopting adds stamping only: the user's provider already exports, and no store appears
    # (the store is created at the first span it is given: one was sent).
    assert spans.all()
    assert not (tmp_path / ".sessiontrace").exists()


def test_fresh_process_installs_a_global_provider_and_flushes_at_exit():
    script = textwrap.dedent(
        """
        import sessiontrace
        from opentelemetry import trace
        provider = sessiontrace.configure()
        assert trace.get_tracer_provider() is provider
        with sessiontrace.using_session("from-child"):
            with trace.get_tracer("child").start_as_current_span("child-span"):
                pass
        """
    )
    with OTLPHttpReceiver() as receiver:
        environment = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "chat-service",
        }
        subprocess.run([sys.executable, "-c", script], env=environment, check=True, timeout=60)
        (span,) = receiver.wait_for_spans(1)
    assert span.attributes["session.id"] == "from-child"
    assert span.resource_attributes["service.name"] == "chat-service"


def test_unparseable_environment_variable_warns_and_falls_back():
    with pytest.warns(RuntimeWarning, match="OTEL_EXPORTER_OTLP_HEADERS"):
        settings = resolve({}, {"OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign"})
    assert settings["headers"] is None
    with pytest.warns(RuntimeWarning, match="SESSIONTRACE_DIALECTS"):
        assert resolve({}, {"SESSIONTRACE_DIALECTS": "zipkin"})["dialects"] is None


def test_settings_precedence_argument_environment_default():
    environment = {"OTEL_SERVICE_NAME": "from-env", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = resolve({"service_name": "from-arg"}, environment)
    assert settings["service_name"] == "from-arg"
    assert settings["protocol"] == "grpc"
    assert resolve({}, {})["protocol"] == "http/protobuf"
    assert (
        resolve(
            {},
            {
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
        )["protocol"]
        == "grpc"
    )


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match=r"protocol=...\) 'http/json' is not supported"):
        configure(
            endpoint="http://127.0.0.1:1",
            protocol="http/json",
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
    with pytest.raises(ValueError, match="unknown dialect"):
        configure(dialects="zipkin", tracer_provider=TracerProvider(shutdown_on_exit=False))
