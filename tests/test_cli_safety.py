"""No command prints a raw control or bidi character from the store, in any output mode.

The stores are written by the real SQLiteSpanExporter, with hostile text in every field the
commands print: span names, ids, attribute values, state keys, models, status messages,
event names. Text output must show them escaped; JSON output must stay valid, ASCII-only JSON
that reads back to the exact original; the HTML timeline must escape them and any markup.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.stored import MS, T0, store_tracer, timed
from sessiontrace import _keys
from sessiontrace.cli import main
from sessiontrace.cli._format import safe

# Clears the screen, sets the window title, starts a C1 CSI, reverses text, forges lines.
EVIL = (
    "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\u202c\u2066iso\u2069\x7f\x00\t\r\u2028\u2029"
    "\x85\u200f\u061c\nFORGED"
)
DANGEROUS = (
    [chr(c) for c in range(0x20)]
    + ["\x7f"]
    + [chr(c) for c in range(0x80, 0xA0)]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u2028", "\u2029", "\u200e", "\u200f", "\u061c"]
)
# Anything a terminal could act on, except the newline the CLI itself writes between lines.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)


def build(db: Path, evil: str) -> tuple[str, str]:
    """A tracked session and a sub-session, every printed field carrying ``evil``."""
    session, child = "s" + evil, "c" + evil
    base = {_keys.OI_SESSION_ID: session, _keys.OI_USER_ID: evil}
    with store_tracer(db) as t:
        for index, state in enumerate([{evil: evil, "k": 1}, {"k": evil}]):
            step = {
                **base,
                _keys.SPAN_TYPE: "step",
                _keys.STEP_INDEX: index,
                _keys.STEP_NAME: evil,
                _keys.STATE: json.dumps(state),
            }
            with timed(t, evil, index * 100, index * 100 + 90, root=True, **step):
                llm = {
                    **base,
                    _keys.STEP_INDEX: index,
                    _keys.OI_SPAN_KIND: "LLM",
                    _keys.OI_MODEL_NAME: evil,
                    _keys.OI_INPUT_VALUE: evil,
                    _keys.OI_OUTPUT_VALUE: evil,
                    _keys.OI_TOKENS_TOTAL: 3,
                }
                with timed(t, evil, index * 100 + 5, index * 100 + 50, error=evil, **llm) as span:
                    span.add_event(evil, {evil: evil}, timestamp=T0 + (index * 100 + 6) * MS)
                # A span without the session in a stamped trace: doctor reports it by name.
                unstamped = {_keys.OI_SPAN_KIND: evil}
                with timed(t, evil, index * 100 + 60, index * 100 + 70, **unstamped):
                    pass
                if index == 1:
                    sub = {
                        _keys.OI_SESSION_ID: child,
                        _keys.PARENT_SESSION_ID: session,
                        _keys.SPAN_TYPE: "step",
                        _keys.STEP_INDEX: 0,
                        _keys.STEP_NAME: evil,
                    }
                    with timed(t, evil, 171, 180, **sub):
                        pass
                    summary = {
                        _keys.OI_SESSION_ID: child,
                        _keys.SPAN_TYPE: "summary",
                        _keys.STATUS: "ok",
                        _keys.SESSION_NAME: evil,
                        _keys.PARENT_SESSION_ID: session,
                    }
                    with timed(t, evil, 181, 181, root=True, **summary):
                        pass
    return session, child


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def text_commands(session: str) -> list[list[str]]:
    return [
        ["sessions"],
        ["show", session],
        ["show", "latest"],
        ["replay", session],
        ["replay", session, "--full"],
        ["doctor"],
        ["doctor", session],
        ["timeline", session, "--html", "-"],
    ]


def assert_clean(text: str, where: str, *, whole_values: bool = False) -> None:
    found = UNSAFE.search(text)
    assert found is None, f"{where}: raw {found.group()!r} at {found.start()}: {text!r}"
    for line in text.splitlines():
        if whole_values and line.startswith(" " * 8):
            continue  # `replay --full` prints a value's own lines, indented under its label
        assert not line.lstrip(" -").startswith("FORGED"), f"{where}: a forged line: {line!r}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, str, str]:
    db = tmp_path_factory.mktemp("hostile") / "sessions.db"
    session, child = build(db, EVIL)
    return db, session, child


@pytest.mark.parametrize("command", text_commands("SESSION"), ids=" ".join)
def test_text_output_escapes_every_control_and_bidi_character(hostile, command):
    db, session, _ = hostile
    argv = [session if part == "SESSION" else part for part in command]
    code, out, err = run("--store", str(db), *argv)
    assert code in (0, 1), err  # doctor exits 1: the unstamped spans are problems
    assert_clean(out, " ".join(command), whole_values="--full" in command)
    assert_clean(err, " ".join(command) + " (stderr)")
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in out  # shown, escaped, not dropped
    if command[0] != "timeline":
        assert "\\u202eevil" in out


@pytest.mark.parametrize(
    "command",
    [
        ["sessions", "--json"],
        ["show", "S", "--json"],
        ["replay", "S", "--json"],
        ["doctor", "--json"],
        ["doctor", "S", "--json"],
    ],
    ids=" ".join,
)
def test_json_output_is_ascii_json_that_reads_back_exactly(hostile, command):
    db, session, _ = hostile
    argv = [session if part == "S" else part for part in command]
    code, out, err = run("--store", str(db), *argv)
    assert code in (0, 1), err
    assert out.isascii()  # so U+2028, U+2029, C1 and bidi characters are \u escapes
    assert_clean(out, " ".join(command))
    document = json.loads(out)
    strings = set(_strings(document))
    assert EVIL in strings or "s" + EVIL in strings or "c" + EVIL in strings


def test_json_keeps_the_exact_text_of_names_and_attributes(hostile):
    db, session, _ = hostile
    document = json.loads(run("--store", str(db), "show", session, "--json")[1])
    spans = [span for trace in document["traces"] for span in trace["spans"]]
    assert {span["name"] for span in spans} == {EVIL}
    llm = next(span for span in spans if span["status_code"] == "ERROR")
    assert llm["status_message"] == EVIL
    assert llm["attributes"][_keys.OI_MODEL_NAME] == EVIL
    assert llm["events"][0]["name"] == EVIL
    assert document["session"]["user_id"] == EVIL


def test_the_html_timeline_escapes_markup_and_controls(tmp_path):
    db = tmp_path / "sessions.db"
    evil = '<script>alert("x")</script>' + EVIL + '"><img src=x onerror=alert(1)>'
    session, child = build(db, evil)
    page_path = tmp_path / "t.html"
    code, _, err = run("--store", str(db), "timeline", session, "--html", str(page_path))
    assert (code, err) == (0, "")
    page = page_path.read_text(encoding="utf-8")
    assert page.count("<script>") == 1  # the page's own, at the end
    assert "<img" not in page and "alert(1)>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert_clean(page, "timeline page")
    assert "\\x1b[2J" in page
    # The sub-session's id and its run's name, escaped twice over in its lane's head.
    shown_name, shown_id = escape(safe(evil)), escape(safe(child))
    assert f'<div class="sub" data-session="{shown_id}">' in page
    head = page[page.index('<div class="row subhead"') :]
    head = head[: head.index("</div></div>")]
    assert shown_name in head and f"sub-session {shown_id}" in head


def test_the_sessions_table_escapes_run_names_and_sub_session_ids(tmp_path):
    db = tmp_path / "sessions.db"
    evil = '<b onclick="x">' + EVIL
    session, child = build(db, evil)
    code, out, err = run("--store", str(db), "sessions")
    assert (code, err) == (0, "")
    assert_clean(out, "sessions")
    # Four lines, whatever the ids and names hold: the header, the session, its totals with
    # the sub-session, and the sub-session under it, tree marker first.
    header, parent_row, with_row, child_row = out.rstrip("\n").split("\n")
    assert header.startswith("SESSION ")
    assert parent_row.startswith(safe(session) + "  ")
    assert with_row.startswith("│  with 1 sub-session  ")
    assert child_row.startswith("└─ " + safe(child) + "  ")
    assert f"  {safe(evil)}  ok  " in child_row  # the run's name, then its status
    assert "\\u202eevil" in child_row and "\\x1b[2J" in child_row


def test_a_newline_in_a_span_name_cannot_forge_a_line(hostile):
    db, session, _ = hostile
    clean_db = Path(tempfile.mkdtemp()) / "sessions.db"
    clean_session, _ = build(clean_db, "plain")
    for command in text_commands("SESSION"):
        if command[0] == "timeline" or "--full" in command:
            continue
        evil_out = run("--store", str(db), *[session if p == "SESSION" else p for p in command])[1]
        plain = [clean_session if p == "SESSION" else p for p in command]
        plain_out = run("--store", str(clean_db), *plain)[1]
        assert evil_out.count("\n") == plain_out.count("\n"), command


def test_replay_full_prints_a_value_line_by_line_under_its_label(hostile):
    db, session, _ = hostile
    out = run("--store", str(db), "replay", session, "--full")[1]
    lines = out.splitlines()
    label = next(i for i, line in enumerate(lines) if line.strip() == "request:")
    indent = len(lines[label]) - len(lines[label].lstrip())
    assert lines[label + 1].startswith(" " * (indent + 2) + "\\x1b[2J")
    assert lines[label + 2] == " " * (indent + 2) + "FORGED"


def test_errors_and_argparse_messages_are_escaped_too(hostile):
    db, _, _ = hostile
    code, _, err = run("--store", str(db), "show", "\u202enot-there\x1b[2J")
    assert code == 1
    assert_clean(err, "not found error")
    assert "\\u202enot-there\\x1b[2J" in err
    # argparse writes this itself; only the stream wrapper stands between it and the terminal.
    code, _, err = run("--store", str(db), "sessions", "--\x1b]0;pwned\x07")
    assert code == 2
    assert_clean(err, "usage error")
    assert "\\x1b]0;pwned\\x07" in err
    code, _, err = run("--store", str(db.parent / "\x1b[2Jmissing.db"), "sessions")
    assert code == 2
    assert_clean(err, "missing store")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    evil=st.text(
        alphabet=st.sampled_from(DANGEROUS) | st.characters(exclude_categories=("Cs",)),
        min_size=1,
        max_size=12,
    )
)
def test_any_text_in_any_field_comes_out_clean(evil):
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "sessions.db"
        session, child = build(db, evil)
        commands = [["sessions"], ["show", session], ["replay", session, "--full"], ["doctor"]]
        for command in [*commands, ["replay", child]]:
            code, out, err = run("--store", str(db), *command)
            assert code in (0, 1), (command, err)
            assert UNSAFE.search(out) is None, (command, out)
            assert UNSAFE.search(err) is None, (command, err)
        document = json.loads(run("--store", str(db), "show", session, "--json")[1])
        assert document["session"]["session_id"] == session


# --- the escaping function itself --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b", "\\x1b"),
        ("\x07", "\\x07"),
        ("\x00", "\\x00"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
        ("\x7f", "\\x7f"),
        ("\x9b", "\\x9b"),
        ("\x85", "\\x85"),
        ("\u202e", "\\u202e"),
        ("\u2066", "\\u2066"),
        ("\u2069", "\\u2069"),
        ("\u2028", "\\u2028"),
        ("\udcff", "\\udcff"),
    ],
)
def test_safe_escapes_each_class(raw, shown):
    assert safe(f"a{raw}b") == f"a{shown}b"


def test_safe_keeps_newlines_only_when_asked():
    assert safe("a\nb\x1b", newlines=True) == "a\nb\\x1b"
    assert safe("a\nb") == "a\\nb"
    assert safe(42) == "42"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(DANGEROUS) | st.characters(), max_size=40))
def test_safe_output_never_holds_an_unsafe_character(text):
    escaped = safe(text)
    assert UNSAFE.search(escaped) is None and "\n" not in escaped
    assert safe(escaped) == escaped  # escaping twice changes nothing
    assert UNSAFE.search(safe(text, newlines=True)) is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp"))))
def test_safe_leaves_ordinary_text_alone(text):
    assert safe(text) == text


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_a_terminal_that_cannot_encode_a_name_gets_an_escape_not_a_traceback(tmp_path):
    # A real process whose stdout is ASCII-only, as with PYTHONIOENCODING=ascii or a Latin-1
    # console: a span named in Greek must not end the command with UnicodeEncodeError.
    db = tmp_path / "sessions.db"
    session, _ = build(db, "καλημέρα")
    repo = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONIOENCODING": "ascii",
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    for command in (["sessions"], ["show", session], ["replay", session, "--full"]):
        result = subprocess.run(
            [sys.executable, "-m", "sessiontrace", "--store", str(db), *command],
            capture_output=True,
            env=env,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr.decode("ascii", "replace")
        assert b"\\u03ba\\u03b1\\u03bb" in result.stdout  # the name, escaped
        assert result.stderr == b""
