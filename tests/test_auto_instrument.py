"""configure(auto_instrument=...) turns on each installed instrumentation once, per library.

The test environment has OpenInference's, OpenTelemetry's own and Traceloop's instrumentations
of openai (and two of langchain, mcp, anthropic, openai_agents), so the choice is real. Each
case runs in a process of its own (instrumentation is process-wide and some packages cannot
undo theirs), against the fake OpenAI server and a real OTLP receiver.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import sessiontrace
from helpers.fake_openai import FakeOpenAI
from helpers.otlp_receiver import OTLPHttpReceiver, ReceivedSpan
from helpers.programs import clean_env
from sessiontrace._auto_instrument import rank
from sessiontrace._settings import resolve

CHILD = """
import dataclasses, json, sys
import openai
import sessiontrace

sessiontrace.configure(endpoint=sys.argv[2], service_name="auto", ARGUMENTS)
client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0)
with sessiontrace.using_attributes(session_id="auto-1", user_id="ada"):
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
EXTRA
sessiontrace.force_flush()
print(json.dumps([dataclasses.asdict(each) for each in sessiontrace.auto_instrumented()]))
"""


def run_child(
    arguments: str,
    extra: str = "",
    env: dict[str, str] | None = None,
    path: str = "",
    before: str = "",
) -> tuple[dict[tuple[str, str], str], list[ReceivedSpan]]:
    """The child's ``auto_instrumented()`` by (library, package), and the spans it sent.

    ``before`` runs before configure(), ``extra`` after the OpenAI call.
    """
    source = textwrap.dedent(before) + CHILD
    source = source.replace("ARGUMENTS", arguments).replace("EXTRA", textwrap.dedent(extra))
    environ = clean_env() | (env or {})
    if path:
        environ["PYTHONPATH"] = path
    with FakeOpenAI() as openai_server, OTLPHttpReceiver() as receiver:
        result = subprocess.run(
            [sys.executable, "-c", source, openai_server.base_url, receiver.endpoint],
            env=environ,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for_spans(1)
    found = json.loads(result.stdout.splitlines()[-1])
    return {(each["library"], each["distribution"]): each["status"] for each in found}, spans


def llm_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [span for span in spans if "openai" in span.scope_name]


def test_every_installed_library_once_openinference_first() -> None:
    langchain_call = """
    from langchain_core.runnables import RunnableLambda
    RunnableLambda(lambda text: text.upper()).invoke(
        "hi", config={"configurable": {"thread_id": "thread-9"}}
    )
    """
    done, spans = run_child("auto_instrument=True", langchain_call)
    assert done[("openai", "openinference-instrumentation-openai")] == "instrumented"
    assert done[("openai", "opentelemetry-instrumentation-openai-v2")] == "not chosen"
    assert done[("openai", "opentelemetry-instrumentation-openai")] == "not chosen"
    assert done[("langchain", "openinference-instrumentation-langchain")] == "instrumented"
    assert done[("httpx", "opentelemetry-instrumentation-httpx")] == "instrumented"
    assert done[("sessiontrace_langchain", "sessiontrace")] == "instrumented"
    assert not [key for key, status in done.items() if status.startswith("failed")]
    (llm,) = llm_spans(spans)  # one span per call, not one per installed package
    assert llm.scope_name == "openinference.instrumentation.openai"
    assert llm.attributes["session.id"] == "auto-1"
    assert llm.attributes["user.id"] == "ada"
    http = [span for span in spans if "httpx" in span.scope_name]
    assert http and all(span.attributes["session.id"] == "auto-1" for span in http)
    # sessiontrace's own LangChain integration: the run's thread_id is its session.
    (chain,) = [span for span in spans if "langchain" in span.scope_name]
    assert chain.attributes["session.id"] == "thread-9"


def test_a_second_configure_reports_what_the_first_did() -> None:
    again = """
    sessiontrace.configure(endpoint=sys.argv[2], service_name="auto", auto_instrument=["openai"])
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}]
    )
    """
    done, spans = run_child('auto_instrument=["openai"]', again)
    assert done[("openai", "openinference-instrumentation-openai")] == "instrumented"
    assert len(llm_spans(spans)) == 2  # one per call: the second configure() added none


def test_the_choice_names_the_package_and_the_list_limits_the_libraries() -> None:
    done, spans = run_child(
        'auto_instrument=["openai"], '
        'instrumentation_choice={"openai": "opentelemetry-instrumentation-openai-v2"}'
    )
    assert done[("openai", "opentelemetry-instrumentation-openai-v2")] == "instrumented"
    assert done[("openai", "openinference-instrumentation-openai")] == "not chosen"
    assert {library for library, _ in done} == {"openai"}
    (llm,) = spans  # OpenTelemetry's own: one GenAI span, no OpenInference one, no httpx one
    assert llm.scope_name == "opentelemetry.util.genai.handler"
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["gen_ai.conversation.id"] == "auto-1"


def test_the_environment_turns_it_on_and_the_disabled_list_is_honoured() -> None:
    done, spans = run_child(
        "",
        env={
            "SESSIONTRACE_AUTO_INSTRUMENT": "openai,httpx2",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": " openai ",
        },
    )
    assert done[("openai", "openinference-instrumentation-openai")] == "disabled"
    # The openai client sends with httpx2 (the httpx fork); its spans stand in for the call.
    assert done[("httpx2", "opentelemetry-instrumentation-httpx")] == "instrumented"
    assert not llm_spans(spans)
    assert all(span.attributes["session.id"] == "auto-1" for span in spans)


def test_a_library_already_instrumented_is_left_alone() -> None:
    before = """
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    OpenAIInstrumentor().instrument()
    """
    done, spans = run_child('auto_instrument=["openai"]', before=before)
    assert done[("openai", "openinference-instrumentation-openai")] == "already instrumented"
    (llm,) = llm_spans(spans)  # Traceloop's, which the user turned on; not a second one
    assert llm.scope_name.startswith("opentelemetry.instrumentation.openai")
    assert llm.attributes["session.id"] == "auto-1"


def test_a_failing_package_is_reported_and_the_others_still_apply(tmp_path: Path) -> None:
    # A real installed distribution (a .dist-info on the path) whose instrumentor raises.
    (tmp_path / "broken_instrumentation.py").write_text(
        textwrap.dedent(
            """
            from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

            class Broken(BaseInstrumentor):
                def instrumentation_dependencies(self):
                    return ()

                def _instrument(self, **kwargs):
                    raise RuntimeError("this package is broken")

                def _uninstrument(self, **kwargs):
                    pass
            """
        )
    )
    info = tmp_path / "broken_instrumentation-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-instrumentation\n")
    (info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\nbroken = broken_instrumentation:Broken\n"
    )
    done, spans = run_child('auto_instrument=["broken", "openai"]', path=str(tmp_path))
    assert done[("broken", "broken-instrumentation")] == (
        "failed: RuntimeError: this package is broken"
    )
    assert done[("openai", "openinference-instrumentation-openai")] == "instrumented"
    assert llm_spans(spans)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"auto_instrument": "openai"}, TypeError, r"configure\(auto_instrument=...\) must be"),
        ({"auto_instrument": ["open,ai"]}, ValueError, "without commas"),
        ({"auto_instrument": [""]}, ValueError, "non-empty"),
        ({"instrumentation_choice": ["openai"]}, TypeError, "a dict of library name to package"),
        ({"instrumentation_choice": {"openai": ""}}, ValueError, "each package must be"),
        ({"instrumentation_choice": {3: "x"}}, ValueError, "each library must be"),
    ],
)
def test_bad_arguments_raise_at_the_call_and_change_nothing(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    provider = TracerProvider()
    with pytest.raises(error, match=message):
        sessiontrace.configure(tracer_provider=provider, store=False, **arguments)
    assert not hasattr(provider, "_sessiontrace_pipeline")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("off", False),
        ("openai, langchain", frozenset({"openai", "langchain"})),
    ],
)
def test_the_environment_variable(text: str, expected: object) -> None:
    assert resolve({}, {"SESSIONTRACE_AUTO_INSTRUMENT": text})["auto_instrument"] == expected


def test_the_choice_variable() -> None:
    environ = {"SESSIONTRACE_INSTRUMENTATION_CHOICE": "openai=opentelemetry-instrumentation-openai"}
    choice = resolve({}, environ)["instrumentation_choice"]
    assert choice == {"openai": "opentelemetry-instrumentation-openai"}
    with pytest.warns(RuntimeWarning, match="SESSIONTRACE_INSTRUMENTATION_CHOICE"):
        assert resolve({}, {"SESSIONTRACE_INSTRUMENTATION_CHOICE": "openai"}) is not None


def test_rank_prefers_openinference_then_opentelemetry_contrib() -> None:
    contrib = ["Repository, https://github.com/open-telemetry/opentelemetry-python-contrib"]
    assert rank("openinference-instrumentation-openai", []) == 0
    assert rank("opentelemetry-instrumentation-openai-v2", contrib) == 1
    assert rank("opentelemetry-instrumentation-openai", ["https://github.com/traceloop"]) == 2


def test_sessiontraces_integrations_are_opentelemetry_instrumentors() -> None:
    from importlib.metadata import entry_points

    from celery import signals

    from sessiontrace.integrations import _instrumentors

    names = {
        entry.name
        for entry in entry_points(group="opentelemetry_instrumentor")
        if entry.dist is not None and entry.dist.metadata["Name"] == "sessiontrace"
    }
    expected = {"sessiontrace_langchain", "sessiontrace_celery", "sessiontrace_mcp"}
    assert names == expected | {"sessiontrace_openai_agents"}
    instrumentor = _instrumentors.CeleryInstrumentor()
    instrumentor.instrument()
    try:
        assert any("sessiontrace" in str(key) for key, _ in signals.task_prerun.receivers)
    finally:
        instrumentor.uninstrument()
    assert not any("sessiontrace" in str(key) for key, _ in signals.task_prerun.receivers)
