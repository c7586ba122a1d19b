"""docs/migrating.md: the OpenInference original and its sessiontrace form, against one call.

The real openai client calls the local fake OpenAI server under the real OpenInference
instrumentation, once inside OpenInference's ``using_attributes`` and once inside
sessiontrace's. The LLM span must carry the same session, user, metadata and tags either way;
a span from a library that is no OpenInference instrumentation gets them only from
sessiontrace's (what the page says changes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pytest
from openinference.instrumentation import using_attributes as openinference_using_attributes

import sessiontrace
from helpers.fake_openai import FakeOpenAI
from helpers.openai_instrumentation import instrumented

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
