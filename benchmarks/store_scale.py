"""Store reads at scale: the CLI's read commands, timed in-process on stores of growing size.

Run from the repository root (no extra packages needed)::

    python benchmarks/store_scale.py                     # 100k and 1M spans, up to 30 minutes
    python benchmarks/store_scale.py --quick             # 10k and 100k spans, about 3 minutes
    python benchmarks/store_scale.py --keep /tmp/stores  # keep the stores: later runs reuse them

(On the schema version 2 store most of the 30 minutes is ``doctor`` and ``replay`` at 1M;
``--json FILE`` also writes the figures.)

Each store is built through the real ``SQLiteSpanExporter`` (batches of 512 finished SDK
spans): sessions of 10 traces of 10 spans (a root and 9 children), 15 attributes a span with
a ~2 KB ``input.value`` of prose-like text (seeded words, zlib ratio about 2.6) and a ~200
character ``output.value``, sessions spread over the last 30 days. Then one run of a real
``SessionTracker`` (5 steps, 2 LLM spans a step, a state snapshot a step, one sub-session) is
written to it: the session that ``show``, ``replay``, ``timeline`` and ``doctor ID`` read.
Building 1M spans takes about 3-6 minutes; ``--keep DIR`` caches stores by size
(``--rebuild`` forces a new one; a store of another schema version is rebuilt).

Each command (issue #9's list) runs through ``sessiontrace.cli._main.main`` in this process,
so interpreter start-up is excluded: one warm-up run, then the median of 5 runs (3 when the
warm-up took over 2 s). Targets are for 1M spans, each also within 1.5x of 100k. Bytes per
span is (database + ``-wal`` file) right after the exporter's shutdown, over the payload the
spans carry: ids as hex, name, JSON attributes, events and resource, 8 bytes a timestamp.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

try:
    import sessiontrace
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import sessiontrace

import sessiontrace.store
from sessiontrace.cli._main import main as cli
from sessiontrace.store import SQLiteSpanExporter
from sessiontrace.store._migrate import migrate_store

BATCH = 512
SPANS_PER_TRACE = 10
TRACES_PER_SESSION = 10
SPANS_PER_SESSION = SPANS_PER_TRACE * TRACES_PER_SESSION
DAY_NS = 86_400 * 10**9
SECOND_NS = 10**9
TARGETS: list[tuple[str, list[str], float]] = [  # label, argv (ID and FILE filled in), seconds
    ("sessions --limit 20", ["sessions", "--limit", "20"], 0.05),
    ("sessions", ["sessions"], 0.5),
    ("show ID", ["show", "ID"], 0.2),
    ("replay ID", ["replay", "ID"], 0.2),
    ("timeline ID --html FILE", ["timeline", "ID", "--html", "FILE"], 0.2),
    ("doctor ID", ["doctor", "ID"], 0.1),
    ("doctor", ["doctor"], 5.0),
]
GROWTH_TARGET = 1.5
BYTES_TARGET = 1.3
# Common English words, most frequent first; drawn with Zipf-like weights they compress with
# zlib about like prose (2.5-3x). Uniform or repeated text would flatter a compressing store.
WORDS = """the of and to a in is it you that he was for on are with as his they be at one have this
from or had by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long
make thing see him two has look more day could go come did number sound no most people my over know
water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
head stand own page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start might story saw
far sea draw left late run while press close night real life few north open seem together next
white children begin got walk example ease paper group always music those both mark often letter
until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main
enough plain""".split()  # noqa: SIM905 (a list literal would take four times the lines)


class Prose:
    """Slices of one seeded corpus of sentences, cut at word boundaries (fast per span)."""

    def __init__(self, rng: random.Random, size: int = 16_000_000) -> None:
        weights = list(itertools.accumulate(1 / (rank + 1) ** 1.3 for rank in range(len(WORDS))))
        parts, total = [], 0
        while total < size:
            words = rng.choices(WORDS, cum_weights=weights, k=rng.randint(6, 24))
            sentence = " ".join(words).capitalize() + rng.choice((". ", ". ", ", ", "? "))
            parts.append(sentence)
            total += len(sentence)
        self.text = "".join(parts)
        self.rng = rng

    def take(self, length: int) -> str:
        start = self.text.index(" ", self.rng.randrange(len(self.text) - 2 * length)) + 1
        return self.text[start : start + length]


def payload_bytes(span: ReadableSpan, resource_bytes: int) -> int:
    """What the span carries: ids as hex, name, JSON attributes and events, resource, times."""
    context, parent = span.context, span.parent
    events = [[e.name, e.timestamp, dict(e.attributes or {})] for e in span.events]
    parts = (
        f"{context.trace_id:032x}{context.span_id:016x}" if context else "",
        f"{parent.span_id:016x}" if parent else "",
        span.name,
        json.dumps(dict(span.attributes or {}), ensure_ascii=False),
        json.dumps(events, ensure_ascii=False),
    )
    return len("".join(parts).encode("utf-8")) + resource_bytes + 16


def make_session(tracer: trace.Tracer, prose: Prose, index: int, start_ns: int) -> None:
    """One session: 10 traces of a root and 9 children, each span with 15 attributes."""
    rng = prose.rng
    session_id = f"bench-{index:06d}"
    common: dict[str, Any] = {
        "session.id": session_id,
        "gen_ai.conversation.id": session_id,
        "user.id": f"user-{index % 97}@example.com",
        "tag.tags": ("bench", rng.choice(("web", "api", "mobile"))),
        "metadata": json.dumps({"tenant": f"acme-{index % 13}", "plan": "pro"}),
        "llm.model_name": "gpt-4o-mini",
        "llm.invocation_parameters": '{"temperature": 0.2}',
        "http.status_code": 200,
    }

    def attributes(kind: str) -> dict[str, Any]:
        prompt, answer = prose.take(2048), prose.take(200)
        return {
            **common,
            "openinference.span.kind": kind,
            "input.value": prompt,
            "output.value": answer,
            "llm.token_count.prompt": len(prompt) // 4,
            "llm.token_count.completion": len(answer) // 4,
            "llm.token_count.total": len(prompt) // 4 + len(answer) // 4,
            "retry.count": rng.choice((0, 0, 0, 1)),
        }

    for turn in range(TRACES_PER_SESSION):
        root_start = start_ns + turn * 20 * SECOND_NS
        root = tracer.start_span(
            "agent.turn", attributes=attributes("AGENT"), start_time=root_start
        )
        parent = trace.set_span_in_context(root)
        for child in range(1, SPANS_PER_TRACE):
            name, kind = ("ChatCompletion", "LLM") if child % 3 else ("tool.search", "TOOL")
            begin = root_start + child * SECOND_NS
            span = tracer.start_span(name, parent, attributes=attributes(kind), start_time=begin)
            span.end(end_time=begin + rng.randint(200, 900) * 10**6)
        root.end(end_time=root_start + SPANS_PER_TRACE * SECOND_NS)


def tracker_run(path: str, session_id: str) -> None:
    """One agent run with the real SessionTracker, written to the store at ``path``."""
    provider = sessiontrace.configure(service_name="store-scale", store=True, store_path=path)
    tracer = trace.get_tracer("store_scale.llm")
    prose = Prose(random.Random(session_id), size=100_000)

    def llm(name: str) -> None:  # the attributes an instrumentation sets (examples/fake_llm.py)
        attributes: dict[str, Any] = {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "input.value": f"{name}: {prose.take(2000)}",
            "output.value": prose.take(200),
            "llm.token_count.prompt": 500,
            "llm.token_count.completion": 50,
            "llm.token_count.total": 550,
        }
        with tracer.start_as_current_span("ChatCompletion", attributes=attributes):
            pass

    tracker = sessiontrace.SessionTracker(
        session_id, user_id="ada@example.com", name="bench-agent", tags=["bench", "agent"]
    )
    with tracker:
        for index, name in enumerate(("plan", "search", "delegate", "book", "summarise")):
            with tracker.step(name):
                llm(f"{name} 1")
                llm(f"{name} 2")
                tracker.set_state(name, {"done": True, "note": prose.take(100)})
                if name == "delegate":
                    with (
                        tracker.child("researcher", session_id=f"{session_id}-researcher") as child,
                        child.step("research"),
                    ):
                        llm("research")
                        child.set_state("found", index)
    provider.shutdown()


def build(path: Path, spans: int, session_id: str) -> dict[str, Any]:
    """Write ``spans`` spans through the exporter, then the tracker run; returns the figures."""
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), path.with_suffix(".json")):
        stale.unlink(missing_ok=True)  # a build that fails part-way is never reused
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "store-scale"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("store_scale")
    resource_bytes = len(json.dumps(dict(provider.resource.attributes)).encode("utf-8"))
    prose = Prose(random.Random(spans))
    exporter = SQLiteSpanExporter(path)
    sessions = spans // SPANS_PER_SESSION
    now = time.time_ns()
    first, spacing = now - 30 * DAY_NS, (30 * DAY_NS - 3600 * SECOND_NS) // sessions
    pending: list[ReadableSpan] = []
    written = payload = 0
    step, next_report, started = max(spans // 20, 1), max(spans // 20, 1), time.perf_counter()
    print(f"building {path} ({spans:,} spans)", file=sys.stderr)
    for index in range(sessions):
        make_session(tracer, prose, index, first + index * spacing)
        finished = memory.get_finished_spans()
        memory.clear()
        payload += sum(payload_bytes(span, resource_bytes) for span in finished)
        pending.extend(finished)
        while len(pending) >= BATCH or (index == sessions - 1 and pending):
            batch, pending = pending[:BATCH], pending[BATCH:]
            if exporter.export(batch).name != "SUCCESS":
                raise SystemExit(f"the exporter failed a batch at {written:,} spans")
            written += len(batch)
        if written >= next_report:
            rate = written / (time.perf_counter() - started)
            print(f"  {written:>9,} spans ({written / spans:4.0%}), {rate:,.0f}/s", file=sys.stderr)
            next_report += step
    exporter.shutdown()
    provider.shutdown()
    disk = sum(os.path.getsize(f) for f in (path, f"{path}-wal") if os.path.exists(f))
    # configure() installs a global provider once per process; a child process of its own
    # lets every build configure afresh, and leaves no writer open on the store it measured.
    process = multiprocessing.get_context("spawn").Process(
        target=tracker_run, args=(str(path), session_id)
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"the tracker run failed (exit code {process.exitcode})")
    figures: dict[str, Any] = {"spans": written, "payload_bytes": payload, "disk_bytes": disk}
    figures.update({"session_id": session_id, "schema_version": schema_version()})
    path.with_suffix(".json").write_text(json.dumps(figures))
    print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return figures


def schema_version() -> object:
    return getattr(sessiontrace.store, "SCHEMA_VERSION", None)


def cached(path: Path) -> dict[str, Any] | None:
    """The figures of a store built earlier with the current schema, or None."""
    try:
        figures: dict[str, Any] = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    current = path.exists() and figures.get("schema_version") == schema_version()
    return figures if current else None


def store_for(description: str, prefix: str, tracked: str) -> tuple[Path, int]:
    """The store a benchmark of the readers runs on, from its ``--spans`` and ``--keep``
    arguments: built, or reused with its summaries brought up to date; and its span count."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spans", type=int, default=1_000_000, help="store size (1,000,000)")
    parser.add_argument("--keep", type=Path, help="a directory to keep and reuse the store in")
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix=prefix))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"store-{args.spans}.db"
    if cached(path) is None:
        build(path, args.spans, tracked)
    # A store kept from an earlier build gets its summary tables rebuilt when their shape
    # changed since (its spans stay as they are).
    migrate_store(path, lambda done, total: print(f"  summaries: {done:,} of {total:,} spans"))
    return path, args.spans


def run_once(argv: list[str]) -> tuple[float, int, str]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = cli(argv, stdout=out, stderr=err)
    return time.perf_counter() - started, code, err.getvalue()


def measure(argv: list[str]) -> tuple[float, str | None]:
    """Median seconds of ``argv`` after a warm-up, and a failure note (None when it worked)."""
    warm, code, err = run_once(argv)
    failure = None
    # doctor exits 1 when it finds problems; an unknown session is 1 too, with an error line.
    if code != 0 and not (code == 1 and argv[2] == "doctor" and "error:" not in err):
        failure = f"exit {code}"
        print(f"warning: `{' '.join(argv)}` exited {code}:\n{err}", file=sys.stderr)
    times = [run_once(argv)[0] for _ in range(3 if warm > 2 else 5)]
    return statistics.median(times), failure


def label(size: int) -> str:
    return f"{size // 10**6}M" if size % 10**6 == 0 else f"{size / 1000:g}k"


def shown(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def report(sizes: list[int], results: dict[str, Any]) -> None:
    where = Path(sessiontrace.__file__).parent
    print(f"sessiontrace at {where}, schema version {results['schema_version']}")
    ids = ", ".join(results["stores"][str(size)]["session_id"] for size in sizes)
    print(f"ID (the tracker run: 5 steps, one sub-session): {ids}\n")
    labels = [label(size) for size in sizes]
    judged = "" if sizes[-1] == 1_000_000 else "*"
    growth_name = f"growth ({labels[-1]}/{labels[0]})"
    head = ["command", *labels, growth_name, "target", "met?"]
    rows = []
    for name, _, target in TARGETS:
        times = [results["commands"][name][str(size)] for size in sizes]
        growth = times[-1] / times[0] if times[0] else float("inf")
        failed = [results["failures"].get(f"{name} @ {size}") for size in sizes]
        met = "yes" if times[-1] <= target and growth <= GROWTH_TARGET else "NO"
        met = next((f"FAILED ({note})" for note in failed if note), met + judged)
        rows.append([name, *map(shown, times), f"{growth:.2f}x", f"<= {shown(target)}", met])
    widths = [max(len(row[col]) for row in [head, *rows]) for col in range(len(head))]
    for row in [head, ["-" * width for width in widths], *rows]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if judged:
        print(f"* judged at {labels[-1]} spans; the targets are for 1M (growth vs 100k)")
    for size, text in zip(sizes, labels, strict=True):
        store = results["stores"][str(size)]
        disk, payload = (store[key] / store["spans"] for key in ("disk_bytes", "payload_bytes"))
        met = "yes" if disk / payload <= BYTES_TARGET else "NO"
        print(
            f"bytes/span at {text}: db+wal {disk:,.0f}, payload {payload:,.0f}, ratio "
            f"{disk / payload:.2f}x (target <= {BYTES_TARGET}x: {met})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="spans per store, a-comma list")
    parser.add_argument("--quick", action="store_true", help="stores of 10,000 and 100,000 spans")
    parser.add_argument("--keep", metavar="DIR", help="build stores here and reuse them later")
    parser.add_argument("--rebuild", action="store_true", help="build even a store kept in DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    try:
        sizes = sorted(
            {int(text) for text in ("10000,100000" if options.quick else options.sizes).split(",")}
        )
    except ValueError:
        parser.error("--sizes takes whole numbers separated by commas, e.g. 100000,1000000")
    if any(size <= 0 or size % SPANS_PER_SESSION for size in sizes):
        parser.error(f"each size must be a positive multiple of {SPANS_PER_SESSION} spans")
    temporary = None if options.keep else tempfile.TemporaryDirectory(prefix="store-scale-")
    workdir = Path(options.keep or temporary.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"schema_version": schema_version(), "stores": {}, "commands": {}}
    results.update({"failures": {}, "targets": {name: target for name, _, target in TARGETS}})
    try:
        for size in sizes:
            path = workdir / f"store-{size}.db"
            figures = None if options.rebuild else cached(path)
            if figures is None:
                figures = build(path, size, f"bench-agent-{size}")
            else:
                print(f"reusing {path} ({figures['spans']:,} spans)", file=sys.stderr)
            print(f"target session at {label(size)}: {figures['session_id']}", file=sys.stderr)
            results["stores"][str(size)] = figures
            for name, template, _ in TARGETS:
                fill = {"ID": figures["session_id"], "FILE": str(workdir / "timeline.html")}
                command = ["--store", str(path), *(fill.get(arg, arg) for arg in template)]
                seconds, failure = measure(command)
                results["commands"].setdefault(name, {})[str(size)] = seconds
                if failure:
                    results["failures"][f"{name} @ {size}"] = failure
                print(f"  {label(size):>5} {name:<24} {shown(seconds)}", file=sys.stderr)
    finally:
        if temporary is not None:
            temporary.cleanup()
    print()
    report(sizes, results)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
