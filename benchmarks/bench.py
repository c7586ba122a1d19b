"""Benchmarks: what sessiontrace adds to a span and to a block, next to the libraries users know.

Run from the repository root (see benchmarks/README.md)::

    python benchmarks/bench.py            # full run, about 2-3 minutes on 2 cores
    python benchmarks/bench.py --quick    # a rough look in a few seconds

Section A times one span (``tracer.start_span("bench").end()``) on an SDK ``TracerProvider``
whose spans go through ``SimpleSpanProcessor`` to an exporter that does nothing; its baseline
is a bare span on such a provider. Section B times one ``with <block>: pass``, building the
block included, as users write it; its baseline is one ``attach(set_value(key, v))`` plus
``detach(token)``.

Method: B is measured first, then A (see block_section). A section's cases run in interleaved
rounds (round 1 of every case, then round 2, ...), so drift hits every case alike. In a round
a case runs several timed batches of about 5 ms (``time.perf_counter_ns``, gc disabled, each
in a fresh copy of the context so no case leaks context into the next) and keeps the fastest.
A figure in ns is the median over rounds of those; a ratio is the median over rounds of the
case's figure divided by its section baseline's figure in the same round. An anchor library
that is not installed gets a row that says so.
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Tracer

try:
    import sessiontrace
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import sessiontrace

NOT_INSTALLED = "not installed (pip install -r benchmarks/requirements.txt)"

SESSION_ID = "chat-42"
USER_ID = "ada"
TAGS = ["beta", "web"]
METADATA_2 = {"tenant": "acme", "plan": "pro"}
METADATA_32 = {**METADATA_2, **{f"k{index:02d}": f"value-{index}" for index in range(30)}}
DEPTHS = (1, 5, 10)

Run = Callable[[int], int]  # run(n) does n operations and returns the elapsed nanoseconds
Blocks = Callable[[], Iterable[AbstractContextManager[Any]]]


@dataclass
class Case:
    """One row of the table: a loop to time, or a note saying why there is none."""

    name: str
    run: Run | None
    note: str = ""
    attributes: int | None = None  # attributes one span ends up with (section A)
    iterations: int = 0  # operations per timed batch
    batches: int = 0  # timed batches per round
    samples: list[float] = field(default_factory=list)  # ns per operation, one per round
    ratios: list[float] = field(default_factory=list)  # samples / baseline, one per round

    @property
    def ns(self) -> float:
        return statistics.median(self.samples)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> float:
        """The interquartile range of the per-round ratios, as a fraction of their median."""
        if len(self.ratios) < 2:
            return 0.0
        low, _, high = statistics.quantiles(self.ratios, n=4)
        return (high - low) / self.ratio


# --- Providers and loops --------------------------------------------------------------------


class NoOpExporter(SpanExporter):
    """An exporter whose export does nothing and succeeds."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def provider_with(*processors: SpanProcessor, export: bool = True) -> TracerProvider:
    """A TracerProvider with ``processors``, then SimpleSpanProcessor -> NoOpExporter."""
    provider = TracerProvider(shutdown_on_exit=False)
    for processor in processors:
        provider.add_span_processor(processor)
    if export:
        provider.add_span_processor(SimpleSpanProcessor(NoOpExporter()))
    return provider


def no_blocks() -> list[AbstractContextManager[Any]]:
    return []


def span_loop(tracer: Tracer, blocks: Blocks, attributes: Any) -> Run:
    """Start and end one span per iteration, inside ``blocks`` entered once around the loop."""

    def run(n: int) -> int:
        with ExitStack() as stack:
            for block in blocks():
                stack.enter_context(block)
            start_span = tracer.start_span
            clock = time.perf_counter_ns
            if attributes is None:
                began = clock()
                for _ in range(n):
                    start_span("bench").end()
                return clock() - began
            began = clock()
            for _ in range(n):
                start_span("bench", attributes=attributes).end()
            return clock() - began

    return run


def probe_attributes(tracer: Tracer, blocks: Blocks, attributes: Any) -> dict[str, Any]:
    """The attributes a span gets in the setting :func:`span_loop` times, to check the case."""

    def probe() -> dict[str, Any]:
        with ExitStack() as stack:
            for block in blocks():
                stack.enter_context(block)
            span = tracer.start_span("bench", attributes=attributes)
            found = dict(span.attributes or {})  # type: ignore[attr-defined]
            span.end()
            return found

    return contextvars.copy_context().run(probe)


def span_case(
    name: str, tracer: Tracer, blocks: Blocks = no_blocks, attributes: Any = None
) -> Case:
    found = probe_attributes(tracer, blocks, attributes)
    return Case(name, span_loop(tracer, blocks, attributes), attributes=len(found))


def block_case(
    name: str, make_block: Callable[[], AbstractContextManager[Any]], outer: Blocks = no_blocks
) -> Case:
    """``with make_block(): pass`` per iteration, inside ``outer`` blocks entered once."""

    def run(n: int) -> int:
        with ExitStack() as stack:
            for block in outer():
                stack.enter_context(block)
            clock = time.perf_counter_ns
            began = clock()
            for _ in range(n):
                with make_block():
                    pass
            return clock() - began

    return Case(name, run)


def attach_detach_case(name: str) -> Case:
    key = otel_context.create_key("bench.baseline")

    def run(n: int) -> int:
        attach, detach, set_value = otel_context.attach, otel_context.detach, otel_context.set_value
        clock = time.perf_counter_ns
        began = clock()
        for _ in range(n):
            token = attach(set_value(key, "v"))
            detach(token)
        return clock() - began

    return Case(name, run)


def guarded(name: str, build: Callable[[], Case]) -> Case:
    """Build an anchor's case; a missing or unstartable anchor gets a row that says so."""
    try:
        return build()
    except ImportError:
        return Case(name, None, NOT_INSTALLED)
    except Exception as error:
        return Case(name, None, f"unavailable: {type(error).__name__}: {error}")


# --- sessiontrace -------------------------------------------------------------------------


def sessiontrace_attributes(metadata: Mapping[str, Any]) -> AbstractContextManager[Any]:
    return sessiontrace.using_attributes(
        session_id=SESSION_ID, user_id=USER_ID, metadata=metadata, tags=TAGS
    )


def sessiontrace_outer(count: int) -> Blocks:
    """``count`` outer using_* blocks, cycling through the four kinds.

    Their values are overridden by, or already in, the 4 fields of the inner block, so a span
    inside stamps the same attributes at every depth.
    """
    kinds: list[Callable[[], AbstractContextManager[Any]]] = [
        lambda: sessiontrace.using_session("outer-session"),
        lambda: sessiontrace.using_user("outer-user"),
        lambda: sessiontrace.using_metadata({"tenant": "outer"}),
        lambda: sessiontrace.using_tags(TAGS[:1]),
    ]
    return lambda: [kinds[index % len(kinds)]() for index in range(count)]


def sessiontrace_blocks(depth: int, metadata: Mapping[str, Any]) -> Blocks:
    """``depth`` nested blocks: ``depth - 1`` outer ones, then using_attributes(4 fields)."""
    outer = sessiontrace_outer(depth - 1)
    return lambda: [*outer(), sessiontrace_attributes(metadata)]


def floor_attributes(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The four OpenInference attributes sessiontrace stamps, written out by hand."""
    return {
        "session.id": SESSION_ID,
        "user.id": USER_ID,
        "metadata": json.dumps(metadata),
        "tag.tags": tuple(TAGS),
    }


# --- Anchors ------------------------------------------------------------------------------


def baggage_span(name: str) -> Case:
    from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor

    tracer = provider_with(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS)).get_tracer("bench")

    class Baggage:
        def __enter__(self) -> None:
            ctx = baggage.set_baggage("session.id", SESSION_ID)
            ctx = baggage.set_baggage("user.id", USER_ID, ctx)
            ctx = baggage.set_baggage("metadata", json.dumps(METADATA_2), ctx)
            ctx = baggage.set_baggage("tag.tags", ",".join(TAGS), ctx)
            self.token = otel_context.attach(ctx)

        def __exit__(self, *exc_info: object) -> None:
            otel_context.detach(self.token)

    return span_case(name, tracer, lambda: [Baggage()])


def traceloop_span(name: str) -> Case:
    # Traceloop.init() would instrument every library it knows, replace the global provider
    # and start its own exporter; its documented standalone path is the default span
    # processor (a SimpleSpanProcessor whose on_start stamps association properties).
    from traceloop.sdk import Traceloop

    processor = Traceloop.get_default_span_processor(disable_batch=True, exporter=NoOpExporter())
    tracer = provider_with(processor, export=False).get_tracer("bench")

    class Associations:
        def __enter__(self) -> None:
            # Attaches with no token to undo; the loop's context copy is thrown away after.
            Traceloop.set_association_properties(
                {"session_id": SESSION_ID, "user_id": USER_ID, **METADATA_2}
            )

        def __exit__(self, *exc_info: object) -> None:
            pass

    return span_case(name, tracer, lambda: [Associations()])


_langfuse_clients: list[Any] = []  # kept for the whole run, as an application keeps its client


def langfuse_span(name: str) -> Case:
    # The client adds LangfuseSpanProcessor to the provider passed in; span_exporter replaces
    # its OTLP exporter, so no span leaves the process. The keys are placeholders and the
    # base URL is this machine's discard port: nothing in this benchmark calls the API.
    # Langfuse's export filter drops these spans at on_end (their scope is no LLM library's),
    # so its batch queue stays empty and the row is its stamping plus that filter.
    from langfuse import Langfuse, propagate_attributes

    provider = provider_with()
    client = Langfuse(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",
        base_url="http://127.0.0.1:9",
        tracer_provider=provider,
        span_exporter=NoOpExporter(),
    )
    _langfuse_clients.append(client)
    tracer = provider.get_tracer("bench")

    def blocks() -> list[AbstractContextManager[Any]]:
        return [
            propagate_attributes(
                session_id=SESSION_ID, user_id=USER_ID, metadata=METADATA_2, tags=TAGS
            )
        ]

    return span_case(name, tracer, blocks)


def openinference_span(name: str) -> Case:
    from openinference.instrumentation import OITracer, TraceConfig, using_attributes

    tracer = OITracer(provider_with().get_tracer("bench"), TraceConfig())

    def blocks() -> list[AbstractContextManager[Any]]:
        return [
            using_attributes(session_id=SESSION_ID, user_id=USER_ID, metadata=METADATA_2, tags=TAGS)
        ]

    return span_case(name, tracer, blocks)


def openinference_block(name: str, fields: int) -> Case:
    from openinference.instrumentation import using_attributes, using_session

    if fields == 1:
        return block_case(name, lambda: using_session(SESSION_ID))
    return block_case(
        name,
        lambda: using_attributes(
            session_id=SESSION_ID, user_id=USER_ID, metadata=METADATA_2, tags=TAGS
        ),
    )


def langfuse_block(name: str) -> Case:
    from langfuse import propagate_attributes

    return block_case(
        name,
        lambda: propagate_attributes(
            session_id=SESSION_ID, user_id=USER_ID, metadata=METADATA_2, tags=TAGS
        ),
    )


# --- The two sections ---------------------------------------------------------------------


@dataclass
class Section:
    title: str
    baseline: Case
    cases: list[Case]
    spans: bool = False  # section A: show how many attributes each span got


def block_section() -> Section:
    # Built and measured before section A makes any SessionSpanProcessor, as a program with
    # no spans yet would see them (frames build their span attributes when a span asks).
    baseline = attach_detach_case("attach(set_value(key, v)) + detach, 1 key (baseline)")
    session_scope = sessiontrace.using_session(SESSION_ID)
    cases = [
        block_case(
            'sessiontrace with using_session("s")', lambda: sessiontrace.using_session(SESSION_ID)
        ),
        block_case("sessiontrace same using_session scope re-entered", lambda: session_scope),
        block_case(
            "sessiontrace with using_attributes(4 fields)",
            lambda: sessiontrace_attributes(METADATA_2),
        ),
        block_case(
            "sessiontrace using_attributes(4 fields) inside 5 outer blocks",
            lambda: sessiontrace_attributes(METADATA_2),
            sessiontrace_outer(5),
        ),
    ]
    name = 'OpenInference with using_session("s")'
    cases.append(guarded(name, lambda: openinference_block(name, 1)))
    name = "OpenInference with using_attributes(4 fields)"
    cases.append(guarded(name, lambda: openinference_block(name, 4)))
    name = "Langfuse with propagate_attributes(4 fields)"
    cases.append(guarded(name, lambda: langfuse_block(name)))
    return Section("B. Block enter+exit, building the block included", baseline, cases)


def span_section() -> Section:
    base = provider_with().get_tracer("bench")
    baseline = span_case("bare SDK span (baseline)", base)
    cases: list[Case] = []
    for metadata in (METADATA_2, METADATA_32):
        cases.append(
            span_case(
                f"floor: 4 attributes= on start_span, metadata {len(metadata)} keys",
                base,
                attributes=floor_attributes(metadata),
            )
        )
    tracer = provider_with(
        sessiontrace.SessionSpanProcessor(dialects=["openinference"])
    ).get_tracer("bench")
    for metadata in (METADATA_2, METADATA_32):
        for depth in DEPTHS:
            name = f"sessiontrace openinference, depth {depth:>2}, metadata {len(metadata)} keys"
            blocks = sessiontrace_blocks(depth, metadata)
            found = probe_attributes(tracer, blocks, None)
            if found != floor_attributes(metadata):
                print(f"warning: {name} stamped {found}", file=sys.stderr)
            cases.append(span_case(name, tracer, blocks))
    for label, dialects in (("default (openinference+genai)", None), ('"all"', "all")):
        processor = sessiontrace.SessionSpanProcessor(dialects=dialects)
        cases.append(
            span_case(
                f"sessiontrace dialects {label}, depth 1, metadata 2 keys",
                provider_with(processor).get_tracer("bench"),
                sessiontrace_blocks(1, METADATA_2),
            )
        )
    anchors: list[tuple[str, Callable[[str], Case]]] = [
        ("BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS), 4 entries", baggage_span),
        ("Traceloop association properties, 4 values", traceloop_span),
        ("Langfuse propagate_attributes(4 fields)", langfuse_span),
        ("OpenInference OITracer in using_attributes(4 fields)", openinference_span),
    ]
    for name, build in anchors:
        cases.append(guarded(name, lambda name=name, build=build: build(name)))
    return Section("A. Span start+end", baseline, cases, spans=True)


# --- Timing -------------------------------------------------------------------------------


BATCH_NS = 5e6  # one timed batch: short enough for a burst of other load to spoil only a few


def timed(case: Case, n: int, batches: int = 1) -> float:
    """Nanoseconds per operation: the fastest of ``batches`` timed loops of ``n`` operations.

    Noise on a shared machine only ever adds time, so the fastest batch of a round is its
    best estimate; each batch runs in its own copy of the context.
    """
    assert case.run is not None
    gc.collect()
    gc.disable()
    try:
        return min(contextvars.copy_context().run(case.run, n) for _ in range(batches)) / n
    finally:
        gc.enable()


def calibrate(case: Case, target_ns: float) -> None:
    """Warm up, then size the batches (about BATCH_NS) and their number per round."""
    timed(case, 200)
    per_op = timed(case, 500)
    case.iterations = max(50, int(BATCH_NS / per_op))
    case.batches = max(3, round(target_ns / (case.iterations * per_op)))


def measure(section: Section, rounds: int, target_ns: float, started: float) -> None:
    """Time every case of ``section`` in ``rounds`` interleaved rounds."""
    runnable = [case for case in [section.baseline, *section.cases] if case.run is not None]
    for case in runnable:
        calibrate(case, target_ns)
    for round_number in range(1, rounds + 1):
        print(
            f"[{time.monotonic() - started:6.1f}s] {section.title[:1]} round "
            f"{round_number}/{rounds}: {len(runnable)} cases",
            file=sys.stderr,
            flush=True,
        )
        for case in runnable:
            case.samples.append(timed(case, case.iterations, case.batches))
            case.ratios.append(case.samples[-1] / section.baseline.samples[-1])


# --- Report -------------------------------------------------------------------------------


def print_section(section: Section) -> None:
    span = section.spans
    rows = [section.baseline, *section.cases]
    width = max(len(case.name) for case in rows)
    print(f"\n{section.title}")
    header = f"  {'case':<{width}} {'ns/op':>9} {'ratio':>6} {'spread':>7}"
    print(header + ("  attrs" if span else ""))
    for case in rows:
        if case.run is None:
            print(f"  {case.name:<{width}} {case.note}")
            continue
        line = f"  {case.name:<{width}} {case.ns:>9.0f} {case.ratio:>6.2f} {case.spread:>6.0%}"
        if span:
            line += f"  {case.attributes:>5}"
        print(line)


def find(section: Section, prefix: str) -> Case | None:
    for case in section.cases:
        if case.name.startswith(prefix) and case.run is not None:
            return case
    return None


def verdict(passed: bool, text: str) -> None:
    print(f"{'PASS' if passed else 'FAIL'}  {text}")


def print_targets(spans: Section, blocks: Section) -> None:
    print("\nTargets")
    for metadata in (METADATA_2, METADATA_32):
        keys = len(metadata)
        floor = find(spans, f"floor: 4 attributes= on start_span, metadata {keys} keys")
        for depth in DEPTHS:
            ours = find(
                spans, f"sessiontrace openinference, depth {depth:>2}, metadata {keys} keys"
            )
            assert floor is not None and ours is not None
            limit = floor.ratio * 1.05
            verdict(
                ours.ratio <= limit,
                f"span, openinference, depth {depth}, metadata {keys} keys: {ours.ratio:.2f} "
                f"within 5% of the floor {floor.ratio:.2f} (limit {limit:.2f})",
            )
    default = find(spans, "sessiontrace dialects default")
    bag = find(spans, "BaggageSpanProcessor")
    if default is not None and bag is not None:
        verdict(
            default.ratio < bag.ratio,
            f"span, default dialects: {default.ratio:.2f} below BaggageSpanProcessor "
            f"{bag.ratio:.2f}",
        )
    else:
        print(f"SKIP  span, default dialects below BaggageSpanProcessor: {NOT_INSTALLED}")
    session = find(blocks, 'sessiontrace with using_session("s")')
    assert session is not None
    verdict(
        session.ratio <= 1.5,
        f'block, with using_session("s"): {session.ns / 1000:.2f} us = {session.ratio:.2f}x '
        f"the baseline {blocks.baseline.ns / 1000:.2f} us (limit 1.50x, issue #10)",
    )
    ours = find(blocks, "sessiontrace with using_attributes(4 fields)")
    theirs = find(blocks, "OpenInference with using_attributes(4 fields)")
    assert ours is not None
    if theirs is not None:
        share = statistics.median(a / b for a, b in zip(ours.samples, theirs.samples, strict=True))
        verdict(
            share <= 0.5,
            f"block, with using_attributes(4 fields): {ours.ns / 1000:.2f} us = {share:.2f} of "
            f"OpenInference's {theirs.ns / 1000:.2f} us (limit 0.50, issue #10)",
        )
    else:
        print(f"SKIP  block, using_attributes at most half of OpenInference's: {NOT_INSTALLED}")


def version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds: a rough look")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 11, quick 3)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 11)
    target_ns = 20e6 if args.quick else 400e6  # time one round of one case aims at
    started = time.monotonic()

    print("B. building the block cases", file=sys.stderr, flush=True)
    blocks = block_section()
    measure(blocks, rounds, target_ns, started)
    print(
        "A. building the span cases (importing the anchor libraries)", file=sys.stderr, flush=True
    )
    spans = span_section()
    measure(spans, rounds, target_ns, started)
    sections = [spans, blocks]

    packages = ["opentelemetry-sdk", "sessiontrace", "opentelemetry-processor-baggage"]
    packages += ["traceloop-sdk", "langfuse", "openinference-instrumentation"]
    print(
        f"sessiontrace benchmarks: Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{rounds} rounds{' (quick)' if args.quick else ''}; per round the fastest of its "
        "~5 ms batches, then the median over rounds"
    )
    print("  " + ", ".join(f"{name} {version(name)}" for name in packages))
    for section in sections:
        print_section(section)
    print(
        "\nratio: to the section's baseline in the same round; spread: interquartile range of "
        "the per-round ratios / their median; attrs: attributes on the finished span"
    )
    print_targets(spans, blocks)
    print(f"done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
