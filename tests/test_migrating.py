"""docs/migrating.md: each original snippet with its own library, beside its sessiontrace form.

OpenInference: the real openai client calls the local fake OpenAI server under the real
OpenInference instrumentation, once inside OpenInference's ``using_attributes`` and once
inside sessiontrace's; the LLM span carries the same session, user, metadata and tags either
way, and a span from another library gets them only from sessiontrace's (what the page says
changes). Langfuse and Traceloop: the page's original runs with the real SDK, and its
sessiontrace form with sessiontrace, each in a process of its own exporting to a local OTLP
receiver; both deliver the same keys.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from openinference.instrumentation import using_attributes as openinference_using_attributes

import sessiontrace
from helpers.fake_openai import FakeOpenAI
from helpers.openai_instrumentation import instrumented
from helpers.otlp_receiver import OTLPHttpReceiver
from helpers.programs import clean_env

PAGE = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"
VALUES = dict(session_id="chat-42", user_id="ada", metadata={"plan": "pro"}, tags=["beta"])
KEYS = ("session.id", "user.id", "metadata", "tag.tags")


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as running:
        yield running


def call_inside(block, server, spans, tracer) -> tuple[dict, dict]:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
    with instrumented("openinference"), block(**VALUES):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        tracer.start_span("other.library").end()
    llm = next(s for s in spans.all() if s.instrumentation_scope.name.startswith("openinference"))
    other = spans.named("other.library")
    return dict(llm.attributes or {}), dict(other.attributes or {})


def test_the_page_shows_the_two_forms_compared_here():
    text = PAGE.read_text(encoding="utf-8")
    assert "from openinference.instrumentation import using_attributes" in text
    assert "sessiontrace.using_attributes(" in text
    shown = re.search(r'session_id="chat-42", user_id="ada", metadata=\{"plan": "pro"\}, '
                      r'tags=\["beta"\]', text)  # fmt: skip
    assert shown, "the page's values are the ones this test uses"


def test_openinference_and_sessiontrace_put_the_same_values_on_the_llm_span(server, spans, tracer):
    old_llm, old_other = call_inside(openinference_using_attributes, server, spans, tracer)
    spans.clear()
    new_llm, new_other = call_inside(sessiontrace.using_attributes, server, spans, tracer)
    for key in KEYS:
        assert old_llm[key] == new_llm[key], key
    assert json.loads(new_llm["metadata"]) == {"plan": "pro"}
    # The difference the page names: OpenInference's block reaches its own spans only.
    assert "session.id" not in old_other
    assert new_other["session.id"] == "chat-42" and new_other["tag.tags"] == ("beta",)


def page_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def block_with(*needles: str) -> str:
    (found,) = [block for block in page_blocks() if all(n in block for n in needles)]
    return found


def run_against(receiver, code: str, **env: str) -> list:
    """Run ``code`` as a program of its own, exporting to ``receiver``; the spans it got."""
    environ = clean_env("LANGFUSE_", "TRACELOOP_")
    done = subprocess.run([sys.executable, "-c", code], env={**environ, **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = receiver.wait_for_spans(1, timeout=30)
    receiver.clear()
    return spans


def session_keys(span, keys) -> dict:
    return {key: span.attributes.get(key) for key in keys}


def test_the_langfuse_original_and_the_sessiontrace_form_deliver_the_same_keys(tmp_path):
    with OTLPHttpReceiver() as receiver:
        original = run_against(
            receiver,
            block_with("from langfuse import", "propagate_attributes")
            + "\nfrom langfuse import get_client\nget_client().flush()\n",
            LANGFUSE_PUBLIC_KEY="pk-lf-test",
            LANGFUSE_SECRET_KEY="sk-lf-test",
            LANGFUSE_BASE_URL=receiver.endpoint,
            LANGFUSE_OTEL_TRACES_EXPORT_PATH="v1/traces",
        )
        ours = run_against(
            receiver,
            block_with("sessiontrace.observe()", "def answer").replace(
                'store_path="sessions.db"', "store=False"
            ),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        )
    keys = ("session.id", "user.id", "langfuse.trace.tags")
    (langfuse_span,) = [s for s in original if s.name == "answer"]
    (our_span,) = [s for s in ours if s.name == "answer"]
    assert session_keys(langfuse_span, keys) == {
        "session.id": "chat-42", "user.id": "ada", "langfuse.trace.tags": ["beta"]
    }  # fmt: skip
    assert session_keys(our_span, keys) == session_keys(langfuse_span, keys)
    assert our_span.attributes["langfuse.session.id"] == "chat-42"  # and Langfuse's own key


def test_the_traceloop_original_and_the_sessiontrace_form_deliver_the_same_keys(tmp_path):
    keys = ("traceloop.association.properties.session_id",
            "traceloop.association.properties.user_id")  # fmt: skip
    with OTLPHttpReceiver() as receiver:
        original = run_against(
            receiver,
            block_with("from traceloop.sdk import Traceloop"),
            TRACELOOP_BASE_URL=receiver.endpoint,
            TRACELOOP_TELEMETRY="false",
        )
        ours = run_against(
            receiver,
            block_with('dialects="openinference,genai,traceloop"').replace(
                'store_path="sessions.db"', "store=False"
            )
            + "sessiontrace.force_flush()\n",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        )
    (traceloop_span,) = [s for s in original if s.name == "call"]
    (our_span,) = [s for s in ours if s.name == "call"]
    assert session_keys(traceloop_span, keys) == dict(zip(keys, ("chat-42", "ada"), strict=True))
    assert session_keys(our_span, keys) == session_keys(traceloop_span, keys)
