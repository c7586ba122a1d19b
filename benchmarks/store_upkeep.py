"""What the store's summary upkeep costs at ingestion, against the store before it.

Run from the repository root (git is needed for the baseline)::

    python benchmarks/store_upkeep.py            # about 3 minutes on 2 cores
    python benchmarks/store_upkeep.py --quick    # a rough look

Three cases write the same finished spans through ``SQLiteSpanExporter.export`` in batches of
512 to a fresh file, each in a fresh interpreter (so no case inherits another's caches):

- ``before``: the exporter of the reliability work (layout 2, git revision ``--baseline``,
  default 3891440), checked out into a temporary git worktree: the baseline.
- ``layout 3``: this checkout's exporter, summary upkeep included.
- ``layout 3, no upkeep``: the same with the summary upkeep switched off, to show what the
  upkeep itself costs.

Spans come in three shapes: ``small`` (8 attributes) and ``llm`` (15 attributes with a 2 KB
input of generated prose), every 100 spans one session of 10 traces of 10 spans, as in the
issue's benchmark; and ``small, one-span traces``, where every span is a trace of its own (the
most summary upkeep per span: one trace row per span). Rounds are interleaved (round 1 of every case, then round 2, ...); each figure is
the median over rounds of spans per second, and a ratio the median over rounds of the case's
throughput divided by the baseline's in the same round: by the clock (``vs before``), and by
the CPU time the process spent (``CPU vs before``: what the export takes from the
application's cores, steadier on a shared machine whose disk waits vary from run to run).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 512
CASES = ("before", "layout 3", "layout 3, no upkeep")
SHAPES = ("small", "llm", "small, one-span traces")


def prose(rng: random.Random, vocabulary: list[str], size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(vocabulary)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def make_spans(count: int, shape: str) -> list:  # type: ignore[type-arg]
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    per_trace = 1 if shape.endswith("one-span traces") else 10
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = [
        "".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(400)
    ]
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    start = 1_700_000_000_000_000_000
    for index in range(count):
        session = f"s-{index // 100}"
        attributes: dict[str, object] = {
            "session.id": session,
            "gen_ai.conversation.id": session,
            "user.id": f"user-{index // 300}",
            "tag.tags": ("beta", "web"),
            "metadata": '{"tenant": "acme"}',
            "llm.token_count.prompt": 12,
            "llm.token_count.completion": 7,
            "openinference.span.kind": "LLM",
        }
        if shape.startswith("llm"):
            attributes.update(
                {
                    "input.value": prose(rng, vocabulary, 2048),
                    "output.value": prose(rng, vocabulary, 200),
                    "llm.model_name": "gpt-4o-mini",
                    "llm.invocation_parameters": '{"temperature": 0.2}',
                    "llm.token_count.total": 19,
                    "http.status_code": 200,
                    "retry.count": 0,
                }
            )
        begin = start + index * 1_000_000
        if index % per_trace == 0:  # a root, under which the next spans of its trace start
            root = tracer.start_span("turn", attributes=attributes, start_time=begin)
            root.end(end_time=begin + per_trace * 1_000_000)
            continue
        span = tracer.start_span(
            "llm", context=set_span_in_context(root), attributes=attributes, start_time=begin
        )
        span.end(end_time=begin + 500_000)
    return list(memory.get_finished_spans())


def worker(tree: str, case: str, shape: str, count: int, path: str) -> None:
    """Time one case in this (fresh) interpreter; prints the seconds the exports took."""
    sys.path.insert(0, tree)
    from sessiontrace.store import SQLiteSpanExporter

    if case == "layout 3, no upkeep":
        from sessiontrace.store import _summaries

        _summaries.add = lambda *args: None  # type: ignore[assignment]
    spans = make_spans(count + 1, shape)
    store = SQLiteSpanExporter(path)
    store.export(spans[:1])  # create the file and schema outside the timing
    spans = spans[1:]
    started, cpu_started = time.perf_counter(), time.process_time()
    for begin in range(0, len(spans), BATCH):
        store.export(spans[begin : begin + BATCH])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    store.shutdown()
    print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu}))


def run_case(tree: Path, case: str, shape: str, count: int, path: Path) -> tuple[float, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--worker", str(tree), case, shape, str(count), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"case {case!r} failed:\n{result.stderr}")
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    return float(timing["seconds"]), float(timing["cpu_seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer spans and rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--spans", type=int, default=None)
    parser.add_argument(
        "--shape", action="append", choices=SHAPES, help="only this shape (may repeat)"
    )
    parser.add_argument("--baseline", default="3891440", help="git revision to compare with")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        tree, case, shape, count, path = options.worker
        worker(tree, case, shape, int(count), path)
        return 0
    rounds = options.rounds or (3 if options.quick else 7)
    count = options.spans or (5_000 if options.quick else 20_000)
    workdir = Path(tempfile.mkdtemp(prefix="sessiontrace-upkeep-"))
    baseline = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), options.baseline],
        check=True,
        capture_output=True,
    )
    trees = {"before": baseline, "layout 3": ROOT, "layout 3, no upkeep": ROOT}
    print(f"{count:,} spans per case, {rounds} rounds, files in {workdir}", file=sys.stderr)
    try:
        for shape in options.shape or SHAPES:
            rates: dict[str, list[float]] = {case: [] for case in CASES}
            ratios: dict[str, list[float]] = {case: [] for case in CASES}
            cpu_ratios: dict[str, list[float]] = {case: [] for case in CASES}
            for round_index in range(rounds):
                print(f"  {shape}: round {round_index + 1}/{rounds}", file=sys.stderr)
                round_rates, round_cpu = {}, {}
                for case in CASES:
                    path = workdir / f"{shape}-{round_index}-{case.replace(' ', '_')}.db"
                    seconds, cpu = run_case(trees[case], case, shape, count, path)
                    round_rates[case], round_cpu[case] = count / seconds, count / cpu
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                for case, rate in round_rates.items():
                    rates[case].append(rate)
                    ratios[case].append(rate / round_rates["before"])
                    cpu_ratios[case].append(round_cpu[case] / round_cpu["before"])
            print(f"\n{shape} spans ({count:,} a case, median of {rounds} rounds)")
            print(f"  {'case':<22} {'spans/s':>10} {'vs before':>10} {'CPU vs before':>14}")
            for case in CASES:
                print(
                    f"  {case:<22} {statistics.median(rates[case]):>10,.0f} "
                    f"{statistics.median(ratios[case]):>10.2f} "
                    f"{statistics.median(cpu_ratios[case]):>14.2f}"
                )
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
            check=False,
            capture_output=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
