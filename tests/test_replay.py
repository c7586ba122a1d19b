"""Steps read back from the store, and `sessiontrace replay`, on a real SQLite store.

The sessions are built span by span in the shape a SessionTracker writes (step spans, the step
index on every span inside, a summary span, a sub-session naming its parent), with times and
token counts fixed in advance. test_timeline.py draws the same sessions.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from helpers.stored import timed
from sessiontrace import _keys
from sessiontrace.cli import main
from sessiontrace.store import (
    SessionNotFoundError,
    SessionStore,
    SQLiteSpanExporter,
    children,
    outside_steps,
    steps,
    summary,
)

AGENT, CHILD, PLAIN = "agent-1", "agent-1-research", "plain-1"
SCRIPT_NAME = "<script>alert(1)</script>"
LONG_PROMPT = "Compare these flights carefully.\n\n" + "BER-OSL 09:40 129 EUR; " * 20
STATES = [
    {"goal": "Oslo", "budget": 300},
    {"goal": "Oslo", "budget": 250, "flights": 2},
    {"goal": "Oslo"},
]
# (prompt, completion, total) per step of AGENT, and of CHILD's one step.
STEP_TOKENS = [(100, 20, 120), (50, 10, 60), (None, None, None), (None, None, None)]
CHILD_TOKENS = (7, 3, 10)


@pytest.fixture
def tracer(db) -> Iterator[trace.Tracer]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    yield provider.get_tracer("replay-tests")
    provider.shutdown()


def in_session(session_id, step=None, **extra):
    attributes = {_keys.OI_SESSION_ID: session_id, _keys.OI_USER_ID: "ada", **extra}
    if step is not None:
        attributes[_keys.STEP_INDEX] = step
    return attributes


def step_span(tracer, session_id, index, name, start_ms, end_ms, state=None, **extra):
    attributes = in_session(session_id, index, **extra)
    attributes[_keys.SPAN_TYPE] = "step"
    if name is not None:
        attributes[_keys.STEP_NAME] = name
    if state is not None:
        attributes[_keys.STATE] = json.dumps(state)
    label = f"step {index}" + (f": {name}" if name else "")
    return timed(tracer, label, start_ms, end_ms, root=True, **attributes)


def llm(model_key, model, tokens, request, response, **extra):
    prompt, completion, total = tokens
    attributes = {
        _keys.OI_SPAN_KIND: "LLM",
        model_key: model,
        _keys.OI_INPUT_VALUE: request,
        _keys.OI_OUTPUT_VALUE: response,
        **extra,
    }
    if model_key == _keys.OI_MODEL_NAME:
        attributes.update(
            {
                _keys.OI_TOKENS_PROMPT: prompt,
                _keys.OI_TOKENS_COMPLETION: completion,
                _keys.OI_TOKENS_TOTAL: total,
            }
        )
    else:
        attributes.update({_keys.GENAI_INPUT_TOKENS: prompt, _keys.GENAI_OUTPUT_TOKENS: completion})
    return attributes


def summary_attributes(session_id, status, *, name, parent=None, **counts):
    attributes = in_session(session_id, **{_keys.SPAN_TYPE: "summary", _keys.STATUS: status})
    attributes[_keys.SESSION_NAME] = name
    if parent:
        attributes[_keys.PARENT_SESSION_ID] = parent
    for field, value in counts.items():
        attributes[_keys.SUMMARY_PREFIX + field] = value
    return attributes


def build_agent(t) -> None:
    """AGENT: four steps (one failing), a span between steps, a sub-session in step 2."""
    with step_span(t, AGENT, 0, "plan", 0, 100, STATES[0]):
        attributes = llm(
            _keys.OI_MODEL_NAME, "gpt-4o-mini", STEP_TOKENS[0], "Plan a trip to Oslo", "1. fly"
        )
        with timed(t, "ChatCompletion", 10, 90, **in_session(AGENT, 0, **attributes)):
            pass
    with step_span(t, AGENT, 1, "search", 200, 400, STATES[1]):
        tool = {_keys.OI_SPAN_KIND: "TOOL", _keys.OI_INPUT_VALUE: '{"to": "OSL"}'}
        with timed(t, "search_flights", 210, 260, **in_session(AGENT, 1, **tool)):
            with timed(t, "GET /flights", 220, 250, **in_session(AGENT, 1)):
                pass
        attributes = llm(
            _keys.GENAI_REQUEST_MODEL,
            "claude-haiku",
            (*STEP_TOKENS[1][:2], None),
            LONG_PROMPT,
            "SK 1234 is the best fit.",
        )
        with timed(t, "chat claude-haiku", 270, 390, **in_session(AGENT, 1, **attributes)):
            pass
        book = {_keys.OI_SPAN_KIND: "TOOL"}
        with timed(
            t, "book", 392, 398, error="TimeoutError: no answer", **in_session(AGENT, 1, **book)
        ):
            pass
    with timed(t, "between steps", 450, 460, root=True, **in_session(AGENT)):
        pass
    with step_span(t, AGENT, 2, "delegate", 500, 700, STATES[2]):
        parent = {_keys.PARENT_SESSION_ID: AGENT}
        with step_span(t, CHILD, 0, "research", 520, 680, {"hotels": 1}, **parent):
            attributes = llm(
                _keys.OI_MODEL_NAME, "gpt-4o-mini", CHILD_TOKENS, "Pick a hotel", "Hotel Bristol"
            )
            with timed(
                t, "ChatCompletion", 530, 670, **in_session(CHILD, 0, **parent, **attributes)
            ):
                pass
        with timed(
            t,
            "sessiontrace.summary",
            690,
            690,
            root=True,
            **summary_attributes(
                CHILD,
                "ok",
                name="researcher",
                parent=AGENT,
                steps=1,
                spans=2,
                llm_calls=1,
                prompt_tokens=7,
                completion_tokens=3,
                total_tokens=10,
                errors=0,
                duration_ms=170.0,
            ),
        ):
            pass
    with step_span(t, AGENT, 3, None, 800, 850, error="RuntimeError: gave up"):
        script = {_keys.OI_OUTPUT_VALUE: '"><img src=x onerror=alert(1)>'}
        with timed(t, SCRIPT_NAME, 810, 820, **in_session(AGENT, 3, **script)):
            pass
    with timed(
        t,
        "sessiontrace.summary",
        900,
        900,
        root=True,
        error="RuntimeError: gave up",  # a tracker's failed run: its summary span is ERROR
        **summary_attributes(
            AGENT,
            "error",
            name="trip",
            steps=4,
            spans=11,
            llm_calls=3,
            prompt_tokens=157,
            completion_tokens=33,
            total_tokens=190,
            errors=2,
            duration_ms=900.0,
            cost_usd=0.0012,
        ),
    ):
        pass


def build_plain(t) -> None:
    """PLAIN: two traces without tracker spans, earlier than AGENT."""
    chain = {_keys.OI_SPAN_KIND: "CHAIN", _keys.OI_INPUT_VALUE: "Hello"}
    with timed(t, "chat.turn", -5000, -4900, **in_session(PLAIN, **chain)):
        attributes = llm(_keys.OI_MODEL_NAME, "gpt-4o-mini", (5, 5, 10), "Hello", "Hi!")
        with timed(t, "ChatCompletion", -4990, -4910, **in_session(PLAIN, **attributes)):
            pass
    with timed(t, "chat.turn", -4000, -3900, **in_session(PLAIN, **chain)):
        with timed(t, "lookup", -3990, -3980, **in_session(PLAIN, **{_keys.OI_SPAN_KIND: "TOOL"})):
            pass


@pytest.fixture
def sessions(tracer, db) -> Path:
    build_plain(tracer)
    build_agent(tracer)
    return db


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --- the store API -----------------------------------------------------------------------


def test_steps_come_in_order_with_state_tokens_and_llm_calls(sessions):
    with SessionStore(sessions) as store:
        found = steps(store, AGENT)
    assert [(s.index, s.name) for s in found] == [
        (0, "plan"),
        (1, "search"),
        (2, "delegate"),
        (3, None),
    ]
    assert [s.state for s in found] == [*STATES, None]
    assert [(s.prompt_tokens, s.completion_tokens, s.total_tokens) for s in found] == STEP_TOKENS
    assert all(s.tracked for s in found)
    assert [s.status for s in found] == ["ok", "ok", "ok", "error"]
    assert found[3].status_message == "RuntimeError: gave up"
    assert [s.duration_ms for s in found] == [100.0, 200.0, 200.0, 50.0]
    search = found[1]
    assert search.span is not None and search.span.name == "step 1: search"
    assert [span.name for span in search.spans] == [
        "search_flights",
        "GET /flights",
        "chat claude-haiku",
        "book",
    ]
    assert search.errors == 1
    (call,) = search.llm_calls
    assert (call.model, call.prompt_tokens, call.completion_tokens, call.total_tokens) == (
        "claude-haiku",
        50,
        10,
        60,
    )
    assert (call.request, call.response) == (LONG_PROMPT, "SK 1234 is the best fit.")
    assert call.duration_ms == 120.0
    assert found[0].models == ("gpt-4o-mini",)
    assert [s.children for s in found] == [(), (), (CHILD,), ()]


def test_the_summary_span_is_read_back(sessions):
    with SessionStore(sessions) as store:
        totals = summary(store, AGENT)
        child_totals = summary(store, CHILD)
        assert summary(store, PLAIN) is None
    assert totals is not None and child_totals is not None
    assert (totals.name, totals.status, totals.steps, totals.spans, totals.llm_calls) == (
        "trip",
        "error",
        4,
        11,
        3,
    )
    assert (totals.prompt_tokens, totals.completion_tokens, totals.total_tokens) == (157, 33, 190)
    assert (totals.cost_usd, totals.errors, totals.duration_ms) == (0.0012, 2, 900.0)
    assert totals.parent_session_id is None
    assert (child_totals.parent_session_id, child_totals.cost_usd) == (AGENT, None)


def test_children_and_spans_outside_steps(sessions):
    with SessionStore(sessions) as store:
        assert children(store, AGENT) == [CHILD]
        assert children(store, CHILD) == []
        assert [span.name for span in outside_steps(store, AGENT)] == ["between steps"]
        assert outside_steps(store, PLAIN) == []
        for lookup in (steps, summary, children, outside_steps):
            with pytest.raises(SessionNotFoundError, match="sessiontrace sessions"):
                lookup(store, "nope")


def test_a_plain_session_gives_one_step_per_trace(sessions):
    with SessionStore(sessions) as store:
        found = steps(store, PLAIN)
    assert [(s.index, s.name, s.tracked, s.state) for s in found] == [
        (0, "chat.turn", False, None),
        (1, "chat.turn", False, None),
    ]
    assert [s.total_tokens for s in found] == [10, None]
    assert [[span.name for span in s.spans] for s in found] == [["ChatCompletion"], ["lookup"]]
    assert found[0].llm_calls[0].response == "Hi!"


def test_a_step_still_open_is_running_without_its_span(tracer, db):
    # The tracker's step span is written when the step ends; its spans are stored first.
    attributes = llm(_keys.OI_MODEL_NAME, "m", (1, 2, 3), "q", "a")
    with timed(tracer, "ChatCompletion", 0, 10, root=True, **in_session("live", 0, **attributes)):
        pass
    with SessionStore(db) as store:
        (step,) = steps(store, "live")
        assert summary(store, "live") is None
    assert (step.index, step.status, step.span, step.total_tokens) == (0, "running", None, 3)
    code, out, _ = run("--store", str(db), "replay", "live")
    assert code == 0
    assert "\nStep 0  10.0 ms  running  tokens 1/2/3  model m\n  - ChatCompletion  LLM" in out
    assert "\nSummary (the run has not ended, or ended without writing its summary)\n" in out
    assert re.search(r"^\s+status\s+running$", out, re.M)
    totals = "1 trace, 1 span, 1 LLM call, tokens 1/2/3, 0 errors"
    assert re.search(rf"^\s+totals\s+{totals}$", out, re.M)


def test_replay_says_when_the_tracker_counted_what_the_store_does_not_hold(tracer, db):
    # The tracker saw two LLM calls end (30 tokens); one of them never reached the store.
    with step_span(tracer, "lossy", 0, "ask", 0, 100):
        attributes = llm(_keys.OI_MODEL_NAME, "m", (1, 2, 3), "q", "a")
        with timed(tracer, "ChatCompletion", 10, 20, **in_session("lossy", 0, **attributes)):
            pass
    counts = {"steps": 1, "llm_calls": 2, "total_tokens": 30, "duration_ms": 100.0}
    with timed(tracer, "sessiontrace.summary", 100, 100, root=True,
               **summary_attributes("lossy", "ok", name="ask", **counts)):
        pass
    code, out, _ = run("--store", str(db), "replay", "lossy")
    assert code == 0
    tail = out[out.rindex("\nSummary\n") + 1 :].splitlines()
    # The totals are the store's, as in every command; the note says the tracker saw more.
    assert tail[4] == "  totals    2 traces, 3 spans, 1 LLM call, tokens 1/2/3, 0 errors"
    assert tail[5] == (
        "  note      the tracker counted 30 tokens and 2 LLM calls as its spans ended; the store "
        "holds 3 and 1: spans reached only one of them (lost before the store, or made in "
        "another process)"
    )
    assert "cost" not in out  # no span reported one and the tracker priced none


def test_a_step_index_from_baggage_is_read_as_a_number(tracer, db):
    with step_span(tracer, "svc", 0, "call", 0, 100):
        pass
    # Another service read the step index from W3C baggage: a string.
    with timed(tracer, "remote work", 10, 20, root=True, **in_session("svc", "0")):
        pass
    with SessionStore(db) as store:
        (step,) = steps(store, "svc")
    assert [span.name for span in step.spans] == ["remote work"]


# --- replay: text ------------------------------------------------------------------------


def blocks(out: str) -> dict[str, list[str]]:
    """The replay's lines grouped under each `Step` header (by its first words)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        match = re.match(r"^(\s*)Step (\d+)", line)
        if match:
            current = f"{len(match.group(1))}:{match.group(2)}"
            found[current] = [line]
        elif current is not None:
            found[current].append(line)
    return found


def test_replay_prints_each_step_with_state_calls_and_summary(sessions):
    code, out, err = run("--store", str(sessions), "replay", AGENT)
    assert (code, err) == (0, "")
    assert out.startswith(f"Session {AGENT}: trip\n")
    steps_ = blocks(out)
    assert [key for key in steps_ if key.startswith("0:")] == ["0:0", "0:1", "0:2", "0:3"]
    plan = steps_["0:0"]
    assert plan[0] == "Step 0: plan  100.0 ms  ok  tokens 100/20/120  model gpt-4o-mini"
    assert plan[1] == "  state  +goal +budget"
    state_lines = plan[2 : plan.index("    }") + 1]
    assert json.loads("\n".join(state_lines)) == STATES[0]
    assert state_lines[1].startswith("      ")  # pretty JSON, indented under the step
    assert "  - ChatCompletion  LLM  80.0 ms  tokens 100/20/120  model gpt-4o-mini" in plan
    assert "      request:  Plan a trip to Oslo" in plan
    assert "      response: 1. fly" in plan
    search = steps_["0:1"]
    assert search[1] == "  state  ~budget +flights"
    assert "  - search_flights  TOOL  50.0 ms" in search
    assert "    - GET /flights  INTERNAL  30.0 ms" in search  # nested under its parent
    assert "  - book  TOOL  6.0 ms  error: TimeoutError: no answer" in search
    assert steps_["0:2"][1] == "  state  -budget -flights"
    assert steps_["0:3"][0] == "Step 3  50.0 ms  error: RuntimeError: gave up"
    assert f"  - {SCRIPT_NAME}  INTERNAL  10.0 ms" in steps_["0:3"]
    # The summary, last: the stored totals, its own and with the sub-session, as `show` has
    # them; the tracker gives the steps and, as no span reported a cost, the priced cost.
    tail = out[out.rindex("\nSummary\n") + 1 :]
    assert tail.splitlines()[1:] == [
        "  status    error",
        "  steps     4",
        "  duration  900ms",
        "  totals    6 traces, 12 spans, 2 LLM calls, tokens 150/30/180, 3 errors",
        "            with 1 sub-session: 8 traces, 15 spans, 3 LLM calls, tokens 157/33/190, "
        "3 errors",
        "  cost      $0.001200 (priced by the tracker, with 1 sub-session)",
    ]
    assert "Outside any step\n  - between steps  INTERNAL  10.0 ms\n" in out
    assert "ERROR" not in out and "UNSET" not in out


def test_replay_truncates_requests_unless_full(sessions):
    _, out, _ = run("--store", str(sessions), "replay", AGENT)
    (request,) = [line for line in out.splitlines() if "request:  Compare" in line]
    text = request.split("request:  ", 1)[1]
    assert len(text) == 200 and text.endswith("...")
    assert "\n" not in text
    _, full, _ = run("--store", str(sessions), "replay", AGENT, "--full")
    lines = full.splitlines()
    start = lines.index("        Compare these flights carefully.")
    assert lines[start - 1] == "      request:"
    body = [line[8:] for line in lines[start : start + 3]]
    assert body == LONG_PROMPT.splitlines()  # whole, its line breaks kept
    assert "SK 1234 is the best fit." in full


def test_replay_nests_sub_sessions_under_their_step(sessions):
    _, out, _ = run("--store", str(sessions), "replay", AGENT)
    delegate = blocks(out)["0:2"]
    assert f"  Sub-session {CHILD}: researcher" in delegate
    child = blocks(out)["4:0"]  # the child's step, indented two levels
    assert child[0] == "    Step 0: research  160.0 ms  ok  tokens 7/3/10  model gpt-4o-mini"
    assert "      state  +hotels" in child
    assert "          request:  Pick a hotel" in child
    assert (
        "    Summary: ok, 1 step, 170ms; 2 traces, 3 spans, 1 LLM call, tokens 7/3/10, 0 errors"
        in child
    )
    # The child is replayed inside step 2, before step 3 begins.
    assert out.index(f"Sub-session {CHILD}") < out.index("Step 3")


def test_replay_of_a_plain_session_uses_its_traces(sessions):
    code, out, _ = run("--store", str(sessions), "replay", PLAIN)
    assert code == 0
    assert re.search(r"^\s+steps\s+2 \(one per trace: no SessionTracker steps", out, re.M)
    assert [block[0] for block in blocks(out).values()] == [
        "Step 0: chat.turn  100.0 ms  ok  tokens 5/5/10  model gpt-4o-mini",
        "Step 1: chat.turn  100.0 ms  ok",
    ]
    assert "  in:  Hello" in out  # the root span's input, under its step
    assert "\nSummary (no SessionTracker summary)\n" in out
    totals = "2 traces, 4 spans, 1 LLM call, tokens 5/5/10, 0 errors"
    assert re.search(rf"^\s+totals\s+{totals}$", out, re.M)


# --- replay: JSON ------------------------------------------------------------------------


def test_replay_json_parses_back(sessions):
    code, out, _ = run("--store", str(sessions), "replay", AGENT, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["session"]["session_id"] == AGENT
    assert document["tracked"] is True
    assert [s["index"] for s in document["steps"]] == [0, 1, 2, 3]
    assert [s["state"] for s in document["steps"]] == [*STATES, None]
    assert [
        (s["prompt_tokens"], s["completion_tokens"], s["total_tokens"]) for s in document["steps"]
    ] == STEP_TOKENS
    call = document["steps"][1]["llm_calls"][0]
    assert (call["request"], call["response"]) == (LONG_PROMPT, "SK 1234 is the best fit.")
    (child,) = document["steps"][2]["sub_sessions"]
    assert child["session"]["session_id"] == CHILD
    assert child["summary"]["parent_session_id"] == AGENT
    assert child["steps"][0]["state"] == {"hotels": 1}
    assert document["summary"]["total_tokens"] == 190
    assert document["summary"]["status"] == "error"
    assert [span["name"] for span in document["outside_steps"]] == ["between steps"]
    assert document["sub_sessions"] == []


def test_replay_json_of_a_plain_session(sessions):
    document = json.loads(run("--store", str(sessions), "replay", PLAIN, "--json")[1])
    assert document["tracked"] is False
    assert document["summary"] is None
    assert [s["name"] for s in document["steps"]] == ["chat.turn", "chat.turn"]


def test_sub_sessions_stop_at_the_depth_limit(tracer, db):
    # A chain of five sessions, each started inside the step of the one before.
    ids = [f"level-{n}" for n in range(5)]
    for depth, session_id in enumerate(ids):
        parent = {_keys.PARENT_SESSION_ID: ids[depth - 1]} if depth else {}
        with step_span(tracer, session_id, 0, f"work {depth}", depth, 100 - depth, **parent):
            pass
    code, out, _ = run("--store", str(db), "replay", ids[0])
    assert code == 0
    for depth in range(1, 4):
        assert f"Sub-session {ids[depth]}" in out
    assert f"Sub-session {ids[4]}: not shown below 3 levels" in out
    assert f"sessiontrace replay {ids[4]}" in out
    document = json.loads(run("--store", str(db), "replay", ids[0], "--json")[1])
    level = document
    for _ in range(3):
        (level,) = level["steps"][0]["sub_sessions"]
    assert level["steps"][0]["children"] == [ids[4]]
    assert level["steps"][0]["sub_sessions"] == []


# --- errors and `latest` -----------------------------------------------------------------


def test_replay_latest_opens_the_most_recently_active_session(sessions):
    code, out, _ = run("--store", str(sessions), "replay", "latest")
    assert code == 0
    assert out.startswith(f"Session {AGENT}: trip\n")


def test_replay_errors_match_show(sessions, tmp_path):
    for command in ("show", "replay"):
        code, out, err = run("--store", str(sessions), command, "no-such-session")
        assert (code, out) == (1, "")
        assert "no session 'no-such-session'" in err and "sessiontrace sessions" in err
    shown = run("--store", str(sessions), "show", "nope")[2]
    assert run("--store", str(sessions), "replay", "nope")[2] == shown
    missing = tmp_path / "missing.db"
    code, out, err = run("--store", str(missing), "replay", "latest")
    assert (code, out) == (2, "")
    assert err == run("--store", str(missing), "show", "latest")[2]
    assert str(missing) in err and "Traceback" not in err


def test_replay_latest_on_a_store_without_sessions_exits_1(tracer, db):
    with timed(tracer, "no session here", 0, 1):
        pass
    code, out, err = run("--store", str(db), "replay", "latest")
    assert (code, out) == (1, "")
    assert "holds no sessions yet" in err


def test_replay_usage():
    code, out, err = run("replay")
    assert code == 2 and "usage: sessiontrace replay" in err
    code, out, _ = run("replay", "--help")
    assert code == 0
    assert "--full" in out and "--json" in out and "latest" in out
