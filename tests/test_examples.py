"""The examples run as users run them, and record what they claim to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sessiontrace.cli import main
from sessiontrace.store import SessionStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_chatbot_example_records_one_session_with_every_span_stamped(tmp_path, capsys):
    store = tmp_path / "chat.db"
    completed = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "chatbot.py"),
            "--session-id",
            "demo-1",
            "--store",
            str(store),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "bot>  Expect 12°C" in completed.stdout
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
