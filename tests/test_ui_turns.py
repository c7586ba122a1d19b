"""ui/_turns: a trace as a chat turn, read from what real instrumentation wrote.

The real openai client calls the fake OpenAI server under each OpenAI instrumentation users
install; the spans go through the real store exporter into a SQLite file and come back from
SessionStore, as the web view reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from opentelemetry.trace import Status, StatusCode

from helpers.fake_openai import REPLY, FakeOpenAI
from helpers.openai_instrumentation import INSTRUMENTATIONS, instrumented
from sessiontrace import using_session
from sessiontrace.store import SessionStore, SQLiteSpanExporter
from sessiontrace.ui._turns import turn_document

QUESTION = "Where should I travel in May?"
MESSAGES = [
    {"role": "system", "content": "You plan trips."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! Where to?"},
    {"role": "user", "content": QUESTION},
]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI() as running:
        yield running


def stored_turns(spans, db: Path) -> list[dict]:
    assert SQLiteSpanExporter(db).export(spans.all()).name == "SUCCESS"
    with SessionStore(db) as store:
        return [turn_document(trace) for trace in store.traces("trip-chat")]


@pytest.mark.parametrize("name", list(INSTRUMENTATIONS))
def test_the_user_message_and_the_reply_of_a_real_openai_call(server, name, spans, tracer, db):
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
    question = {"input.value": json.dumps({"question": QUESTION})}
    with instrumented(name), using_session("trip-chat"):
        with tracer.start_as_current_span("chat.turn", attributes=question):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    [turn] = stored_turns(spans, db)
    assert turn["name"] == "chat.turn" and turn["llm_calls"] == 1 and turn["status"] == "ok"
    assert turn["models"] and turn["models"][0].startswith("gpt-4o-mini")
    assert turn["total_tokens"] and turn["total_tokens"] > 0
    if name == "opentelemetry-v2":
        # It records message content as log events, never on the span: the turn falls back
        # to the root's input, and has no reply to show.
        assert json.loads(turn["user"]) == {"question": QUESTION}
        assert turn["output"] is None
    else:
        assert turn["user"] == QUESTION  # the last user message, not the system prompt
        assert turn["output"] == REPLY


def test_a_trace_without_llm_calls_shows_its_root_and_its_error(spans, tracer, db):
    with (
        using_session("trip-chat"),
        tracer.start_as_current_span("tool only", attributes={"input.value": "look it up"}) as root,
    ):
        root.set_attribute("output.value", "nothing found")
        with tracer.start_as_current_span("lookup") as failing:
            failing.set_status(Status(StatusCode.ERROR, "the index is down"))
    [turn] = stored_turns(spans, db)
    assert (turn["user"], turn["output"]) == ("look it up", "nothing found")
    assert (turn["status"], turn["error"], turn["llm_calls"]) == ("error", "the index is down", 0)
    assert turn["total_tokens"] is None and turn["cost_usd"] is None


def test_genai_messages_json_and_an_openai_body_are_read(spans, tracer, db):
    genai_input = [
        {"role": "user", "parts": [{"type": "text", "content": "first"}]},
        {"role": "user", "parts": [{"type": "text", "content": "second"}, {"type": "image"}]},
    ]
    genai_output = [{"role": "assistant", "parts": [{"type": "text", "content": "done"}]}]
    body = {"messages": [{"role": "user", "content": "from the body"}]}
    reply = {"choices": [{"message": {"role": "assistant", "content": "body reply"}}]}
    with using_session("trip-chat"):
        tracer.start_span("genai", attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps(genai_input),
            "gen_ai.output.messages": json.dumps(genai_output),
        }).end()  # fmt: skip
        tracer.start_span("body", attributes={
            "openinference.span.kind": "LLM",
            "input.value": json.dumps(body),
            "output.value": json.dumps(reply),
        }).end()  # fmt: skip
        tracer.start_span("broken", attributes={
            "openinference.span.kind": "LLM",
            "input.value": "{not json",
            "llm.input_messages.0.message.role": "user",
        }).end()  # fmt: skip
    by_name = {turn["name"]: turn for turn in stored_turns(spans, db)}
    assert (by_name["genai"]["user"], by_name["genai"]["output"]) == ("second", "done")
    assert (by_name["body"]["user"], by_name["body"]["output"]) == ("from the body", "body reply")
    assert by_name["broken"]["user"] == "{not json"  # shown as it is
    assert by_name["broken"]["output"] is None
