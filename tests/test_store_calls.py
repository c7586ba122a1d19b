"""The local store counts each model call once, however many spans report it.

``anthropic`` 2.x makes its own span for every call, beside the span of OpenInference's or
Traceloop's instrumentation, so one call reaches the store as two or three spans with the same
tokens. The session's tokens, LLM calls and cost count it once (as a tracker does); its span
and error counts keep every span. Spans here are the real client's, against a fake server on
127.0.0.1, written through ``configure()`` to a real SQLite file and read back with
``SessionStore`` and the ``sessiontrace`` command.
"""

from __future__ import annotations

import gc
import io
import re
import sqlite3
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anthropic
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from helpers.anthropic_instrumentation import instrumented
from helpers.fake_anthropic import REPLY, FakeAnthropic, prompt_words, words
from helpers.programs import run_program
from sessiontrace import configure, using_session
from sessiontrace.cli import main
from sessiontrace.store import SessionStore, SQLiteSpanExporter, _summaries
from sessiontrace.store._columns import FLAG_REPEATED_CALL
from sessiontrace.store._steps import steps

MESSAGES = [{"role": "user", "content": "Where should I travel in May?"}]
PROMPT = prompt_words({"messages": MESSAGES})
COMPLETION = words(REPLY)
SDK, OPENINFERENCE, TRACELOOP = (
    "com.anthropic.sdk.python",
    "openinference.instrumentation.anthropic",
    "opentelemetry.instrumentation.anthropic",
)


@pytest.fixture(autouse=True)
def _collect_garbage():
    # The client's streams hold spans in reference cycles (see test_anthropic).
    yield
    gc.collect()


@pytest.fixture(scope="module")
def server():
    with FakeAnthropic() as running:
        yield running


@contextmanager
def configured(db, server, *names: str) -> Iterator[anthropic.Anthropic]:
    """A client whose spans, and ``names``' instrumentations' spans, go through configure()
    to the store ``db``; everything is put back after the block."""
    provider = configure(
        store_path=db, tracer_provider=TracerProvider(shutdown_on_exit=False), propagate=False
    )
    try:
        with instrumented(*names, tracer_provider=provider):
            yield anthropic.Anthropic(
                base_url=server.base_url,
                api_key="test",
                max_retries=0,
                open_telemetry={"tracer_provider": provider},
            )
    finally:
        provider.shutdown()


def ask(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    assert reply.content[0].text == REPLY


def stored_spans(db, session_id):
    with SessionStore(db) as store:
        return store.spans(session_id)


def summary(db, session_id):
    with SessionStore(db) as store:
        return store.session(session_id)


def run(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(list(argv), stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def repeated_flags(db) -> list[bool]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT flags FROM spans ORDER BY end_ns, rowid").fetchall()
    return [bool(flags & FLAG_REPEATED_CALL) for (flags,) in rows]


def assert_rebuild_agrees(db):
    # The totals folded in as batches arrived are those a rebuild from the spans computes
    # (what `sessiontrace migrate` and a replaced span do).
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        before = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
        conn.execute("BEGIN IMMEDIATE")
        _summaries.rebuild_all(conn)
        after = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert after == before


@pytest.mark.parametrize(
    ("names", "scopes"),
    [
        ((), {SDK}),
        (("openinference",), {SDK, OPENINFERENCE}),  # its span around the SDK's: parent/child
        (("traceloop",), {SDK, TRACELOOP}),  # its span beside the SDK's: same response id
        (("openinference", "traceloop"), {SDK, OPENINFERENCE, TRACELOOP}),
    ],
    ids=["sdk-only", "openinference", "traceloop", "both"],
)
def test_a_call_reported_by_several_spans_counts_once(db, server, names, scopes):
    with configured(db, server, *names) as client, using_session("trip-1"):
        ask(client)
    found = stored_spans(db, "trip-1")
    assert {span.scope for span in found} == scopes
    assert all(span.prompt_tokens == PROMPT for span in found)  # each span keeps its own
    stored = summary(db, "trip-1")
    assert (stored.prompt_tokens, stored.completion_tokens) == (PROMPT, COMPLETION)
    assert stored.total_tokens == PROMPT + COMPLETION
    assert stored.llm_calls == 1
    assert stored.span_count == len(scopes)  # every span is still a span
    assert repeated_flags(db).count(True) == len(scopes) - 1
    assert_rebuild_agrees(db)


def test_traceloops_span_is_in_another_trace_and_still_one_call(db, server):
    with configured(db, server, "traceloop") as client, using_session("trip-1"):
        ask(client)
    by_scope = {span.scope: span for span in stored_spans(db, "trip-1")}
    sdk, traceloop = by_scope[SDK], by_scope[TRACELOOP]
    assert sdk.trace_id != traceloop.trace_id  # Traceloop never makes its span current
    assert sdk.attributes["gen_ai.response.id"] == traceloop.attributes["gen_ai.response.id"]
    assert summary(db, "trip-1").trace_count == 2
    assert summary(db, "trip-1").llm_calls == 1


@pytest.mark.parametrize("names", [(), ("openinference",), ("traceloop",)])
def test_two_separate_identical_calls_count_twice(db, server, names):
    with configured(db, server, *names) as client, using_session("trip-1"):
        ask(client)
        ask(client)
    stored = summary(db, "trip-1")
    assert (stored.llm_calls, stored.prompt_tokens) == (2, 2 * PROMPT)
    assert stored.completion_tokens == 2 * COMPLETION
    assert_rebuild_agrees(db)


def test_identical_calls_at_once_in_two_threads_count_twice(db, server):
    barrier = threading.Barrier(2)

    def call(client):
        with using_session("trip-1"):
            barrier.wait(timeout=10)
            ask(client)

    with configured(db, server, "openinference") as client:
        threads = [threading.Thread(target=call, args=(client,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    stored = summary(db, "trip-1")
    assert (stored.span_count, stored.llm_calls, stored.prompt_tokens) == (4, 2, 2 * PROMPT)


def test_the_command_shows_the_call_once(db, server):
    with configured(db, server, "openinference") as client, using_session("trip-1"):
        ask(client)
        ask(client)
    total = 2 * (PROMPT + COMPLETION)
    tokens = f"{2 * PROMPT}/{2 * COMPLETION}/{total}"
    totals = f"2 traces, 4 spans, 2 LLM calls, tokens {tokens}, 0 errors"
    out = run("--store", str(db), "show", "trip-1")
    assert re.search(rf"^\s+totals\s+{totals}$", out, re.M)
    assert tokens in run("--store", str(db), "sessions")
    with SessionStore(db) as store:
        found = steps(store, "trip-1")  # without a tracker: one step a trace
    assert [(len(step.llm_calls), step.total_tokens) for step in found] == [
        (1, PROMPT + COMPLETION),
        (1, PROMPT + COMPLETION),
    ]
    assert [len(step.spans) for step in found] == [1, 1]  # the SDK's span is still shown


def test_a_span_stored_again_is_not_a_repeat_of_itself(db, server):
    # An export retried, or a span sent twice: the exporter gives each span its first answer,
    # so the counted span stays counted and the repeat stays a repeat.
    batch = exported_once(server)
    exporter = SQLiteSpanExporter(db)
    try:
        assert exporter.export(batch).name == "SUCCESS"
        assert exporter.export(batch).name == "SUCCESS"
        assert exporter.export(batch[:1]).name == "SUCCESS"
    finally:
        exporter.shutdown()
    stored = summary(db, "trip-3")
    assert (stored.span_count, stored.llm_calls, stored.prompt_tokens) == (2, 1, PROMPT)
    assert repeated_flags(db).count(True) == 1
    assert_rebuild_agrees(db)


def exported_once(server):
    """The spans of one call under OpenInference, as a list in the order they ended."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sessiontrace import SessionSpanProcessor

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    try:
        with instrumented("openinference", tracer_provider=provider):
            client = anthropic.Anthropic(
                base_url=server.base_url,
                api_key="test",
                max_retries=0,
                open_telemetry={"tracer_provider": provider},
            )
            with using_session("trip-3"):
                ask(client)
    finally:
        provider.shutdown()
    return list(memory.get_finished_spans())


def test_a_repeated_span_keeps_its_error_and_adds_no_cost(db):
    # An instrumentation's span around the client's, both reporting the call and failing;
    # only the outer one reports a cost.
    provider = configure(
        store_path=db, tracer_provider=TracerProvider(shutdown_on_exit=False), propagate=False
    )
    tracer = provider.get_tracer("wrapper")
    tokens = {"llm.token_count.prompt": 48, "llm.token_count.completion": 5}
    try:
        with using_session("trip-1"):
            outer = tracer.start_span("Messages", attributes={**tokens, "llm.cost.total": 0.25})
            with _current(outer):
                inner = tracer.start_span(
                    "chat claude",
                    attributes={
                        "gen_ai.usage.input_tokens": 48,
                        "gen_ai.usage.output_tokens": 5,
                        "gen_ai.response.id": "msg_1",
                        "llm.cost.total": 0.25,
                    },
                )
                inner.set_status(Status(StatusCode.ERROR, "overloaded"))
                inner.end()
            outer.set_status(Status(StatusCode.ERROR, "overloaded"))
            outer.end()
    finally:
        provider.shutdown()
    stored = summary(db, "trip-1")
    assert (stored.span_count, stored.error_count) == (2, 2)
    assert (stored.llm_calls, stored.prompt_tokens, stored.cost_usd) == (1, 48, 0.25)
    assert repeated_flags(db) == [False, True]  # the inner ended first: it is the one counted
    assert_rebuild_agrees(db)


@contextmanager
def _current(span):
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False):
        yield


_PROGRAM = textwrap.dedent(
    """
    import sys

    import anthropic
    from openinference.instrumentation.anthropic import AnthropicInstrumentor

    import sessiontrace
    from sessiontrace import SessionTracker

    sessiontrace.configure(store_path=sys.argv[1])
    AnthropicInstrumentor().instrument()
    client = anthropic.Anthropic(base_url=sys.argv[2], api_key="test", max_retries=0)
    with SessionTracker("agent-run") as tracker:
        for name in ("plan", "answer"):
            with tracker.step(name):
                client.messages.create(
                    model="claude-fake", max_tokens=64,
                    messages=[{"role": "user", "content": "Where should I travel in May?"}],
                )
    assert tracker.summary().llm_calls == 2, tracker.summary()
    """
)


def test_a_trackers_program_and_the_store_agree(db, server):
    # configure() in a program of its own: the global provider, the tracker, OpenInference.
    run_program(_PROGRAM, str(db), server.base_url)
    stored = summary(db, "agent-run")
    assert (stored.llm_calls, stored.prompt_tokens) == (2, 2 * PROMPT)
    out = run("--store", str(db), "show", "agent-run")
    assert "the tracker counted" not in out  # the store holds what the tracker counted
    with SessionStore(db) as store:
        found = steps(store, "agent-run")
    assert [(step.name, len(step.llm_calls), step.prompt_tokens) for step in found] == [
        ("plan", 1, PROMPT),
        ("answer", 1, PROMPT),
    ]


def test_the_web_views_turn_counts_the_call_once(db, server):
    from sessiontrace.ui._documents import session_document

    with configured(db, server, "openinference") as client, using_session("trip-ui"):
        ask(client)
    with SessionStore(db) as store:
        document = session_document(store, "trip-ui")
        flagged = [span.repeated_call for span in store.spans("trip-ui")]
    assert flagged.count(True) == 1 and len(flagged) == 2  # the SDK's span and OpenInference's
    (turn,) = document["turns"]
    assert turn["prompt_tokens"] == PROMPT and turn["completion_tokens"] == COMPLETION
    assert turn["llm_calls"] == 1
