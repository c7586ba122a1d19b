"""configure() is all or nothing: every argument is checked before anything global changes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from helpers.otlp_receiver import OTLPHttpReceiver
from sessiontrace import configure, using_session
from sessiontrace._config import _PIPELINE_ATTRIBUTE

BAD_ARGUMENTS = [
    ({"headers": "k=v"}, TypeError, r"headers=.*mapping"),
    ({"headers": {"k": 5}}, TypeError, r"headers=.*str"),
    ({"headers": {"bad name": "v"}}, ValueError, r"headers=.*invalid header name"),
    ({"headers": {"k": "a\r\nInjected: 1"}}, ValueError, r"headers=.*line break"),
    ({"endpoint": 5}, TypeError, r"endpoint=.*str or None, got int"),
    ({"endpoint": "localhost"}, ValueError, r"endpoint=.*http:// or https:// URL"),
    ({"endpoint": "http://host:99999"}, ValueError, r"endpoint=.*valid port"),
    ({"traces_endpoint": "ftp://x"}, ValueError, r"traces_endpoint="),
    ({"protocol": "http/json"}, ValueError, r"protocol=.*choose from"),
    ({"service_name": ""}, ValueError, r"service_name=.*empty"),
    ({"dialects": 5}, TypeError, r"dialects"),
    ({"store": "yes"}, TypeError, r"store=.*True, False or None"),
    ({"store_path": 3}, TypeError, r"store_path="),
    ({"exporters": [object()]}, TypeError, r"exporters=.*SpanExporter"),
    ({"exporters": "otlp"}, TypeError, r"exporters="),
    ({"batch": "no"}, TypeError, r"batch="),
    ({"durable": 1}, TypeError, r"durable="),
    ({"shutdown_timeout": -1}, ValueError, r"shutdown_timeout=.*more than 0"),
    ({"shutdown_timeout": float("nan")}, ValueError, r"shutdown_timeout="),
    ({"shutdown_timeout": "5"}, TypeError, r"shutdown_timeout="),
    ({"queue_size": 0}, ValueError, r"queue_size="),
    ({"queue_size": True}, TypeError, r"queue_size="),
    ({"tracer_provider": "global"}, TypeError, r"tracer_provider="),
]


@pytest.mark.parametrize(("arguments", "error", "message"), BAD_ARGUMENTS)
def test_a_bad_argument_is_a_clear_error_and_nothing_is_applied(arguments, error, message):
    provider = TracerProvider(shutdown_on_exit=False)
    with pytest.raises(error, match=message):
        configure(**{"tracer_provider": provider, **arguments})
    assert getattr(provider, _PIPELINE_ATTRIBUTE, None) is None
    provider.shutdown()


WRONG_VALUES = st.one_of(
    st.integers(),
    st.floats(),
    st.binary(),
    st.lists(st.integers()),
    st.dictionaries(st.integers(), st.integers()),
    st.text(max_size=5).filter(lambda text: "://" not in text and ":" not in text),
)
ARGUMENTS = [
    "service_name",
    "endpoint",
    "traces_endpoint",
    "protocol",
    "headers",
    "store",
    "store_path",
    "durable",
    "shutdown_timeout",
    "queue_size",
    "batch",
    "propagate",
]


@settings(max_examples=150, deadline=None, database=None)
@given(argument=st.sampled_from(ARGUMENTS), value=WRONG_VALUES)
def test_fuzzed_wrong_values_raise_naming_the_argument_or_are_accepted_whole(argument, value):
    provider = TracerProvider(shutdown_on_exit=False)
    try:
        configure(tracer_provider=provider, store=False, **{argument: value})
    except (TypeError, ValueError) as error:
        assert argument in str(error)
        assert getattr(provider, _PIPELINE_ATTRIBUTE, None) is None
    finally:
        provider.shutdown()


AFTER_A_FAILED_CALL = """
    import sessiontrace
    from opentelemetry import trace
    try:
        sessiontrace.configure(endpoint="http://collector:notaport")
    except ValueError as error:
        print("refused:", error)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider), "half-applied"
    provider = sessiontrace.configure(store_path=r"{db}")
    with sessiontrace.using_session("after-the-error"):
        with trace.get_tracer("t").start_as_current_span("kept"):
            pass
"""


def test_a_failed_call_leaves_the_process_as_it_was_and_a_later_call_works(tmp_path):
    db = tmp_path / "sessions.db"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(AFTER_A_FAILED_CALL.format(db=db))],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "refused: configure(endpoint=...) must be an http:// or https:// URL" in result.stdout
    from sessiontrace.store import SessionStore

    (session,) = SessionStore(db).sessions()
    assert session.session_id == "after-the-error"


def test_durable_export_goes_through_the_spool_to_the_backend(tmp_path):
    with OTLPHttpReceiver() as receiver:
        provider = configure(
            endpoint=receiver.endpoint,
            durable=True,
            spool_path=tmp_path / "spool.db",
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        with using_session("durable"):
            for index in range(30):
                provider.get_tracer("t").start_span(f"s{index}").end()
        provider.shutdown()
        received = receiver.wait_for_spans(30)
    assert {span.attributes["session.id"] for span in received} == {"durable"}
    assert (tmp_path / "spool.db").exists()


def test_the_new_settings_come_from_the_environment(monkeypatch):
    from sessiontrace._settings import resolve

    monkeypatch.setenv("SESSIONTRACE_DURABLE", "true")
    monkeypatch.setenv("SESSIONTRACE_SHUTDOWN_TIMEOUT", "2.5")
    monkeypatch.setenv("SESSIONTRACE_QUEUE_SIZE", "100")
    resolved = resolve({})
    assert (resolved["durable"], resolved["shutdown_timeout"], resolved["queue_size"]) == (
        True,
        2.5,
        100,
    )
    monkeypatch.setenv("SESSIONTRACE_SHUTDOWN_TIMEOUT", "forever")
    with pytest.warns(RuntimeWarning, match="SESSIONTRACE_SHUTDOWN_TIMEOUT"):
        assert resolve({})["shutdown_timeout"] == 5.0


def test_durable_grpc_export_reaches_a_plaintext_backend_named_without_a_scheme(tmp_path):
    from helpers.otlp_receiver import OTLPGrpcReceiver

    with OTLPGrpcReceiver() as receiver:
        target = receiver.endpoint.split("://")[-1]  # host:port, as many users write it
        provider = configure(
            endpoint=target,
            protocol="grpc",
            durable=True,
            spool_path=tmp_path / "spool.db",
            tracer_provider=TracerProvider(shutdown_on_exit=False),
        )
        with using_session("durable-grpc"):
            provider.get_tracer("t").start_span("over-grpc").end()
        provider.shutdown()
        (span,) = receiver.wait_for_spans(1)
    assert span.attributes["session.id"] == "durable-grpc"
