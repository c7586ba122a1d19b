"""Write ``store_v2.db``: a real layout-2 store, made by the release before layout 3.

tests/test_migrate.py reads this file as the previous release left it. It was made once with
the code of revision 3891440 (the last with layout 2), through that version's configure() and
SQLiteSpanExporter, like this, from the repository root::

    git worktree add /tmp/v2tree 3891440
    PYTHONPATH=/tmp/v2tree python tests/data/make_store_v2.py tests/data/store_v2.db

and ``store_v2_expected.json`` beside it holds what that version's SessionStore listed for
it (``sessions()`` and each session's ``traces()``), so the test can check that the
migrated store reads the same numbers. Pass ``--spans N`` to add N plain spans in sessions
of 100 (benchmarks of the migration use a big store made this way; the fixture has none).

It holds: a SessionTracker run with three steps, state, LLM spans with token counts and a
sub-session (a child tracker with a step of its own); a run that failed; plain sessions with
one and with two users, OpenInference and GenAI token counts and an error; a request span
without a session around a session's span; and a trace with no session at all.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

import sessiontrace
from sessiontrace import SessionTracker, using_attributes
from sessiontrace.store import SCHEMA_VERSION, SessionStore


def llm(tracer: trace.Tracer, name: str, prompt: int, completion: int) -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": prompt,
        "llm.token_count.completion": completion,
        "llm.token_count.total": prompt + completion,
        "input.value": f"{name}: find a flight to Oslo under 300 EUR",
    }
    with tracer.start_as_current_span(name, attributes=attributes):
        pass


def write(path: Path, extra_spans: int) -> None:
    provider = sessiontrace.configure(
        service_name="make-store-v2", store_path=path, tracer_provider=None
    )
    tracer = trace.get_tracer("make-store-v2")

    with SessionTracker("trip-1", name="plan-trip", user_id="ada", tags=["v2"]) as run:
        with run.step("plan"):
            run.set_state("goal", "Oslo")
            llm(tracer, "plan call", 120, 30)
        with run.step("search"):
            run.set_state("flights", 3)
            with run.child("hotels", session_id="trip-1.hotels") as child:
                with child.step("look"):
                    llm(tracer, "hotel call", 40, 10)
            llm(tracer, "search call", 200, 50)
        with run.step("book"):
            with tracer.start_as_current_span("pay"):
                pass

    try:
        with SessionTracker("trip-2", name="book-flight", user_id="bob") as failing:
            with failing.step("pay"):
                llm(tracer, "pay call", 10, 5)
                raise RuntimeError("card declined")
    except RuntimeError:
        pass

    for turn in range(3):
        with using_attributes(session_id="chat-1", user_id="ada"):
            with tracer.start_as_current_span(f"turn {turn}"):
                llm(tracer, "answer", 10 * (turn + 1), 5)
    for user in ("bob", "bob", "cy"):
        with using_attributes(session_id="chat-2", user_id=user):
            with tracer.start_as_current_span(
                "genai call",
                attributes={"gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3},
            ) as span:
                if user == "cy":
                    span.set_status(Status(StatusCode.ERROR, "rate limited"))

    # A request span without a session, with a session's span inside it.
    with tracer.start_as_current_span("POST /chat"):
        with using_attributes(session_id="chat-3", user_id="dee"):
            with tracer.start_as_current_span("handle"):
                pass
    # A trace with no session at all.
    with tracer.start_as_current_span("GET /health"):
        pass

    for number in range(extra_spans):
        with using_attributes(session_id=f"bulk-{number // 100}", user_id=f"u{number % 7}"):
            with tracer.start_as_current_span(
                "bulk",
                attributes={"llm.token_count.prompt": number % 50, "input.value": "x" * 200},
            ):
                pass
    provider.shutdown()


def listing(path: Path) -> dict[str, object]:
    """What this version's reader shows for the store."""
    with SessionStore(path) as store:
        sessions = store.sessions()
        return {
            "made_by_layout": SCHEMA_VERSION,
            "sessions": [summary.model_dump(mode="json") for summary in sessions],
            "traces": {
                summary.session_id: sorted(
                    [trace.trace_id, len(trace.spans)] for trace in store.traces(summary.session_id)
                )
                for summary in sessions
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--spans", type=int, default=0, help="plain spans to add")
    parser.add_argument("--expected", type=Path, help="where to write the listing (JSON)")
    args = parser.parse_args()
    if SCHEMA_VERSION != 2:
        sys.exit(f"run this with the layout-2 release on PYTHONPATH (found {SCHEMA_VERSION})")
    if args.path.exists():
        sys.exit(f"{args.path} exists; remove it first")
    write(args.path, args.spans)
    with sqlite3.connect(args.path) as conn:  # no -wal file to commit
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if args.expected is not None:
        args.expected.write_text(json.dumps(listing(args.path), indent=1) + "\n")
    with sqlite3.connect(args.path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


if __name__ == "__main__":
    main()
