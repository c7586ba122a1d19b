"""Store ingestion: the store exporter next to a plain multi-row INSERT of the same rows.

Run from the repository root (no extra packages needed)::

    python benchmarks/store_ingest.py            # about 1-2 minutes on 2 cores
    python benchmarks/store_ingest.py --quick    # a rough look

Cases, each over the same finished spans (two shapes: ``small``, 8 attributes; ``llm``, 15
attributes with a 2 KB input), written in batches of 512 to a fresh SQLite file:

- ``plain insert``: the rows already built, one multi-row INSERT per 256 rows, one
  transaction per batch: the baseline (what SQLite itself costs).
- ``plain insert + json``: the same, with the attributes JSON-encoded in the loop: the least
  any store that keeps attributes as JSON pays.
- ``exporter``: ``SQLiteSpanExporter.export``, everything included.
- ``exporter, busy app``: the same while another thread runs a CPU-bound Python loop (the
  GIL is shared with the application).
- ``executemany (v1)``: version 1's write, one ``executemany`` per batch of prebuilt rows, idle
  and beside the busy thread: ``executemany`` hands the GIL back once per row, so a busy
  application thread starves it.

Rounds are interleaved (round 1 of every case, then round 2, ...) and each figure is the
median over rounds of spans per second; a ratio is the median over rounds of the case's
throughput divided by the baseline's in the same round.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

try:
    import sessiontrace  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sessiontrace.store import SQLiteSpanExporter
from sessiontrace.store._exporter import _CHUNK, _insert
from sessiontrace.store._span_rows import span_to_row
from sessiontrace.store._schema import COLUMNS, ensure_schema

BATCH = 512


def make_spans(count: int, shape: str) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    big = "x" * 2048
    for index in range(count):
        attributes: dict[str, object] = {
            "session.id": f"s-{index // 100}",
            "gen_ai.conversation.id": f"s-{index // 100}",
            "user.id": "ada",
            "tag.tags": ("beta", "web"),
            "metadata": '{"tenant": "acme"}',
            "llm.token_count.prompt": 12,
            "llm.token_count.completion": 7,
            "openinference.span.kind": "LLM",
        }
        if shape == "llm":
            attributes.update(
                {
                    "input.value": big,
                    "output.value": "a short answer " * 8,
                    "llm.model_name": "gpt-4o-mini",
                    "llm.invocation_parameters": '{"temperature": 0.2}',
                    "llm.token_count.total": 19,
                    "http.status_code": 200,
                    "retry.count": 0,
                }
            )
        with tracer.start_as_current_span("llm", attributes=attributes):
            pass
    return list(exporter.get_finished_spans())


def connect(path: Path):  # type: ignore[no-untyped-def]
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    ensure_schema(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def plain(rows: list[tuple], path: Path, encode: Sequence[dict] | None = None) -> float:
    conn = connect(path)
    started = time.perf_counter()
    attributes_column = COLUMNS.index("attributes")
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        if encode is not None:
            batch = [
                (
                    *row[:attributes_column],
                    json.dumps(encode[start + offset], ensure_ascii=False),
                    *row[attributes_column + 1 :],
                )
                for offset, row in enumerate(batch)
            ]
        conn.execute("BEGIN IMMEDIATE")
        for chunk_start in range(0, len(batch), _CHUNK):
            chunk = batch[chunk_start : chunk_start + _CHUNK]
            conn.execute(_insert(len(chunk)), list(itertools.chain.from_iterable(chunk)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def executemany(rows: list[tuple], path: Path) -> float:
    conn = connect(path)
    statement = (
        f"INSERT OR REPLACE INTO spans ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in COLUMNS)})"
    )
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(statement, rows[start : start + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def exporter(spans: list[ReadableSpan], path: Path) -> float:
    store = SQLiteSpanExporter(path)
    store.export(spans[:1])  # create the file and schema outside the timing
    started = time.perf_counter()
    for start in range(0, len(spans), BATCH):
        store.export(spans[start : start + BATCH])
    elapsed = time.perf_counter() - started
    store.shutdown()
    return elapsed


def busy(run: Callable[[], float]) -> float:
    stop = threading.Event()

    def burn() -> None:
        total = 0
        while not stop.is_set():
            for index in range(1000):
                total += index * index

    thread = threading.Thread(target=burn)
    thread.start()
    try:
        return run()
    finally:
        stop.set()
        thread.join()


def make_cases(
    spans: list[ReadableSpan], rows: list[tuple], attributes: list[dict]
) -> dict[str, Callable[[Path], float]]:
    return {
        "plain insert": lambda path: plain(rows, path),
        "plain insert + json": lambda path: plain(rows, path, attributes),
        "exporter": lambda path: exporter(spans, path),
        "exporter, busy app": lambda path: busy(lambda: exporter(spans, path)),
        "executemany (v1)": lambda path: executemany(rows, path),
        "executemany, busy app": lambda path: busy(lambda: executemany(rows, path)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer spans and rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--spans", type=int, default=None)
    options = parser.parse_args(argv)
    rounds = options.rounds or (3 if options.quick else 7)
    count = options.spans or (5_000 if options.quick else 20_000)
    workdir = Path(tempfile.mkdtemp(prefix="sessiontrace-ingest-"))
    print(f"{count:,} spans per case, {rounds} rounds, files in {workdir}", file=sys.stderr)
    for shape in ("small", "llm"):
        spans = make_spans(count, shape)
        rows = [span_to_row(span) for span in spans]
        attributes = [dict(span.attributes or {}) for span in spans]
        cases = make_cases(spans, rows, attributes)
        rates: dict[str, list[float]] = {name: [] for name in cases}
        ratios: dict[str, list[float]] = {name: [] for name in cases}
        for round_index in range(rounds):
            print(f"  {shape}: round {round_index + 1}/{rounds}", file=sys.stderr)
            round_rates = {}
            for name, case in cases.items():
                path = workdir / f"{shape}-{round_index}-{name.replace(' ', '_')}.db"
                round_rates[name] = count / case(path)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            for name, rate in round_rates.items():
                rates[name].append(rate)
                ratios[name].append(rate / round_rates["plain insert"])
        print(f"\n{shape} spans ({count:,} a case, median of {rounds} rounds)")
        print(f"  {'case':<24} {'spans/s':>10} {'ratio':>7}")
        for name in cases:
            print(
                f"  {name:<24} {statistics.median(rates[name]):>10,.0f} "
                f"{statistics.median(ratios[name]):>7.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
