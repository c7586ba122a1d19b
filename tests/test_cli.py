"""The sessiontrace command, run in-process on a real store (and once as `python -m`)."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from helpers.stored import store_tracer
from helpers.stored import timed as stored_span
from sessiontrace import _keys
from sessiontrace._version import __version__
from sessiontrace.cli import main
from sessiontrace.store import SQLiteSpanExporter
from sessiontrace.store._schema import ensure_schema

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
REPO = Path(__file__).resolve().parent.parent
LONG_INPUT = "Plan a trip to Lisbon.\n\n" + "Keep it cheap and   walkable. " * 10


@pytest.fixture
def cli_tracer(db) -> Iterator[trace.Tracer]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    yield provider.get_tracer("cli-tests")
    provider.shutdown()


@contextmanager
def timed(tracer, name, start_ms, end_ms, *, kind=SpanKind.INTERNAL, context=None, **attrs):
    span = tracer.start_span(
        name, context=context, kind=kind, attributes=attrs, start_time=T0 + start_ms * MS
    )
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=True):
            yield span
    finally:
        span.end(end_time=T0 + end_ms * MS)


def sid(session_id, **extra):
    return {_keys.OI_SESSION_ID: session_id, **extra}


@pytest.fixture
def demo(cli_tracer, db) -> Path:
    """Two sessions with known shapes and counts; "trip" is the more recently active."""
    t = cli_tracer
    # Session "trip", trace 1: a request span outside the session, an agent with two children
    # started in reverse order of their start times, one of which fails.
    with timed(t, "POST /chat", 1000, 1900, kind=SpanKind.SERVER):
        agent_attrs = sid("trip", **{_keys.OI_USER_ID: "ana", _keys.OI_SPAN_KIND: "AGENT"})
        agent_attrs[_keys.OI_INPUT_VALUE] = LONG_INPUT
        agent_attrs[_keys.OI_OUTPUT_VALUE] = "Day 1: Alfama.\nDay 2: Belem."
        with timed(t, "planner", 1010, 1890, **agent_attrs):
            try:
                with timed(t, "search_flights", 1600, 1700, **sid("trip", **tool_kind())):
                    raise TimeoutError("flight API timed out")
            except TimeoutError:
                pass
            llm = sid(
                "trip",
                **{
                    _keys.OI_SPAN_KIND: "LLM",
                    _keys.OI_TOKENS_PROMPT: 120,
                    _keys.OI_TOKENS_COMPLETION: 30,
                    _keys.OI_TOKENS_TOTAL: 150,
                    _keys.GENAI_INPUT_TOKENS: 120,
                    _keys.GENAI_OUTPUT_TOKENS: 30,
                },
            )
            with timed(t, "chat gpt-4o", 1100, 1500, kind=SpanKind.CLIENT, **llm):
                pass
    # Session "trip", trace 2: a plain CLIENT span (no OpenInference kind) and an orphan.
    with timed(t, "embed", 3000, 3040, kind=SpanKind.CLIENT, **sid("trip")):
        pass
    remote = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with timed(
        t,
        "webhook",
        2500,
        2600,
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
        **sid("trip", **{_keys.GENAI_INPUT_TOKENS: 5, _keys.GENAI_OUTPUT_TOKENS: 1}),
    ):
        pass
    # Session "quiet": earlier, no tokens, no user.
    with timed(t, "ping", 0, 10, **sid("quiet")):
        pass
    return db


def tool_kind():
    return {_keys.OI_SPAN_KIND: "TOOL"}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def table_rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


# --- sessions ----------------------------------------------------------------------------


def test_sessions_lists_one_row_per_session_newest_first(demo):
    code, out, err = run("--store", str(demo), "sessions")
    assert (code, err) == (0, "")
    header, *rows = table_rows(out)
    # No span reported a cost, so there is no COST column.
    assert header == [
        "SESSION",
        "NAME",
        "STATUS",
        "USER",
        "TRACES",
        "SPANS",
        "FIRST SEEN",
        "DURATION",
        "TOKENS P/C/T",
        "ERRORS",
    ]
    assert [row[0] for row in rows] == ["trip", "quiet"]
    trip, quiet = rows
    # No tracker wrote these: no name; "trip" has a failed span, so its status is error.
    assert trip[1:6] == ["-", "error", "ana", "3", "5"]
    assert trip[7] == "2.03s"  # 1010 ms to 3040 ms
    assert trip[8:] == ["125/31/156", "1"]
    assert quiet[1:6] == ["-", "ok", "-", "1", "1"]
    assert quiet[8:] == ["-", "0"]
    # Columns line up: every row is as wide as the header says.
    lines = out.splitlines()
    assert lines[1].index("ana") == lines[0].index("USER")


def test_sessions_limit_keeps_the_newest(demo):
    code, out, _ = run("sessions", "--limit", "1", "--store", str(demo))
    assert code == 0
    assert [row[0] for row in table_rows(out)[1:]] == ["trip"]


def test_sessions_json_parses_back(demo):
    code, out, _ = run("--store", str(demo), "sessions", "--json")
    assert code == 0
    sessions = json.loads(out)
    assert [s["session_id"] for s in sessions] == ["trip", "quiet"]
    trip = sessions[0]
    assert (trip["prompt_tokens"], trip["completion_tokens"], trip["total_tokens"]) == (
        125,
        31,
        156,
    )
    assert (trip["trace_count"], trip["span_count"], trip["error_count"]) == (3, 5, 1)
    assert sessions[1]["total_tokens"] is None
    first = datetime.fromisoformat(trip["first_start"])
    assert first.utcoffset().total_seconds() == 0
    assert first.timestamp() == pytest.approx(T0 / 1e9 + 1.010)


def test_a_store_without_sessions_says_so(cli_tracer, db):
    with timed(cli_tracer, "no session here", 0, 1):
        pass
    code, out, _ = run("--store", str(db), "sessions")
    assert code == 0
    assert out == f"No sessions in the store at {db}.\n"
    assert run("--store", str(db), "sessions", "--json")[1] == "[]\n"


# --- show --------------------------------------------------------------------------------


def span_lines(out: str) -> list[tuple[int, str]]:
    """(depth, text) of each span line in `show` output."""
    found = []
    for line in out.splitlines():
        stripped = line.lstrip(" ")
        if stripped.startswith("- "):
            found.append(((len(line) - len(stripped)) // 2, stripped[2:]))
    return found


def test_show_prints_each_trace_as_a_tree_in_time_order(demo):
    code, out, err = run("--store", str(demo), "show", "trip")
    assert (code, err) == (0, "")
    assert out.startswith("Session trip\n")
    assert re.search(r"^\s+status\s+error$", out, re.M)
    assert re.search(r"^\s+user\s+ana$", out, re.M)
    totals = "3 traces, 5 spans, 2 LLM calls, tokens 125/31/156, 1 error"  # webhook has tokens
    assert re.search(rf"^\s+totals\s+{totals}$", out, re.M)
    assert "with 1 sub-session" not in out and "sub-sessions" not in out
    trace_headers = [line for line in out.splitlines() if line.startswith("Trace ")]
    assert len(trace_headers) == 3
    assert [(depth, text.split("  ")[0]) for depth, text in span_lines(out)] == [
        (1, "POST /chat"),
        (2, "planner"),
        (3, "chat gpt-4o"),  # starts before search_flights, though it was started after
        (3, "search_flights"),
        (1, "webhook"),  # its parent is in another service: printed as a root
        (1, "embed"),
    ]


def test_show_prints_kind_duration_status_and_tokens(demo):
    _, out, _ = run("--store", str(demo), "show", "trip")
    lines = dict((text.split("  ")[0], text) for _, text in span_lines(out))
    # OpenTelemetry's UNSET prints as ok, ERROR as error with its message.
    assert lines["POST /chat"] == "POST /chat  SERVER  900.0 ms  ok  (no session)"
    assert lines["planner"] == "planner  AGENT  880.0 ms  ok"
    assert lines["chat gpt-4o"] == "chat gpt-4o  LLM  400.0 ms  ok  tokens 120/30/150"
    assert lines["search_flights"] == (
        "search_flights  TOOL  100.0 ms  error: TimeoutError: flight API timed out"
    )
    assert lines["embed"] == "embed  CLIENT  40.0 ms  ok"  # no OpenInference kind
    assert "UNSET" not in out and "ERROR" not in out


def test_show_previews_input_and_output_on_one_short_line(demo):
    _, out, _ = run("--store", str(demo), "show", "trip")
    lines = out.splitlines()
    planner = next(i for i, line in enumerate(lines) if "- planner" in line)
    input_line, output_line = lines[planner + 1], lines[planner + 2]
    assert input_line.strip().startswith("in: ")
    preview = input_line.strip()[len("in: ") :].strip()
    assert len(preview) <= 80
    assert preview.startswith("Plan a trip to Lisbon. Keep it cheap and walkable.")
    assert preview.endswith("...")
    assert output_line.strip() == "out: Day 1: Alfama. Day 2: Belem."


def test_show_json_parses_back_with_every_span(demo):
    code, out, _ = run("--store", str(demo), "show", "trip", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["session"]["session_id"] == "trip"
    assert document["session"]["total_tokens"] == 156
    traces = document["traces"]
    assert [len(t["spans"]) for t in traces] == [4, 1, 1]
    first = traces[0]
    names = {span["span_id"]: span["name"] for span in first["spans"]}
    parents = {span["name"]: names.get(span["parent_span_id"]) for span in first["spans"]}
    assert parents == {
        "POST /chat": None,
        "planner": "POST /chat",
        "chat gpt-4o": "planner",
        "search_flights": "planner",
    }
    llm = next(span for span in first["spans"] if span["name"] == "chat gpt-4o")
    assert llm["attributes"][_keys.OI_TOKENS_TOTAL] == 150
    assert datetime.fromisoformat(first["start"]) < datetime.fromisoformat(traces[1]["start"])


# --- errors ------------------------------------------------------------------------------


def test_a_missing_store_exits_2_naming_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "missing.db"
    for command in (["sessions"], ["show", "x"]):
        code, out, err = run("--store", str(missing), *command)
        assert code == 2
        assert out == ""
        assert str(missing) in err
        assert "sessiontrace.configure()" in err and "--store PATH" in err
        assert "Traceback" not in err
        assert err.count("\n") == 1


def test_an_unknown_session_exits_1_and_points_to_sessions(demo):
    code, out, err = run("--store", str(demo), "show", "no-such-session")
    assert code == 1
    assert out == ""
    assert "no-such-session" in err
    assert "sessiontrace sessions" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["sessions", "--limit", "zero"], ["sessions", "--limit", "0"], ["show"]],
)
def test_bad_usage_exits_2_with_usage_on_stderr(argv):
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    assert "usage: sessiontrace" in err


def test_help_and_version_exit_0_on_stdout():
    code, out, err = run("--version")
    assert (code, out, err) == (0, f"sessiontrace {__version__}\n", "")
    code, out, _ = run("show", "--help")
    assert code == 0
    assert "SESSION_ID" in out and "--json" in out and "--store" in out


def test_ctrl_c_prints_one_line_and_exits_130(demo):
    class InterruptedOutput(io.StringIO):
        """A terminal whose user presses Ctrl-C while output is being written."""

        def write(self, text: str) -> int:
            raise KeyboardInterrupt

    err = io.StringIO()
    code = main(["--store", str(demo), "sessions"], stdout=InterruptedOutput(), stderr=err)
    assert (code, err.getvalue()) == (130, "interrupted\n")


# --- where the store is found ------------------------------------------------------------


def test_the_store_path_comes_from_the_environment(demo, monkeypatch):
    monkeypatch.setenv("SESSIONTRACE_STORE_PATH", str(demo))
    code, out, _ = run("sessions")
    assert code == 0
    assert "trip" in out
    # --store still wins over the environment.
    code, _, err = run("sessions", "--store", str(demo.parent / "elsewhere.db"))
    assert code == 2 and "elsewhere.db" in err


def test_the_default_store_is_found_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter()))
    with provider.get_tracer("t").start_as_current_span("hi", attributes=sid("local")):
        pass
    provider.shutdown()
    assert (tmp_path / ".sessiontrace" / "sessions.db").is_file()
    code, out, _ = run("sessions")
    assert code == 0
    assert table_rows(out)[1][0] == "local"


def test_python_dash_m_sessiontrace_runs_the_cli():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "sessiontrace", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: sessiontrace" in result.stdout
    assert "sessions" in result.stdout and "show" in result.stdout


def test_show_latest_opens_the_most_recently_active_session(demo, cli_tracer):
    code, out, _ = run("--store", str(demo), "show", "latest")
    assert code == 0
    assert out.startswith("Session trip\n")
    # A session really named "latest" is shown as itself.
    with timed(cli_tracer, "named latest", 0, 1, **sid("latest")):
        pass
    code, out, _ = run("--store", str(demo), "show", "latest")
    assert out.startswith("Session latest\n")


def test_show_latest_on_a_store_without_sessions_exits_1(cli_tracer, db):
    with timed(cli_tracer, "no session here", 0, 1):
        pass
    code, out, err = run("--store", str(db), "show", "latest")
    assert (code, out) == (1, "")
    assert "holds no sessions yet" in err and str(db) in err


# --- dropped spans and repaired values (the store's losses table) --------------------------

QUEUE_FULL = "the export queue (store) was full: raise SESSIONTRACE_QUEUE_SIZE."
OTLP = "otlp http://127.0.0.1:4318/v1/traces"
SECOND = 1_000_000_000


def add_losses(db, rows):
    conn = sqlite3.connect(db, isolation_level=None)
    ensure_schema(conn)  # the store's own layout, losses table included
    conn.executemany(
        "INSERT INTO losses (kind, reason, destination, count, first_ns, last_ns, message, pid) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 4242)",
        rows,
    )
    conn.close()


def minute(ns):
    return datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%H:%M")


@pytest.fixture
def lossy(demo):
    """Queue-full records under a minute apart, a failed OTLP export, queue-full again after
    a pause, and repairs that start with the first."""
    t = T0 + 3600 * SECOND
    add_losses(
        demo,
        [
            ("dropped", "queue-full", "store", 1000, t, t + SECOND, QUEUE_FULL),
            ("dropped", "queue-full", "store", 200, t + SECOND, t + 2 * SECOND, QUEUE_FULL),
            ("dropped", "queue-full", "store", 4, t + 61 * SECOND, t + 62 * SECOND, QUEUE_FULL),
            ("dropped", "export-failed", OTLP, 9, t + 70 * SECOND, t + 70 * SECOND, "down."),
            ("dropped", "queue-full", "store", 1, t + 200 * SECOND, t + 200 * SECOND, QUEUE_FULL),
            ("repaired", "unencodable-text", "store", 37, t, t + SECOND, "decode at the source."),
        ],
    )
    return demo, t


def test_sessions_prints_one_line_per_stretch_of_losses_after_the_table(lossy):
    db, t = lossy
    code, out, err = run("--store", str(db), "sessions")
    assert (code, err) == (0, "")
    table, losses = out.split("\n\n")
    assert [row[0] for row in table_rows(table)[1:]] == ["trip", "quiet"]
    lines = losses.splitlines()
    assert len(lines) == 4  # queue-full (3 merged), repaired, export-failed, queue-full
    day = datetime.fromtimestamp(t / 1e9).astimezone().strftime("%Y-%m-%d")
    assert lines[0] == (
        f"1,204 spans dropped between {minute(t)} and {minute(t + 62 * SECOND)} on {day} "
        f"(queue-full): {QUEUE_FULL}"
    )
    assert lines[1] == (
        f"37 attribute values had unencodable text, stored with U+FFFD at {minute(t)} on {day}; "
        "decode at the source."
    )
    assert lines[2] == (
        f"9 spans for {OTLP} dropped at {minute(t + 70 * SECOND)} on {day} (export-failed): down."
    )
    assert lines[3].startswith("1 span dropped at ")


def test_sessions_json_stays_a_list_and_warns_about_losses_on_stderr(lossy):
    db, _ = lossy
    code, out, err = run("--store", str(db), "sessions", "--json")
    assert code == 0
    assert [s["session_id"] for s in json.loads(out)] == ["trip", "quiet"]
    lines = err.splitlines()
    assert len(lines) == 4 and all(line.startswith("sessiontrace: warning: ") for line in lines)
    assert "1,204 spans dropped" in lines[0]


def test_losses_show_even_when_no_session_arrived(cli_tracer, db):
    with timed(cli_tracer, "no session here", 0, 1):
        pass
    add_losses(db, [("dropped", "shutdown-timeout", "store", 3, T0, T0, "")])
    code, out, _ = run("--store", str(db), "sessions")
    assert code == 0
    assert out.startswith(f"No sessions in the store at {db}.\n\n3 spans dropped at ")
    assert out.rstrip().endswith(
        "(shutdown-timeout): the program shut down before they were exported"
    )


def test_doctor_reports_dropped_spans_as_problems_and_repairs_as_a_note(lossy):
    db, _ = lossy
    code, out, _ = run("--store", str(db), "doctor", "trip")
    assert code == 1
    assert "Dropped before they reached a backend: 1,214 spans" in out
    assert "  - 1,204 spans dropped between" in out
    note = out.split("Note (not a problem: the spans were kept):\n")[1]
    assert note.startswith("  - 37 attribute values had unencodable text")
    document = json.loads(run("--store", str(db), "doctor", "--json")[1])
    assert [run["count"] for run in document["dropped"]] == [1204, 9, 1]
    assert [run["count"] for run in document["repaired"]] == [37]
    assert document["problem_count"] >= 3


def test_doctor_is_clean_with_repairs_only(cli_tracer, db):
    with timed(cli_tracer, "ping", 0, 10, **sid("only")):
        pass
    add_losses(db, [("repaired", "unencodable-text", "store", 2, T0, T0, "decode it.")])
    code, out, _ = run("--store", str(db), "doctor")
    assert code == 0
    assert out.startswith("No problems found in 1 session")
    assert "2 attribute values had unencodable text" in out


def test_losses_the_exporter_records_are_shown(db):
    # End to end with the real ledger and exporter: a loss recorded in this process goes into
    # the store with the next batch, and the CLI reads it back from there.
    from sessiontrace.export._losses import LEDGER

    reason = "queue-full"
    LEDGER.take_pending()  # what earlier tests left pending belongs to their stores
    LEDGER.record(reason, f"store {db}", 12, "the queue was full: raise it.", log=False)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(db)))
    with timed(provider.get_tracer("cli-tests"), "ping", 0, 1, **sid("after")):
        pass
    provider.shutdown()
    code, out, _ = run("--store", str(db), "sessions")
    assert code == 0
    (line,) = [line for line in out.splitlines() if f"for store {db} dropped" in line]
    assert line.startswith("12 spans for store ")
    assert line.endswith(f"({reason}): the queue was full: raise it.")
    code, out, _ = run("--store", str(db), "doctor")
    assert code == 1 and "Dropped before they reached a backend: 12 spans" in out


# --- sub-sessions under their parent -------------------------------------------------------


def in_family(session_id, parent=None, name=None, **extra):
    attributes = sid(session_id, **{_keys.OI_USER_ID: "ana", **extra})
    if parent is not None:
        attributes[_keys.PARENT_SESSION_ID] = parent
    if name is not None:
        attributes[_keys.SESSION_NAME] = name
    return attributes


@pytest.fixture
def family(db) -> Path:
    """A tracker run "run" with sub-sessions (one of its own), a sub-session whose parent is not
    in the store, two sessions naming each other as parent, and a plain older session.

    "run-2", a sub-session, ends after every span of its parent: the newest session of all.
    """
    llm = {_keys.OI_SPAN_KIND: "LLM", _keys.OI_TOKENS_PROMPT: 3, _keys.OI_TOKENS_COMPLETION: 1}
    with store_tracer(db) as t:
        with stored_span(t, "ping", 0, 10, root=True, **sid("older")):
            pass
        with stored_span(t, "a", 20, 30, root=True, **in_family("loop-a", parent="loop-b")):
            pass
        with stored_span(t, "b", 40, 50, root=True, **in_family("loop-b", parent="loop-a")):
            pass
        with stored_span(t, "step 0", 100, 200, root=True, **in_family("run", name="plan")):
            with stored_span(t, "chat", 110, 120, **in_family("run", name="plan", **llm)):
                pass
            child = in_family("run-1", parent="run", name="research")
            with stored_span(t, "research", 150, 190, root=True, **child, **llm):
                grandchild = in_family("run-1-1", parent="run-1", name="deep")
                with stored_span(t, "deep", 160, 170, root=True, **grandchild, **llm):
                    pass
        with stored_span(t, "step 1", 300, 400, root=True, error="boom", **in_family("run")):
            with stored_span(t, "late", 310, 950, root=True, **in_family("run-2", parent="run")):
                pass
        with stored_span(t, "summary", 900, 900, root=True, **in_family("run", name="plan")):
            pass
        with stored_span(t, "orphan", 500, 510, root=True, **in_family("lost", parent="gone")):
            pass
    return db


def tree_rows(out: str) -> list[list[str]]:
    """The table's rows: the SESSION column as drawn (tree and all), then the other cells."""
    header, *lines = out.strip("\n").splitlines()
    width = header.index("NAME")
    return [
        [line[:width].rstrip(), *re.split(r"\s{2,}", line[width:].strip())] for line in lines
    ]


def test_sub_sessions_are_listed_under_their_parent_not_as_rows_of_their_own(family):
    code, out, err = run("--store", str(family), "sessions")
    assert (code, err) == (0, "")
    ids = [row[0] for row in tree_rows(out)]
    assert ids == [
        "run",  # newest first by its own last span; "run-2" ended later but sits under it
        "│  with 3 sub-sessions",
        "├─ run-1",
        "│  │  with 1 sub-session",
        "│  └─ run-1-1",
        "└─ run-2",
        "lost",  # its parent "gone" is not in the store
        "loop-b",  # parents that loop: each session once, the newer heads the loop
        "│  with 1 sub-session",
        "└─ loop-a",  # no totals row of its own: its sub-session is its parent, above it
        "older",
    ]
    rows = {cells[0].lstrip("│├└─ "): cells for cells in tree_rows(out)}
    # NAME and STATUS beside the id: the run failed (a span in error), its sub-sessions did not.
    assert rows["run"][1:5] == ["plan", "error", "ana", "3"]
    assert rows["run-1"][1:3] == ["research", "ok"]
    assert rows["older"][1:3] == ["-", "ok"]
    # The run's own spans, then with its sub-sessions: 4 spans, then 4 + 1 + 1 + 1.
    assert rows["run"][5] == "4" and rows["run"][8:] == ["3/1/4", "1"]
    assert rows["with 3 sub-sessions"][1:] == ["6", "7", "9/3/12", "1"]
    assert tree_rows(out)[3][1:] == ["2", "2", "6/2/8", "0"]  # run-1 with run-1-1


def test_limit_counts_top_level_sessions_and_brings_their_sub_sessions(family):
    _, out, _ = run("--store", str(family), "sessions", "--limit", "1")
    ids = [row[0].lstrip("│├└─ ") for row in tree_rows(out)]
    assert ids == ["run", "with 3 sub-sessions", "run-1", "with 1 sub-session", "run-1-1", "run-2"]
    _, out, _ = run("--store", str(family), "sessions", "--limit", "2")
    assert [row[0] for row in table_rows(out)[1:]][-1] == "lost"
    # JSON stays the flat list, newest first, every session a row of its own.
    document = json.loads(run("--store", str(family), "sessions", "--json")[1])
    assert [s["session_id"] for s in document] == [
        "run-2", "run", "lost", "run-1", "run-1-1", "loop-b", "loop-a", "older"
    ]
    by_id = {s["session_id"]: s for s in document}
    assert by_id["run"]["subsessions"] == ["run-1", "run-2"]
    assert by_id["run"]["with_subsessions"]["span_count"] == 7
    assert by_id["run-1"]["parent_session_id"] == "run" and by_id["run-1"]["name"] == "research"
    assert [s["session_id"] for s in json.loads(run(
        "--store", str(family), "sessions", "--json", "--limit", "1")[1])] == ["run-2"]


def test_latest_is_the_first_session_listed_not_a_sub_session(family):
    for command in ("show", "replay"):
        code, out, _ = run("--store", str(family), command, "latest")
        assert code == 0
        assert out.startswith("Session run: plan\n"), command


def test_show_names_the_parent_and_the_sub_sessions(family):
    _, out, _ = run("--store", str(family), "show", "run")
    assert re.search(r"^  sub-sessions  run-1, run-2$", out, re.M)
    assert re.search(
        r"^  totals        3 traces, 4 spans, 1 LLM call, tokens 3/1/4, 1 error\n"
        r"                with 3 sub-sessions: 6 traces, 7 spans, 3 LLM calls, tokens 9/3/12, "
        r"1 error$",
        out,
        re.M,
    )
    _, out, _ = run("--store", str(family), "show", "run-1-1")
    assert re.search(r"^  parent      run-1$", out, re.M)
    assert "with " not in out  # no sub-sessions: only its own totals


# --- the same numbers in every command -----------------------------------------------------


def totals_text(t):
    """The totals as a test reads them off `sessions --json`."""
    tokens = f"{t['prompt_tokens']}/{t['completion_tokens']}/{t['total_tokens']}"
    calls = f"{t['llm_calls']} LLM call" + ("" if t["llm_calls"] == 1 else "s")
    errors = f"{t['error_count']} error" + ("" if t["error_count"] == 1 else "s")
    return f"{t['trace_count']} traces, {t['span_count']} spans, {calls}, tokens {tokens}, {errors}"


def test_every_command_prints_the_same_totals_for_the_agent_example(tmp_path):
    # The example as a user runs it: a real SessionTracker with a sub-agent, in its own process.
    store = tmp_path / "agent.db"
    completed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "agent.py"), "--session-id", "trip-9",
         "--store", str(store)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    assert "122 tokens" in completed.stdout  # what the tracker itself printed
    listed = {s["session_id"]: s for s in json.loads(run("--store", str(store), "sessions",
                                                         "--json")[1])}
    (child_id,) = set(listed) - {"trip-9"}
    trip, child = listed["trip-9"], listed[child_id]
    below = trip["with_subsessions"]
    assert below["total_tokens"] == 122 and below["sessions"] == 2
    own_line, with_line = totals_text(trip), "with 1 sub-session: " + totals_text(below)

    _, table, _ = run("--store", str(store), "sessions")
    parent_row, with_row, child_row = tree_rows(table)
    assert parent_row[:3] == ["trip-9", "book-trip", "ok"]
    assert [parent_row[i] for i in (4, 5, 8, 9)] == [
        str(trip["trace_count"]), str(trip["span_count"]), "59/40/99", "0"
    ]
    assert with_row == ["│  with 1 sub-session", str(below["trace_count"]),
                        str(below["span_count"]), "70/52/122", "0"]
    assert child_row[:3] == [f"└─ {child_id}", "hotel-researcher", "ok"]

    _, shown, _ = run("--store", str(store), "show", "trip-9")
    assert f"  totals        {own_line}\n                {with_line}\n" in shown
    _, replayed, _ = run("--store", str(store), "replay", "trip-9")
    summary = replayed[replayed.rindex("\nSummary\n"):]
    assert f"  totals    {own_line}\n            {with_line}\n" in summary
    assert "(priced by the tracker, with 1 sub-session)" in summary  # the spans report no cost
    assert "Summary: ok, 1 step, " in replayed and f"; {totals_text(child)}" in replayed
    page = run("--store", str(store), "timeline", "trip-9", "--html", "-")[1]
    header = page[page.index('<div class="totals">'):page.index('<div class="cards">')]
    assert re.findall(r"<div>([^<]*)</div>", header) == [own_line, with_line]
    assert (f'<div class="v">{trip["span_count"]}</div><div class="k">spans</div>'
            f'<div class="d">with 1 sub-session: {below["span_count"]}</div>') in page
    for text in (table, shown, replayed, page):
        assert re.search(r"\b(UNSET|ERROR)\b", text) is None
