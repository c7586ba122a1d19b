"""The export queue and the loss ledger: nothing is dropped without being counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers.otlp_receiver import OTLPHttpReceiver
from sessiontrace.export._deliver import ExportEach
from sessiontrace.export._losses import LEDGER, LossLedger
from sessiontrace.export._queue import ExportQueue


@pytest.fixture(autouse=True)
def fresh_ledger():
    LEDGER.reset()
    yield
    LEDGER.reset()


class Gate(SpanExporter):
    """An exporter that holds every export until the test opens the gate."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.exported: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.opened.wait(30)
        self.exported.extend(span.name for span in spans)
        return SpanExportResult.SUCCESS


class Failing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


class Raising(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("backend went away")


def provider_with(processor) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider


def make_spans(provider: TracerProvider, count: int, prefix: str = "s") -> None:
    tracer = provider.get_tracer("queue-tests")
    for index in range(count):
        tracer.start_span(f"{prefix}{index}").end()


def test_a_burst_larger_than_the_queue_is_delivered_whole_when_blocking():
    exporter = InMemorySpanExporter()
    queue = ExportQueue(exporter, destination="memory", max_queue_size=64, on_full="block")
    provider = provider_with(queue)
    make_spans(provider, 5_000)
    provider.shutdown()
    assert len(exporter.get_finished_spans()) == 5_000
    assert LEDGER.totals() == {}


def test_a_full_dropping_queue_counts_every_span_it_drops():
    gate = Gate()
    queue = ExportQueue(
        gate, destination="otlp test", max_queue_size=100, max_batch_size=10, on_full="drop"
    )
    provider = provider_with(queue)
    make_spans(provider, 1_000)
    gate.opened.set()
    provider.shutdown()
    dropped = LEDGER.totals().get(("dropped", "queue-full", "otlp test"), 0)
    assert dropped > 0
    assert len(gate.exported) + dropped == 1_000
    (loss,) = [held for held in LEDGER.take_pending() if held.destination == "otlp test"]
    assert "SESSIONTRACE_QUEUE_SIZE" in loss.message


def test_a_stuck_blocking_exporter_stops_holding_the_application_and_counts():
    gate = Gate()
    queue = ExportQueue(
        gate,
        destination="store",
        max_queue_size=20,
        max_batch_size=5,
        on_full="block",
        block_timeout_s=0.2,
        shutdown_timeout_s=0.5,
    )
    provider = provider_with(queue)
    make_spans(provider, 200)  # returns: after one timed-out wait the queue drops
    dropped = LEDGER.totals()[("dropped", "queue-full", "store")]
    gate.opened.set()
    provider.shutdown()
    assert len(gate.exported) + dropped == 200


@pytest.mark.parametrize("exporter", [Failing(), Raising()], ids=["failure", "exception"])
def test_failed_exports_are_counted_per_destination(exporter, caplog):
    queue = ExportQueue(exporter, destination="otlp http://backend", max_batch_size=7)
    provider = provider_with(queue)
    make_spans(provider, 21)
    provider.force_flush()
    provider.shutdown()
    assert LEDGER.totals() == {("dropped", "export-failed", "otlp http://backend"): 21}
    assert "configure(durable=True)" in caplog.text


def test_export_each_counts_failures_on_the_calling_thread():
    provider = provider_with(ExportEach(Failing(), destination="inline"))
    make_spans(provider, 3)
    assert LEDGER.totals() == {("dropped", "export-failed", "inline"): 3}


def test_shutdown_is_bounded_and_counts_what_a_hanging_exporter_did_not_take():
    gate = Gate()  # never opened: a backend that accepts and never answers
    queue = ExportQueue(
        gate, destination="otlp hanging", max_batch_size=10, shutdown_timeout_s=0.3
    )
    provider = provider_with(queue)
    make_spans(provider, 50)
    provider.shutdown()  # returns although the exporter is still blocked
    assert LEDGER.totals()[("dropped", "shutdown-timeout", "otlp hanging")] == 50
    gate.opened.set()


def test_spans_ended_after_shutdown_are_counted():
    queue = ExportQueue(InMemorySpanExporter(), destination="memory")
    provider = provider_with(queue)
    provider.shutdown()
    queue.on_end(_ended_span())
    assert LEDGER.totals() == {("dropped", "after-shutdown", "memory"): 1}


def _ended_span() -> ReadableSpan:
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer("t").start_span("late")
    span.end()
    return span  # type: ignore[return-value]


def test_force_flush_delivers_a_partial_batch_before_the_delay():
    exporter = InMemorySpanExporter()
    provider = provider_with(ExportQueue(exporter, destination="memory", schedule_delay_s=30))
    make_spans(provider, 3)
    assert provider.force_flush(5_000)
    assert len(exporter.get_finished_spans()) == 3
    provider.shutdown()


def test_a_lone_surrogate_fails_otlp_encoding_and_is_repaired_not_lost():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    with OTLPHttpReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.traces_endpoint)
        provider = provider_with(ExportQueue(exporter, destination="otlp"))
        tracer = provider.get_tracer("t")
        for index in range(20):
            tracer.start_span(f"ok{index}").end()
        tracer.start_span("bad", attributes={"file": "report-\udcff.txt"}).end()
        provider.shutdown()
        received = receiver.wait_for_spans(21)
    by_name = {span.name: span for span in received}
    assert by_name["bad"].attributes["file"] == "report-\ufffd.txt"
    assert LEDGER.totals() == {("repaired", "unencodable-text", "otlp"): 1}


def test_ledger_merges_records_and_gives_back_unstored_ones():
    ledger = LossLedger()
    ledger.record("queue-full", "store", 2, "m", log=False)
    ledger.record("queue-full", "store", 3, "m", log=False)
    (held,) = ledger.take_pending()
    assert held.count == 5 and held.first_ns <= held.last_ns
    ledger.record("queue-full", "store", 1, "m", log=False)
    ledger.give_back([held])
    (merged,) = ledger.take_pending()
    assert merged.count == 6 and merged.first_ns == held.first_ns
    assert ledger.totals() == {("dropped", "queue-full", "store"): 6}


def test_each_cause_is_logged_once_with_its_fix(caplog):
    for _ in range(3):
        LEDGER.record("queue-full", "store", 1, "raise the queue size")
    assert caplog.text.count("raise the queue size") == 1


def test_the_worker_does_not_keep_an_abandoned_queue_alive():
    import gc
    import weakref

    queue = ExportQueue(InMemorySpanExporter(), destination="memory", schedule_delay_s=0.05)
    provider = provider_with(queue)
    make_spans(provider, 1)
    provider.force_flush()
    reference = weakref.ref(queue)
    worker = queue._worker
    del queue, provider
    deadline = time.monotonic() + 10
    while reference() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert reference() is None
    assert worker is not None
    worker.join(5)
    assert not worker.is_alive()


def _wait_for_export_threads(provider: TracerProvider) -> None:
    # An exporter still retrying after shutdown ends by its own timeout: wait for it, so it
    # cannot record into the next test's ledger.
    from sessiontrace._config import _PIPELINE_ATTRIBUTE

    for queue in getattr(provider, _PIPELINE_ATTRIBUTE).exporters:
        if queue._worker is not None:
            queue._worker.join(30)
            assert not queue._worker.is_alive()


def _configured(endpoint: str, **options):
    from sessiontrace import configure

    return configure(
        traces_endpoint=endpoint,
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        propagate=False,
        **options,
    )


def test_an_unreachable_otlp_backend_is_counted_not_silent(monkeypatch):
    from helpers.flaky_receiver import FlakyReceiver

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    with FlakyReceiver() as backend:
        backend.refuse()
        provider = _configured(backend.traces_endpoint)
        make_spans(provider, 40)
        provider.force_flush(10_000)
        provider.shutdown()
        destination = f"otlp http {backend.traces_endpoint}"
    _wait_for_export_threads(provider)
    totals = LEDGER.totals()
    assert totals.get(("dropped", "export-failed", destination), 0) + totals.get(
        ("dropped", "shutdown-timeout", destination), 0
    ) == 40


def test_shutdown_with_a_hanging_backend_returns_and_counts(monkeypatch):
    from helpers.flaky_receiver import FlakyReceiver

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2")
    with FlakyReceiver() as backend:
        backend.hang()
        provider = _configured(backend.traces_endpoint, shutdown_timeout=0.5)
        make_spans(provider, 25)
        provider.shutdown()  # bounded by shutdown_timeout, though the backend never answers
        destination = f"otlp http {backend.traces_endpoint}"
        assert LEDGER.totals() == {("dropped", "shutdown-timeout", destination): 25}
    _wait_for_export_threads(provider)
    # The batch still in flight at the deadline later fails: it was counted once, not twice.
    assert LEDGER.totals() == {("dropped", "shutdown-timeout", destination): 25}
