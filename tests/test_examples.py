"""The examples run as users run them, and record what they claim to."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sessiontrace.cli import main
from sessiontrace.store import SessionStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, session_id: str, store: Path) -> str:
    """Run an example as a user would; it must print nothing to stderr."""
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--session-id", session_id, "--store", str(store)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert completed.stderr == ""
    return completed.stdout


def test_chatbot_example_records_one_session_with_every_span_stamped(tmp_path, capsys):
    store = tmp_path / "chat.db"
    assert "bot>  Expect 12°C" in run_example("chatbot.py", "demo-1", store)
    with SessionStore(store) as reader:
        (summary,) = reader.sessions()
        spans = reader.spans("demo-1")
    assert (summary.session_id, summary.user_id) == ("demo-1", "ada@example.com")
    assert (summary.trace_count, summary.span_count) == (3, 7)
    # Words in each prompt and answer, counted by hand from the example's script.
    assert (summary.prompt_tokens, summary.completion_tokens, summary.total_tokens) == (63, 39, 102)
    for span in spans:
        assert span.attributes["session.id"] == "demo-1"
        assert span.attributes["gen_ai.conversation.id"] == "demo-1"
        assert span.attributes["tag.tags"] == ["example", "offline"]
    assert sorted(span.name for span in spans) == sorted(
        ["chat.turn"] * 3 + ["ChatCompletion"] * 3 + ["lookup_weather"]
    )
    assert main(["--store", str(store), "show", "latest"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("Trace ") == 3
    assert "lookup_weather  TOOL" in shown


def test_agent_example_tracks_steps_state_sub_session_and_totals(tmp_path):
    store = tmp_path / "agent.db"
    stdout = run_example("agent.py", "trip-1", store)
    # Words in each prompt and reply, counted by hand from the example's script:
    # plan 15/15, flights 18/11, the sub-agent's hotel pick 11/12, summary 26/14.
    assert "4 steps, 4 LLM calls, 122 tokens, $0.000042, ok" in stdout
    with SessionStore(store) as reader:
        sessions = {summary.session_id: summary for summary in reader.sessions()}
        spans = reader.spans("trip-1")
        (child_id,) = set(sessions) - {"trip-1"}
        child_spans = reader.spans(child_id)
    assert (sessions[child_id].prompt_tokens, sessions[child_id].completion_tokens) == (11, 12)
    steps = sorted(
        (s for s in spans if s.attributes.get("sessiontrace.span.type") == "step"),
        key=lambda s: s.attributes["sessiontrace.step.index"],
    )
    assert [s.attributes["sessiontrace.step.name"] for s in steps] == [
        "plan",
        "search flights",
        "delegate hotel",
        "summarise",
    ]
    assert json.loads(steps[0].attributes["sessiontrace.state"]) == {
        "request": "Plan a trip from Berlin to Oslo on 14 May, 4 nights",
        "plan": "1. find flights Berlin to Oslo",
    }
    for span in child_spans:
        assert span.attributes["sessiontrace.parent_session.id"] == "trip-1"
    (summary,) = [s for s in spans if s.attributes.get("sessiontrace.span.type") == "summary"]
    totals = {
        k.rsplit(".", 1)[1]: v
        for k, v in summary.attributes.items()
        if k.startswith("sessiontrace.summary.")
    }
    assert (totals["steps"], totals["llm_calls"]) == (4, 4)
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["total_tokens"]) == (
        70,
        52,
        122,
    )
    assert totals["cost_usd"] == pytest.approx((70 * 0.15 + 52 * 0.60) / 1e6)


def test_agent_example_replays_and_draws_step_by_step(tmp_path, capsys):
    store = tmp_path / "agent.db"
    run_example("agent.py", "trip-2", store)
    assert main(["--store", str(store), "replay", "trip-2", "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert [step["name"] for step in replay["steps"]] == [
        "plan",
        "search flights",
        "delegate hotel",
        "summarise",
    ]
    # The delegate step makes no LLM call itself (its sub-session does): no tokens of its own.
    assert [step["total_tokens"] for step in replay["steps"]] == [30, 29, None, 40]
    assert replay["steps"][1]["state"]["flights_found"] == 2
    (sub,) = replay["steps"][2]["sub_sessions"]
    assert sub["summary"]["name"] == "hotel-researcher"
    assert sub["steps"][0]["llm_calls"][0]["response"].startswith("Hotel Bristol")
    assert replay["summary"]["total_tokens"] == 122

    page = tmp_path / "timeline.html"
    assert main(["--store", str(store), "timeline", "trip-2", "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    lanes = re.findall(r'<section class="lane[^"]*" data-session="([^"]+)" data-step="(\d+)"', html)
    assert [step for session, step in lanes if session == "trip-2"] == ["0", "1", "2", "3"]
    assert len(lanes) == 5  # and the sub-session's one step
    assert "http://" not in html and "https://" not in html


def test_fastapi_chat_example_takes_the_session_from_each_request(tmp_path):
    store = tmp_path / "web.db"
    stdout = run_example("fastapi_chat.py", "web-7", store)
    assert stdout.count("(X-Session-Id: web-7)") == 3
    with SessionStore(store) as reader:
        summary = reader.session("web-7")
        spans = reader.spans("web-7")
    # Words: prompts "Hello!" 1, "Where should I go in May?" 6, "Thanks!" 1; replies 5 each.
    assert (summary.prompt_tokens, summary.completion_tokens, summary.total_tokens) == (8, 15, 23)
    assert summary.trace_count == 3
    assert summary.user_id == "ada@example.com"
    assert {span.kind for span in spans} >= {"SERVER"}
    assert sum(1 for span in spans if span.attributes.get("openinference.span.kind") == "LLM") == 3
    for span in spans:
        assert span.attributes["session.id"] == "web-7"


def test_langchain_thread_example_stamps_each_run_with_its_thread(tmp_path):
    store = tmp_path / "lc.db"
    stdout = run_example("langchain_thread.py", "thread-9", store)
    assert stdout.count("bot>  ") == 3
    with SessionStore(store) as reader:
        summary = reader.session("thread-9")
    # Each prompt is the system line (5 words) plus the question (1, 6, 1); replies 5 words.
    assert (summary.prompt_tokens, summary.completion_tokens) == (3 * 5 + 8, 15)
    assert summary.trace_count == 3


def test_streamlit_chat_example_keeps_one_session_across_reruns(spans, monkeypatch):
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from streamlit.testing.v1 import AppTest

    from helpers.fake_openai import REPLY

    monkeypatch.syspath_prepend(str(EXAMPLES))
    app = AppTest.from_file(str(EXAMPLES / "streamlit_chat.py"), default_timeout=30)
    try:
        app.run()
        app.chat_input[0].set_value("Hello there").run()
        app.chat_input[0].set_value("Where in May?").run()
    finally:
        OpenAIInstrumentor().uninstrument()
    assert not app.exception
    session_id = app.session_state["session_id"]
    assert [m.markdown[0].value for m in app.chat_message] == [
        "Hello there",
        REPLY,
        "Where in May?",
        REPLY,
    ]
    calls = [s for s in spans.all() if s.attributes.get("openinference.span.kind") == "LLM"]
    assert len(calls) == 2
    for span in calls:
        assert span.attributes["session.id"] == session_id
        assert span.attributes["user.id"] == "visitor"
