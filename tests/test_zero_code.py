"""`opentelemetry-instrument python app.py` stamps sessions with no configure() in the app.

Each test runs a real application under the real `opentelemetry-instrument` command, in a
process of its own, with only OTEL_* / SESSIONTRACE_* variables to set it up; spans arrive at a
real OTLP receiver on 127.0.0.1 or in a real store file. The app calls nothing of sessiontrace
but `using_session`, and makes its spans through OpenTelemetry's global tracer and the real
openai client (auto-instrumented) against the fake OpenAI server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.fake_openai import FakeOpenAI
from helpers.otlp_receiver import OTLPGrpcReceiver, OTLPHttpReceiver, ReceivedSpan
from helpers.programs import clean_env
from sessiontrace._zero_code import exporter_settings
from sessiontrace.store import SessionStore

INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")

UNUSED = "mcp,anthropic,openai_agents,langchain,sessiontrace_langchain,sessiontrace_openai_agents"
# Naming a distro and a configurator that are not installed is how opentelemetry-instrument runs
# where opentelemetry-distro is not installed: no SDK provider is made for the app.
NO_DISTRO = {"OTEL_PYTHON_DISTRO": "not-installed", "OTEL_PYTHON_CONFIGURATOR": "not-installed"}
APP = """
import sys
import openai
from opentelemetry import trace
from sessiontrace import using_attributes

tracer = trace.get_tracer("shop")
client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0)
with using_attributes(session_id="zero-1", user_id="ada"):
    with tracer.start_as_current_span("answer"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
print("app done")
"""


def run_instrumented(tmp_path: Path, base_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The app under `opentelemetry-instrument`, with only ``env`` set for OpenTelemetry."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    environ = clean_env() | {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    # opentelemetry-instrumentation-mcp 0.62.4 (Traceloop's, in the test extra) fails against
    # mcp 2.x and stops OpenTelemetry's start; test_a_failing_instrumentor shows that case.
    # The libraries this app does not use are left out too: importing them all takes seconds.
    environ |= {"OTEL_SERVICE_NAME": "shop", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": UNUSED}
    environ |= env
    result = subprocess.run(
        [str(INSTRUMENT), sys.executable, str(app), base_url],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "app done" in result.stdout
    return result


def app_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [span for span in spans if span.resource_attributes.get("service.name") == "shop"]


def assert_all_stamped(spans: list[ReceivedSpan]) -> None:
    names = {span.name for span in spans}
    assert "answer" in names and len(spans) >= 3, names  # the app's, the LLM's, the HTTP's
    for span in spans:
        assert span.attributes.get("session.id") == "zero-1", span
        assert span.attributes.get("user.id") == "ada", span
        assert span.attributes.get("gen_ai.conversation.id") == "zero-1", span
    assert len({span.trace_id for span in spans}) == 1


def test_with_opentelemetry_distro_every_span_carries_the_session(tmp_path: Path) -> None:
    store = tmp_path / "zero.db"
    with FakeOpenAI() as openai_server, OTLPHttpReceiver() as receiver:
        result = run_instrumented(
            tmp_path,
            openai_server.base_url,
            OTEL_TRACES_EXPORTER="otlp,sessiontrace",  # the distro's OTLP and sessiontrace's store
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            SESSIONTRACE_STORE_PATH=str(store),
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="mcp",  # every other installed one is on
        )
        sent = app_spans(receiver.wait_for_spans(3))
    assert_all_stamped(sent)
    reader = SessionStore(store)
    assert sorted(span.name for span in reader.spans("zero-1")) == sorted(s.name for s in sent)
    assert reader.session("zero-1").user_id == "ada"
    # The test environment has three OpenAI instrumentations; opentelemetry-instrument turns
    # them all on, and sessiontrace says so with the fix.
    assert "openai is instrumented by 3 packages" in result.stderr
    assert "configure(auto_instrument=True)" in result.stderr
    assert not (tmp_path / ".sessiontrace").exists()  # no store but the one named


def test_a_failing_instrumentor_does_not_cost_the_sessions(tmp_path: Path) -> None:
    # Traceloop's MCP instrumentor raises while instrumenting (mcp 2.x moved a function), and
    # opentelemetry-instrument stops there; sessiontrace stamped before the instrumentors ran.
    store = tmp_path / "alone.db"
    with FakeOpenAI() as openai_server:
        result = run_instrumented(
            tmp_path,
            openai_server.base_url,
            OTEL_TRACES_EXPORTER="sessiontrace",
            SESSIONTRACE_STORE_PATH=str(store),
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="",
        )
    assert "Failed to auto initialize OpenTelemetry" in result.stderr
    assert "answer" in {span.name for span in SessionStore(store).spans("zero-1")}


def test_without_a_configurator_sessiontrace_builds_the_provider(tmp_path: Path) -> None:
    with FakeOpenAI() as openai_server, OTLPGrpcReceiver() as receiver:
        run_instrumented(
            tmp_path,
            openai_server.base_url,
            **NO_DISTRO,
            OTEL_TRACES_EXPORTER="otlp",  # gRPC, as OpenTelemetry's "otlp" means
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
        )
        spans = app_spans(receiver.wait_for_spans(3))
    assert_all_stamped(spans)


def test_without_a_configurator_or_exporter_spans_go_to_the_store(tmp_path: Path) -> None:
    with FakeOpenAI() as openai_server:
        run_instrumented(
            tmp_path, openai_server.base_url, **NO_DISTRO
        )
    default_store = tmp_path / ".sessiontrace" / "sessions.db"
    assert "answer" in {span.name for span in SessionStore(default_store).spans("zero-1")}


def test_a_bad_exporter_name_is_reported_and_the_app_runs(tmp_path: Path) -> None:
    with FakeOpenAI() as openai_server:
        result = run_instrumented(
            tmp_path,
            openai_server.base_url,
            **NO_DISTRO,
            OTEL_TRACES_EXPORTER="sessiontrace,zipkin-not-here",
        )
    assert "'zipkin-not-here', but no installed package offers that exporter" in result.stderr
    default_store = tmp_path / ".sessiontrace" / "sessions.db"
    assert SessionStore(default_store).spans("zero-1")


def test_disabling_sessiontrace_leaves_spans_unstamped(tmp_path: Path) -> None:
    with FakeOpenAI() as openai_server, OTLPHttpReceiver() as receiver:
        run_instrumented(
            tmp_path,
            openai_server.base_url,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="sessiontrace," + UNUSED,
        )
        spans = app_spans(receiver.wait_for_spans(3))
    assert spans and all("gen_ai.conversation.id" not in span.attributes for span in spans)


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("", {}),
        ("none", {"store": False}),
        ("sessiontrace", {"store": True, "exporters": []}),
        (
            "otlp_proto_http, sessiontrace",
            {
                "store": True,
                "protocol": "http/protobuf",
                "endpoint": "http://localhost:4318",
                "exporters": [],
            },
        ),
    ],
)
def test_exporter_settings(variable: str, expected: dict[str, object]) -> None:
    assert exporter_settings({"OTEL_TRACES_EXPORTER": variable}) == expected


def test_exporter_settings_keep_the_environment_endpoint() -> None:
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:1"}
    assert exporter_settings(environ) == {"store": False, "protocol": "grpc", "exporters": []}


def test_an_unknown_exporter_name_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="install it or remove it from the variable"):
        exporter_settings({"OTEL_TRACES_EXPORTER": "nothing-by-this-name"})
