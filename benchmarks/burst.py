"""Bursts into the local store with configure() defaults: is every span stored, or counted?

Run from the repository root::

    python benchmarks/burst.py                      # 20,000 spans, then 2 processes x 5,000
    python benchmarks/burst.py --spans 1000000      # a long burst (minutes)
    python benchmarks/burst.py --processes 4 --spans 50000

Each producer is a fresh interpreter that calls ``sessiontrace.configure()`` (the local store,
default queue and policies) and ends spans as fast as it can, one session per 100 spans.
Afterwards the store is read: spans stored, spans recorded as dropped (``losses``), and the
time from the first span to the interpreter's exit (the producers are slowed to the store's
pace when its queue is full: the store waits for room rather than dropping).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import closing
from pathlib import Path

PRODUCER = """
    import sys, time
    import sessiontrace
    from opentelemetry import trace
    sessiontrace.configure()
    tracer = trace.get_tracer("burst")
    count, name = int(sys.argv[1]), sys.argv[2]
    started = time.perf_counter()
    for index in range(count):
        if index % 100 == 0:
            scope = sessiontrace.using_session(f"{name}-{index // 100}")
            scope.__enter__()
        with tracer.start_as_current_span("span", attributes={"index": index}):
            pass
        if index % 100 == 99:
            scope.__exit__(None, None, None)
        if index and index % 100_000 == 0:
            print(f"    {name}: {index:,} spans made", file=sys.stderr, flush=True)
    print(f"{time.perf_counter() - started:.3f}", flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=None, help="spans per producer")
    parser.add_argument("--processes", type=int, default=None, help="producers at once")
    options = parser.parse_args()
    runs = (
        [(options.processes or 1, options.spans or 20_000)]
        if options.spans or options.processes
        else [(1, 20_000), (2, 5_000)]
    )
    root = Path(__file__).resolve().parent.parent
    for processes, spans in runs:
        db = Path(tempfile.mkdtemp(prefix="sessiontrace-burst-")) / "sessions.db"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        environment["SESSIONTRACE_STORE_PATH"] = str(db)
        print(f"{processes} x {spans:,} spans into {db}", file=sys.stderr)
        started = time.perf_counter()
        producers = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(PRODUCER), str(spans), f"p{index}"],
                env=environment,
                cwd=root,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(processes)
        ]
        making = [float(producer.communicate()[0] or "nan") for producer in producers]
        elapsed = time.perf_counter() - started
        with closing(sqlite3.connect(db)) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
            dropped = conn.execute(
                "SELECT COALESCE(SUM(count), 0) FROM losses WHERE kind = 'dropped'"
            ).fetchone()[0]
        made = processes * spans
        print(
            f"{processes} x {spans:,}: stored {stored:,} of {made:,} "
            f"({100 * stored / made:.1f}%), recorded dropped {dropped:,}; "
            f"producing took {max(making):.1f} s, until exit {elapsed:.1f} s "
            f"({made / elapsed:,.0f} spans/s end to end)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
