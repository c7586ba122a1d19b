"""The real anthropic client against a fake server, under each Anthropic instrumentation.

``anthropic`` 2.x makes its own span for every call (scope ``com.anthropic.sdk.python``), so
a call makes one span with no instrumentation, two with OpenInference's or Traceloop's, three
with both. Every one of them inside a session carries it; a tracker counts each call once.
"""

from __future__ import annotations

import asyncio
import gc

import anthropic
import pytest

from helpers.anthropic_instrumentation import client_methods, instrumented
from helpers.fake_anthropic import REPLY, START_OUTPUT_TOKENS, FakeAnthropic, prompt_words, words
from sessiontrace import SessionTracker, using_session, using_user
from sessiontrace._usage import token_counts

CACHE_READ, CACHE_WRITE = 40, 5
MESSAGES = [{"role": "user", "content": "Where should I travel in May?"}]
# Every instrumentation counts the cache reads and writes in the prompt, as Anthropic bills.
PROMPT = prompt_words({"messages": MESSAGES}) + CACHE_READ + CACHE_WRITE
COMPLETION = words(REPLY)

SDK, OPENINFERENCE, TRACELOOP = (
    "com.anthropic.sdk.python",
    "openinference.instrumentation.anthropic",
    "opentelemetry.instrumentation.anthropic",
)
CONFIGS = {
    "sdk-only": ((), {SDK}),
    "openinference": (("openinference",), {SDK, OPENINFERENCE}),
    "traceloop": (("traceloop",), {SDK, TRACELOOP}),
    "both": (("openinference", "traceloop"), {SDK, OPENINFERENCE, TRACELOOP}),
    "both-traceloop-first": (("traceloop", "openinference"), {SDK, OPENINFERENCE, TRACELOOP}),
}


@pytest.fixture(autouse=True)
def _collect_garbage():
    # Streams and the client hold their spans in reference cycles: collect them here, so no
    # span of these tests is still alive (in sessiontrace's weak sets) in a later test.
    yield
    gc.collect()


@pytest.fixture(scope="module")
def server():
    with FakeAnthropic(cache_read_tokens=CACHE_READ, cache_creation_tokens=CACHE_WRITE) as running:
        yield running


@pytest.fixture(params=list(CONFIGS))
def config(request):
    names, scopes = CONFIGS[request.param]
    with instrumented(*names) as restored:
        yield request.param, scopes
    assert restored == [], f"{names} left these methods wrapped: {restored}"


def client(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)


def call_spans(spans):
    return [s for s in spans.all() if s.instrumentation_scope.name != "tests"]


def assert_stamped(found, scopes):
    assert {s.instrumentation_scope.name for s in found} == scopes
    for span in found:
        assert span.attributes["session.id"] == "trip-7", span.name
        assert span.attributes["gen_ai.conversation.id"] == "trip-7", span.name
        assert span.attributes["user.id"] == "ada", span.name


def assert_usage(found, *, streamed=False):
    for span in found:
        prompt, completion, total = token_counts(span.attributes)
        assert prompt == PROMPT, span.instrumentation_scope.name
        if streamed and span.instrumentation_scope.name == TRACELOOP:
            # Upstream (opentelemetry-instrumentation-anthropic 0.62.4): its stream adds
            # message_delta's output_tokens, which Anthropic sends cumulative, to
            # message_start's (1), so a streamed call reports one output token too many.
            assert completion == COMPLETION + START_OUTPUT_TOKENS
        else:
            assert completion == COMPLETION, span.instrumentation_scope.name
        assert total == prompt + completion


def test_sync_call(server, config, spans):
    _, scopes = config
    with using_session("trip-7"), using_user("ada"):
        reply = client(server).messages.create(
            model="claude-fake", max_tokens=64, messages=MESSAGES
        )
    assert reply.content[0].text == REPLY
    assert reply.usage.cache_read_input_tokens == CACHE_READ
    found = call_spans(spans)
    assert_stamped(found, scopes)
    assert_usage(found)


def test_async_call(server, config, spans):
    _, scopes = config

    async def call() -> str:
        async with anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key="test", max_retries=0
        ) as async_client:
            with using_session("trip-7"), using_user("ada"):
                reply = await async_client.messages.create(
                    model="claude-fake", max_tokens=64, messages=MESSAGES
                )
        return reply.content[0].text

    assert asyncio.run(call()) == REPLY
    found = call_spans(spans)
    assert_stamped(found, scopes)
    assert_usage(found)


def test_streamed_call(server, config, spans):
    name, scopes = config
    with using_session("trip-7"), using_user("ada"):
        stream = client(server).messages.create(
            model="claude-fake", max_tokens=64, messages=MESSAGES, stream=True
        )
        text = "".join(e.delta.text for e in stream if e.type == "content_block_delta")
    assert text == REPLY
    found = call_spans(spans)
    if name == "both":
        # Upstream: with OpenInference instrumented first and Traceloop over it, Traceloop's
        # stream proxy reads the stream through __next__, which skips the __iter__
        # OpenInference's proxy finishes its span in: the OpenInference span of a
        # create(stream=True) call never ends, so it is never exported. The other two spans
        # are stamped and report the call. Instrumented the other way round, all three end.
        scopes = scopes - {OPENINFERENCE}
    assert_stamped(found, scopes)
    assert_usage(found, streamed=True)


def test_message_stream_helper(server, config, spans):
    _, scopes = config
    with using_session("trip-7"), using_user("ada"):
        with client(server).messages.stream(
            model="claude-fake", max_tokens=64, messages=MESSAGES
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == REPLY
    assert final.usage.output_tokens == COMPLETION
    found = call_spans(spans)
    assert_stamped(found, scopes)
    assert_usage(found, streamed=True)


def test_async_streamed_call(server, config, spans):
    _, scopes = config

    async def call() -> str:
        async with anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key="test", max_retries=0
        ) as async_client:
            with using_session("trip-7"), using_user("ada"):
                async with async_client.messages.stream(
                    model="claude-fake", max_tokens=64, messages=MESSAGES
                ) as stream:
                    return "".join([text async for text in stream.text_stream])

    assert asyncio.run(call()) == REPLY
    found = call_spans(spans)
    assert_stamped(found, scopes)
    assert_usage(found, streamed=True)


def test_tracker_counts_each_call_once(server, config, spans):
    # One call is reported by one, two or three spans: the tracker's totals are the calls'.
    sync_client = client(server)

    async def async_call() -> None:
        async with anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key="test", max_retries=0
        ) as async_client:
            await async_client.messages.create(
                model="claude-fake", max_tokens=64, messages=MESSAGES
            )

    with SessionTracker("agent-run", user_id="ada") as tracker:
        with tracker.step("plan"):
            sync_client.messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
        with tracker.step("answer"):
            with sync_client.messages.stream(
                model="claude-fake", max_tokens=64, messages=MESSAGES
            ) as stream:
                stream.until_done()
        with tracker.step("check"):
            asyncio.run(async_call())
    summary = tracker.summary()
    assert summary.llm_calls == 3
    assert summary.prompt_tokens == 3 * PROMPT
    assert summary.completion_tokens == 3 * COMPLETION
    assert summary.total_tokens == 3 * (PROMPT + COMPLETION)
    for span in call_spans(spans):
        if span.attributes.get("sessiontrace.span.type") is None:
            assert span.attributes["session.id"] == "agent-run"
            assert span.attributes["user.id"] == "ada"


def test_cached_prompt_tokens_are_priced_at_the_cache_rates(server, config, spans):
    # Every span family counts cache reads and writes inside the prompt count; with cache
    # rates, those tokens are priced at them and the rest of the prompt at the prompt rate.
    rates = {"prompt": 3.0, "completion": 15.0, "cache_read": 0.3, "cache_write": 3.75}
    with SessionTracker("agent-run", prices={"claude-fake": rates}) as tracker:
        client(server).messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    uncached = PROMPT - CACHE_READ - CACHE_WRITE
    expected = (uncached * 3.0 + CACHE_READ * 0.3 + CACHE_WRITE * 3.75 + COMPLETION * 15.0) / 1e6
    assert tracker.summary().cost_usd == pytest.approx(expected)
    without_cache_rates = {"claude-fake": {"prompt": 3.0, "completion": 15.0}}
    with SessionTracker("agent-run", prices=without_cache_rates) as plain:
        client(server).messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    assert plain.summary().cost_usd == pytest.approx((PROMPT * 3.0 + COMPLETION * 15.0) / 1e6)


@pytest.mark.parametrize(
    "prompt",
    [
        "<script>alert('x')</script> & </body>",
        "line\nbreak\ttab\r\x00nul\x1b[31mred\x7f\u202eevil\u2028",
        "é 日本 🙂 " * 50,
    ],
)
def test_hostile_prompt_goes_through(server, config, spans, prompt):
    _, scopes = config
    messages = [{"role": "user", "content": prompt}]
    with using_session("trip-7"), using_user("ada"):
        reply = client(server).messages.create(
            model="claude-fake", max_tokens=64, messages=messages
        )
    assert reply.content[0].text == REPLY
    assert server.requests[-1]["body"]["messages"] == messages  # sent unchanged
    found = call_spans(spans)
    assert_stamped(found, scopes)
    expected = prompt_words({"messages": messages}) + CACHE_READ + CACHE_WRITE
    assert {token_counts(s.attributes)[0] for s in found} == {expected}


def test_uninstrument_leaves_the_client_as_it_was(server, spans):
    def changed(methods):  # by identity: a wrapt wrapper compares equal to what it wraps
        return sorted(
            f"{owner.__qualname__}.{name}"
            for (owner, name), member in methods.items()
            if before.get((owner, name)) is not member
        )

    before = client_methods()
    with instrumented("openinference", "traceloop") as restored:
        assert "Messages.create" in changed(client_methods())
        assert "AsyncMessages.create" in changed(client_methods())
    assert restored == []
    assert changed(client_methods()) == []
    with using_session("trip-7"), using_user("ada"):
        client(server).messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    assert [s.instrumentation_scope.name for s in call_spans(spans)] == [SDK]


def test_concurrent_identical_calls_are_each_counted(server, config, spans):
    # Three identical calls at once in one step: same parent, same tokens, overlapping in
    # time. Each has its own response id, so none is taken for another's repeat.
    async def calls() -> None:
        async with anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key="test", max_retries=0
        ) as async_client:
            await asyncio.gather(
                *[
                    async_client.messages.create(
                        model="claude-fake", max_tokens=64, messages=MESSAGES
                    )
                    for _ in range(3)
                ]
            )

    with SessionTracker("agent-run") as tracker:
        with tracker.step("fan-out"):
            asyncio.run(calls())
        with tracker.child("sub-run") as child:
            client(server).messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    assert child.summary().llm_calls == 1
    assert child.summary().prompt_tokens == PROMPT
    summary = tracker.summary()  # a sub-session's calls count for its parent too
    assert (summary.llm_calls, summary.prompt_tokens) == (4, 4 * PROMPT)
    assert summary.completion_tokens == 4 * COMPLETION


def test_the_store_counts_each_call_once_too(server, spans, db):
    from sessiontrace.store import SessionStore, SQLiteSpanExporter

    with instrumented("openinference"):
        with SessionTracker("agent-run") as tracker:
            client(server).messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    exporter = SQLiteSpanExporter(db)
    exporter.export(spans.all())
    exporter.shutdown()
    with SessionStore(db) as store:
        stored = store.session("agent-run")
    assert tracker.summary().prompt_tokens == PROMPT
    # The SDK's span and OpenInference's both report the call: the store counts it once, and
    # both as spans.
    assert stored.prompt_tokens == PROMPT
    assert stored.completion_tokens == tracker.summary().completion_tokens
    assert stored.llm_calls == tracker.summary().llm_calls == 1
    assert stored.span_count == tracker.summary().spans + 1  # and the tracker's summary span


@pytest.mark.parametrize(
    "names", [("openinference",), ("traceloop",), ("openinference", "traceloop")]
)
def test_with_the_sdk_spans_off_the_instrumentations_count(server, spans, names):
    # open_telemetry=False (or ANTHROPIC_OPEN_TELEMETRY=false) turns off the client's own
    # spans: the instrumentations' are then the only ones, and still counted once a call.
    quiet = anthropic.Anthropic(
        base_url=server.base_url, api_key="test", max_retries=0, open_telemetry=False
    )
    with instrumented(*names), SessionTracker("agent-run", user_id="ada") as tracker:
        with tracker.step("plan"):
            quiet.messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
        with tracker.step("answer"):
            quiet.messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    assert SDK not in {s.instrumentation_scope.name for s in call_spans(spans)}
    summary = tracker.summary()
    assert (summary.llm_calls, summary.prompt_tokens) == (2, 2 * PROMPT)
    assert summary.completion_tokens == 2 * COMPLETION
