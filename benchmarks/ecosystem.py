"""What the agent-ecosystem paths of issue #13 cost, each against its baseline in the same run.

Run from the repository root::

    python benchmarks/ecosystem.py              # 7 rounds
    python benchmarks/ecosystem.py --rounds 3   # quicker

1. **Inbound baggage** (a gRPC or messaging server's ``extract``): OpenTelemetry's
   ``tracecontext,baggage`` against the same with ``sessiontrace`` added, trusting and not,
   on a carrier with a ``traceparent`` and a session and user in ``baggage``.
2. **GenAI agent keys**: ``observe(kind="tool")`` (which writes ``gen_ai.operation.name`` and
   ``gen_ai.tool.name``) against ``observe(kind="chain")`` (which writes neither), each a
   decorated call making one stamped span into an in-memory exporter.
3. **MCP**: an in-process ``call_tool`` (client and server in one event loop, the real ``mcp``
   SDK) with ``integrations.mcp`` instrumented against without.

Variants are interleaved round by round so the machine's noise hits them alike; figures are
medians of the rounds, per operation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from opentelemetry import trace  # noqa: E402
from opentelemetry.baggage.propagation import W3CBaggagePropagator  # noqa: E402
from opentelemetry.propagators.composite import CompositePropagator  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import (  # noqa: E402
    TraceContextTextMapPropagator,
)

import sessiontrace  # noqa: E402

CARRIER = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "baggage": "session.id=chat-42,user.id=ada",
}


def per_call(operation: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``operation``, over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        operation()
    return (time.perf_counter() - start) / calls


def rounds_of(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The median of ``rounds`` interleaved measurements of each variant."""
    seen: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        print(f"  round {index + 1}/{rounds}", file=sys.stderr, flush=True)
        for name, measure in variants.items():
            seen[name].append(measure())
    return {name: statistics.median(values) for name, values in seen.items()}


def report(title: str, figures: dict[str, float], baseline: str) -> None:
    print(f"\n{title}")
    for name, seconds in figures.items():
        ratio = seconds / figures[baseline]
        print(f"  {name:<44} {seconds * 1e6:9.1f} µs   {ratio:5.2f}x")


def inbound_baggage(rounds: int) -> None:
    calls = 5000
    otel = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    def with_sessiontrace(trust: str) -> CompositePropagator:
        ours = sessiontrace.SessionBaggagePropagator(trust)
        return CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator(), ours])

    trusting, refusing = with_sessiontrace("all"), with_sessiontrace("none")
    figures = rounds_of(
        {
            "tracecontext,baggage (OpenTelemetry)": lambda: per_call(
                lambda: otel.extract(CARRIER), calls
            ),
            "+ sessiontrace, trust all": lambda: per_call(
                lambda: trusting.extract(CARRIER), calls
            ),
            "+ sessiontrace, trust none": lambda: per_call(
                lambda: refusing.extract(CARRIER), calls
            ),
        },
        rounds,
    )
    report("1. inbound extract, per request", figures, "tracecontext,baggage (OpenTelemetry)")


def genai_agent_keys(rounds: int) -> None:
    calls = 3000
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(sessiontrace.SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # observe() makes its spans with the global tracer

    @sessiontrace.observe(kind="tool")
    def tool() -> int:
        return 1

    @sessiontrace.observe(kind="chain")
    def chain() -> int:
        return 1

    def measure(function: Callable[[], int]) -> float:
        with sessiontrace.using_session("chat-42"):
            seconds = per_call(function, calls)
        exporter.clear()
        return seconds

    figures = rounds_of(
        {
            "observe(kind='chain')": lambda: measure(chain),
            "observe(kind='tool')": lambda: measure(tool),
        },
        rounds,
    )
    report("2. a decorated call and its span", figures, "observe(kind='chain')")


def mcp_call(rounds: int) -> None:
    import anyio
    from mcp import Client

    from helpers import mcp_server
    from sessiontrace.integrations import mcp as mcp_sessions

    calls = 50

    async def calls_of() -> float:
        async with Client(mcp_server.build(), mode="legacy") as client:
            await client.call_tool("whoami", {})  # warm
            start = time.perf_counter()
            for _ in range(calls):
                await client.call_tool("whoami", {})
            return (time.perf_counter() - start) / calls

    def measure(instrumented: bool) -> float:
        if instrumented:
            mcp_sessions.instrument()
        try:
            with sessiontrace.using_session("chat-42"):
                return anyio.run(calls_of)
        finally:
            mcp_sessions.uninstrument()

    figures = rounds_of(
        {"call_tool": lambda: measure(False), "call_tool, instrumented": lambda: measure(True)},
        rounds,
    )
    report("3. MCP call_tool in one process (client and server)", figures, "call_tool")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    print("measuring inbound baggage ...", file=sys.stderr)
    inbound_baggage(rounds)
    print("measuring GenAI agent keys ...", file=sys.stderr)
    genai_agent_keys(rounds)
    print("measuring MCP ...", file=sys.stderr)
    mcp_call(rounds)


if __name__ == "__main__":
    main()
