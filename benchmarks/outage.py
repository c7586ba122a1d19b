"""Soak: an OTLP backend outage in the middle of a steady stream of spans; what arrives, and exit.

The issue's scenario: 90 s at 50 spans/s, the receiver down from 15 s to 75 s (a sixth of the
run up at each end), either refusing connections or hanging (accepting and never answering).
Spans go through a BatchSpanProcessor to the durable spool (``--exporter durable``, default) or
to the plain OTLP/HTTP exporter (``--exporter otlp``, the behaviour before the spool). At the
end it prints spans made, delivered, lost and duplicated, how long the final shutdown took with
the backend back up, and how long a real interpreter exit takes with the backend down.

    python benchmarks/outage.py --mode refused
    python benchmarks/outage.py --mode hanging --seconds 30 --exporter otlp
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from helpers.flaky_receiver import FlakyReceiver
from sessiontrace.export._losses import LEDGER
from sessiontrace.export._senders import HttpSender
from sessiontrace.export._spool import SpoolingExporter

_EXIT_CHILD = textwrap.dedent(
    """
    import sys
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from sessiontrace.export._senders import HttpSender
    from sessiontrace.export._spool import SpoolingExporter

    endpoint, kind, spool = sys.argv[1], sys.argv[2], sys.argv[3]
    exporter = (SpoolingExporter(HttpSender(endpoint), path=spool) if kind == "durable"
                else OTLPSpanExporter(endpoint=endpoint))
    provider = TracerProvider()  # shutdown_on_exit: the SDK shuts it down at interpreter exit
    provider.add_span_processor(BatchSpanProcessor(exporter))
    for i in range(200):
        provider.get_tracer("exit").start_span(f"exit-{i}").end()
    print("made", flush=True)
    """
)


def make_exporter(kind: str, endpoint: str, spool: Path) -> SpanExporter:
    if kind == "durable":
        return SpoolingExporter(HttpSender(endpoint), path=spool)
    return OTLPSpanExporter(endpoint=endpoint)


def interpreter_exit_s(backend: FlakyReceiver, kind: str, spool: Path) -> float:
    """Seconds from the last span to the end of a real process, with the backend down."""
    child = subprocess.Popen(
        [sys.executable, "-c", _EXIT_CHILD, backend.traces_endpoint, kind, str(spool)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.readline()
    started = time.monotonic()
    child.wait()
    child.stdout.close()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["refused", "hanging"], required=True)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--rate", type=float, default=50.0, help="spans per second")
    parser.add_argument("--exporter", choices=["durable", "otlp"], default="durable")
    args = parser.parse_args(argv)

    down_at, up_at = args.seconds / 6, args.seconds * 5 / 6
    work = Path(tempfile.mkdtemp(prefix="outage-"))
    with FlakyReceiver() as backend:
        exporter = make_exporter(args.exporter, backend.traces_endpoint, work / "spool.db")
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("outage")
        print(
            f"{args.exporter} exporter, backend {args.mode} from {down_at:.0f}s to {up_at:.0f}s "
            f"of {args.seconds:.0f}s at {args.rate:.0f} spans/s"
        )
        start = time.monotonic()
        made, down, up, last_report = 0, False, False, 0.0
        while (now := time.monotonic() - start) < args.seconds:
            if not down and now >= down_at:
                backend.refuse() if args.mode == "refused" else backend.hang()
                down = True
                print(f"{now:5.1f}s  backend {args.mode}")
            if not up and now >= up_at:
                backend.up()
                up = True
                print(f"{now:5.1f}s  backend up")
            while made < now * args.rate:
                tracer.start_span(f"span-{made:06d}").end()
                made += 1
            if now - last_report >= 5:
                last_report = now
                delivered = len({span.name for span in backend.receiver.spans()})
                spooled = ""
                if isinstance(exporter, SpoolingExporter):
                    pending = exporter.pending()
                    spooled = f", spooled {pending[1] if pending else '?'}"
                print(f"{now:5.1f}s  made {made}, delivered {delivered}{spooled}")
            time.sleep(0.01)
        print(f"{args.seconds:5.1f}s  stopping: shutdown with the backend up")
        began = time.monotonic()
        provider.shutdown()
        shutdown_s = time.monotonic() - began
        time.sleep(0.5)  # replies in flight land
        names = [span.name for span in backend.receiver.spans()]
        delivered = len(set(names))
        duplicates = len(names) - delivered
        counted = sum(
            count for (_, _, where), count in LEDGER.totals().items()
            if where.endswith(backend.traces_endpoint)
        )  # fmt: skip
        left = exporter.pending() if isinstance(exporter, SpoolingExporter) else None
        backend.refuse() if args.mode == "refused" else backend.hang()
        exit_s = interpreter_exit_s(backend, args.exporter, work / "exit-spool.db")
    print()
    print(f"spans made          {made}")
    print(f"delivered (unique)  {delivered}")
    print(f"lost                {made - delivered}  (counted in the loss ledger: {counted})")
    print(f"duplicates          {duplicates}")
    if left is not None:
        print(f"left in the spool   {left[1] if left else '?'} spans")
    print(f"final shutdown      {shutdown_s:.2f}s (backend up)")
    print(f"interpreter exit    {exit_s:.2f}s (backend {args.mode}, 200 spans pending)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
