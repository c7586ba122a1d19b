"""Where the time of a block goes: its pieces timed side by side, as shares of one baseline.

Run from the repository root (see benchmarks/README.md)::

    python benchmarks/block_pieces.py            # 15 rounds, about 30 s
    python benchmarks/block_pieces.py --rounds 5

``bench.py`` says whether the block targets are met; this says why not. Each piece runs in
interleaved rounds (round 1 of every piece, then round 2, ...), each round keeping the fastest
of three timed loops, gc disabled; a figure is the median over rounds, a share is that divided
by the baseline's median: ``attach(set_value(key, v))`` + ``detach`` for ``using_session``,
OpenInference's ``using_attributes`` for ``using_attributes``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context

try:
    import sessiontrace
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import sessiontrace

from sessiontrace._context import entry_over
from sessiontrace._frames import merge
from sessiontrace._using import SessionScope
from sessiontrace._validate import check_id, check_metadata, check_tags

METADATA = {"tenant": "acme", "plan": "pro"}
TAGS = ["beta", "web"]
LOOP = 3000


class DoNothing:
    def __enter__(self) -> DoNothing:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


def session_pieces() -> dict[str, Callable[[], Any]]:
    key = otel_context.create_key("bench.pieces")
    nothing = DoNothing()
    scope = sessiontrace.using_session("s")

    def baseline() -> None:
        otel_context.detach(otel_context.attach(otel_context.set_value(key, "v")))

    def with_nothing() -> None:
        with nothing:
            pass

    def context_build() -> None:
        current = otel_context.get_current()
        values = current.copy()
        values[key] = 1
        values["restore"] = current
        otel_context.Context(values)

    def block() -> None:
        with sessiontrace.using_session("s"):
            pass

    def re_entered() -> None:
        with scope:
            pass

    return {
        "attach(set_value(key, v)) + detach (baseline)": baseline,
        "the with statement (do-nothing __enter__/__exit__)": with_nothing,
        "a new Context: copy, two keys, Context()": context_build,
        'using_session("s"): the cached scope': lambda: sessiontrace.using_session("s"),
        'with using_session("s"): pass': block,
        "with <the same scope>: pass": re_entered,
    }


def attribute_pieces() -> dict[str, Callable[[], Any]] | None:
    try:
        from openinference.instrumentation import using_attributes as theirs
    except ImportError:
        return None
    checked = check_metadata(METADATA)

    def oi_block() -> None:
        with theirs(session_id="chat-42", user_id="ada", metadata=METADATA, tags=TAGS):
            pass

    def block() -> None:
        with sessiontrace.using_attributes(
            session_id="chat-42", user_id="ada", metadata=METADATA, tags=TAGS
        ):
            pass

    def scope() -> SessionScope:
        return SessionScope(session_id="chat-42", user_id="ada", metadata=METADATA, tags=TAGS)

    return {
        "OpenInference with using_attributes(4 fields) (baseline)": oi_block,
        "with using_attributes(4 fields): pass": block,
        "the scope, validation included": scope,
        "  check_id, twice": lambda: (check_id("chat-42", "session_id"), check_id("ada", "u")),
        "  check_metadata": lambda: check_metadata(METADATA),
        "  check_tags": lambda: check_tags(TAGS),
        "the frame (merge over nothing)": lambda: merge(
            None, session_id="chat-42", user_id="ada", metadata=checked, tags=("beta", "web")
        ),
        "the scope, its frame and its entry": lambda: entry_over(scope(), None),
    }


def measure(title: str, pieces: dict[str, Callable[[], Any]], rounds: int) -> None:
    def per_call(piece: Callable[[], Any]) -> float:
        began = time.perf_counter_ns()
        for _ in range(LOOP):
            piece()
        return (time.perf_counter_ns() - began) / LOOP

    found: dict[str, list[float]] = {name: [] for name in pieces}
    gc.disable()
    try:
        for number in range(1, rounds + 1):
            print(f"  {title}: round {number}/{rounds}", file=sys.stderr, flush=True)
            for name, piece in pieces.items():
                context = otel_context.get_current()
                found[name].append(min(per_call(piece) for _ in range(3)))
                otel_context.attach(context)
    finally:
        gc.enable()
    base = statistics.median(next(iter(found.values())))
    print(f"\n{title}\n  {'piece':60s} {'ns':>7s} {'share':>6s}")
    for name, samples in found.items():
        ns = statistics.median(samples)
        print(f"  {name:60s} {ns:7.0f} {ns / base:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (15)")
    rounds = parser.parse_args().rounds
    measure('Where `with using_session("s")` goes', session_pieces(), rounds)
    pieces = attribute_pieces()
    if pieces is None:
        print("\nusing_attributes: openinference-instrumentation not installed "
              "(pip install -r benchmarks/requirements.txt)")  # fmt: skip
    else:
        measure("Where `with using_attributes(4 fields)` goes", pieces, rounds)


if __name__ == "__main__":
    main()
