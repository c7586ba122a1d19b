"""The real openai client against a fake server, under each OpenAI instrumentation users install.

Every span those libraries make inside a session carries the session, user, metadata and tags
in every dialect, for sync, async and streamed calls, including a stream read after the block.
"""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from opentelemetry import context as otel_context

from helpers.fake_openai import REPLY, FakeOpenAI, words
from helpers.openai_instrumentation import INSTRUMENTATIONS, instrumented
from sessiontrace import current_session_id, using_attributes
from sessiontrace._usage import token_counts

VALUES = dict(session_id="chat-77", user_id="ada", metadata={"plan": "pro"}, tags=["beta"])
MESSAGES = [{"role": "user", "content": "Where should I travel in May?"}]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as running:
        yield running


@pytest.fixture(params=list(INSTRUMENTATIONS))
def instrumentation(request):
    with instrumented(request.param):
        yield request.param


def llm_spans(spans):
    found = [s for s in spans.all() if s.instrumentation_scope.name != "tests"]
    assert found, "the instrumentation made no span"
    return found


def assert_stamped(span):
    attributes = span.attributes
    assert attributes["session.id"] == "chat-77", span.name
    assert attributes["gen_ai.conversation.id"] == "chat-77"
    assert attributes["user.id"] == "ada"
    assert json.loads(attributes["metadata"]) == {"plan": "pro"}
    assert attributes["tag.tags"] == ("beta",)
    assert attributes["langfuse.session.id"] == "chat-77"
    assert attributes["langfuse.trace.metadata.plan"] == '"pro"'
    assert attributes["traceloop.association.properties.session_id"] == "chat-77"


def test_sync_call(server, instrumentation, spans):
    client = openai.OpenAI(base_url=server.base_url, api_key="test")
    with using_attributes(**VALUES):
        reply = client.chat.completions.create(model="fake-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == REPLY
    found = llm_spans(spans)
    for span in found:
        assert_stamped(span)
    counts = [token_counts(s.attributes) for s in found]
    assert (
        words(MESSAGES[0]["content"]),
        words(REPLY),
        words(MESSAGES[0]["content"]) + words(REPLY),
    ) in counts


def test_async_call(server, instrumentation, spans):
    async def call() -> str:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        async with client:
            with using_attributes(**VALUES):
                reply = await client.chat.completions.create(model="fake-mini", messages=MESSAGES)
        return reply.choices[0].message.content

    assert asyncio.run(call()) == REPLY
    for span in llm_spans(spans):
        assert_stamped(span)


def test_streamed_call_read_inside_the_block(server, instrumentation, spans):
    client = openai.OpenAI(base_url=server.base_url, api_key="test")
    with using_attributes(**VALUES):
        stream = client.chat.completions.create(
            model="fake-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.split() == REPLY.split()
    for span in llm_spans(spans):
        assert_stamped(span)


def test_stream_read_after_the_block_is_still_stamped(server, instrumentation, spans):
    # The LLM span starts when the call is made, inside the block, so it is stamped then;
    # it ends when the consumer finishes reading, wherever that is.
    client = openai.OpenAI(base_url=server.base_url, api_key="test")
    with using_attributes(**VALUES):
        stream = client.chat.completions.create(
            model="fake-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.split() == REPLY.split()
    for span in llm_spans(spans):
        assert_stamped(span)
    if instrumentation == "opentelemetry-v2":
        # Upstream behaviour (opentelemetry-instrumentation-openai-v2 2.4b0): when the stream
        # ends, it puts back the context that was current when the call was made, so the
        # block's span and session come back in force after the block. docs/integrations.md
        # says so; here the test restores what the caller had.
        assert current_session_id() == "chat-77"
        otel_context.attach(otel_context.Context())
    assert current_session_id() is None


def test_inside_a_tracker_step(server, instrumentation, spans):
    from sessiontrace import SessionTracker

    client = openai.OpenAI(base_url=server.base_url, api_key="test")
    with SessionTracker("agent-run", user_id="ada") as tracker:
        with tracker.step("plan"):
            client.chat.completions.create(model="fake-mini", messages=MESSAGES)
        with tracker.step("answer"):
            client.chat.completions.create(model="fake-mini", messages=MESSAGES)
    calls = [s for s in llm_spans(spans) if s.attributes.get("sessiontrace.span.type") is None]
    assert {s.attributes["sessiontrace.step.index"] for s in calls} == {0, 1}
    for span in calls:
        assert span.attributes["session.id"] == "agent-run"
        assert span.attributes["user.id"] == "ada"
    # The tracker's totals are what the spans report, each span read once. (Earlier tests in
    # this module may leave another instrumentation's wrapper behind, which then reports the
    # same call again: totals follow the spans, not the calls.)
    summary = tracker.summary()
    reported = [token_counts(s.attributes) for s in calls]
    assert summary.llm_calls == sum(1 for counts in reported if counts != (None, None, None))
    assert summary.prompt_tokens == sum(p or 0 for p, _, _ in reported)
    assert summary.completion_tokens == sum(c or 0 for _, c, _ in reported)
    assert summary.prompt_tokens >= 2 * words(MESSAGES[0]["content"])
