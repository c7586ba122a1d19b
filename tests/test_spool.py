"""The durable spool: nothing lost to an OTLP outage, nothing broken by a dead or hanging backend.

Every test runs the real OpenTelemetry SDK and a real OTLP/HTTP receiver on 127.0.0.1 behind
helpers.flaky_receiver, which refuses, hangs or answers errors and comes back on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from helpers.flaky_receiver import FlakyReceiver
from helpers.otlp_receiver import OTLPGrpcReceiver
from sessiontrace.export._losses import LEDGER
from sessiontrace.export._senders import GrpcSender, HttpSender
from sessiontrace.export._spool import SpoolingExporter
from sessiontrace.export._spool_db import SpoolDB

FAST = {"initial_backoff_s": 0.05, "max_backoff_s": 0.3}


def _dead_endpoint() -> str:
    with socket.socket() as probe:  # a port that was just free: connecting is refused
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1/traces"


DEAD = _dead_endpoint()


def losses(destination: str) -> dict[str, int]:
    return {
        reason: count
        for (_, reason, where), count in LEDGER.totals().items()
        if where == destination
    }


def spooling(endpoint: str, path: Path, *, timeout: float = 1.0, **kwargs) -> SpoolingExporter:
    return SpoolingExporter(HttpSender(endpoint, timeout=timeout), path=path, **{**FAST, **kwargs})


def provider_for(exporter, *, batch: bool = True) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    if batch:
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=50, max_export_batch_size=64)
    else:
        processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider


def make_spans(provider: TracerProvider, prefix: str, count: int, start: int = 0) -> list[str]:
    tracer = provider.get_tracer("test-spool")
    names = [f"{prefix}-{i:04d}" for i in range(start, start + count)]
    for name in names:
        tracer.start_span(name).end()
    return names


def assert_delivered_in_order(backend: FlakyReceiver, names: list[str]) -> None:
    """Every span arrived, first arrivals in the order made, and any repeat is explained.

    Delivery is at-least-once: a request the backend kept but whose reply was cut off (the
    connection dropped at an outage's edge) is sent again. So a repeated span must come in a
    request that repeats an earlier request whole.
    """
    spans = backend.receiver.wait_for_spans(len(names), timeout=30)
    first_seen = list(dict.fromkeys(span.name for span in spans))
    assert first_seen == names
    requests: set[tuple[str, ...]] = set()
    seen: set[str] = set()
    for request in backend.receiver.export_requests():
        ids = tuple(
            span.span_id.hex()
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        )
        if seen.intersection(ids):
            assert ids in requests, "a span came again in a request that is not a whole resend"
        requests.add(ids)
        seen.update(ids)


def run_outage(backend: FlakyReceiver, exporter, go_down) -> list[str]:
    """Spans at a steady 50/s for 6 s; the backend is down from 1.5 s to 4.5 s."""
    provider = provider_for(exporter)
    tracer = provider.get_tracer("test-spool")
    names: list[str] = []
    for tick in range(300):
        if tick == 75:
            go_down()
        if tick == 225:
            backend.up()
        name = f"span-{tick:04d}"
        tracer.start_span(name).end()
        names.append(name)
        time.sleep(0.02)
    assert provider.force_flush(10_000)
    assert exporter.force_flush(20_000)
    provider.shutdown()
    return names


# --- outages ----------------------------------------------------------------------------------


def test_refused_backend_for_a_while_loses_nothing_and_keeps_order(tmp_path):
    with FlakyReceiver() as backend:
        exporter = spooling(backend.traces_endpoint, tmp_path / "spool.db")
        names = run_outage(backend, exporter, backend.refuse)
        assert_delivered_in_order(backend, names)
        assert losses(exporter.destination) == {}
        assert exporter.pending() == (0, 0, 0)


def test_hanging_backend_for_a_while_loses_nothing_and_keeps_order(tmp_path):
    with FlakyReceiver() as backend:
        exporter = spooling(backend.traces_endpoint, tmp_path / "spool.db", timeout=0.5)
        names = run_outage(backend, exporter, backend.hang)
        assert backend.attempts > 0  # the sender really met the hanging backend
        assert_delivered_in_order(backend, names)
        assert losses(exporter.destination) == {}


def test_retryable_status_is_retried_and_delivered(tmp_path):
    with FlakyReceiver() as backend:
        backend.reply(503)
        exporter = spooling(backend.traces_endpoint, tmp_path / "spool.db")
        provider = provider_for(exporter, batch=False)
        names = make_spans(provider, "busy", 3)
        assert not exporter.force_flush(300)
        assert backend.attempts > 0
        assert exporter.pending()[1] == 3
        backend.up()
        assert exporter.force_flush(10_000)
        assert_delivered_in_order(backend, names)
        assert losses(exporter.destination) == {}
        provider.shutdown()


def test_permanent_rejection_drops_that_request_counts_it_and_goes_on(tmp_path):
    with FlakyReceiver() as backend:
        backend.reply(400)
        exporter = spooling(backend.traces_endpoint, tmp_path / "spool.db")
        provider = provider_for(exporter, batch=False)
        make_spans(provider, "rejected", 2)
        assert exporter.force_flush(10_000)  # rejected requests leave the spool
        assert losses(exporter.destination) == {"rejected-by-backend": 2}
        backend.up()
        names = make_spans(provider, "accepted", 2)
        assert exporter.force_flush(10_000)
        assert_delivered_in_order(backend, names)
        provider.shutdown()


# --- shutdown and restart ---------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["refuse", "hang"])
def test_shutdown_with_the_backend_down_returns_and_keeps_the_spans(tmp_path, outage):
    with FlakyReceiver() as backend:
        getattr(backend, outage)()
        # A request may wait an hour for its answer: only shutdown's own deadline ends it.
        exporter = spooling(
            backend.traces_endpoint, tmp_path / "spool.db", timeout=3600, shutdown_timeout_s=0.5
        )
        provider = provider_for(exporter, batch=False)
        make_spans(provider, "kept", 5)
        if outage == "hang":  # let a request be in flight, waiting for an answer, first
            for _ in range(400):
                if backend.attempts:
                    break
                time.sleep(0.05)
            assert backend.attempts, "the sender never reached the hanging backend"
        closer = threading.Thread(target=provider.shutdown)  # calls exporter.shutdown()
        closer.start()
        closer.join(120)  # a bound so a broken deadline fails the test instead of hanging it
        assert not closer.is_alive(), "shutdown() did not return while the backend was down"
        reader = spooling(
            backend.traces_endpoint, tmp_path / "spool.db", timeout=3600, shutdown_timeout_s=0.2
        )
        assert reader.pending()[1] == 5  # everything waits for the next start
        assert losses(exporter.destination) == {}  # and none of it counts as lost
        reader.shutdown()


def test_a_new_exporter_on_the_same_spool_delivers_what_the_last_one_left(tmp_path):
    path = tmp_path / "spool.db"
    with FlakyReceiver() as backend:
        backend.refuse()
        first = spooling(backend.traces_endpoint, path)
        provider = provider_for(first)
        names = make_spans(provider, "left", 200)
        provider.shutdown()
        backend.up()
        second = spooling(backend.traces_endpoint, path)
        # It sends without being given a new span, at once: the first released its lease
        # (held, it would block this one for 11 s more).
        assert second.force_flush(5_000)
        assert_delivered_in_order(backend, names)
        second.shutdown()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from sessiontrace.export._senders import HttpSender
    from sessiontrace.export._spool import SpoolingExporter

    exporter = SpoolingExporter(HttpSender(sys.argv[1], timeout=1), path=sys.argv[2],
                                initial_backoff_s=0.05, max_backoff_s=0.2)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for i in range(int(sys.argv[3])):
        provider.get_tracer("child").start_span(f"killed-{i:04d}").end()
    print("spooled", flush=True)
    time.sleep(600)
    """
)


def test_spans_of_a_killed_process_are_delivered_by_the_next_one(tmp_path):
    path = tmp_path / "spool.db"
    with FlakyReceiver() as backend:
        backend.refuse()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, backend.traces_endpoint, str(path), "20"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "spooled"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        backend.up()
        heir = spooling(backend.traces_endpoint, path)
        # The dead child's lease would last 11 s more: its pid being gone frees it at once.
        assert heir.force_flush(5_000)
        assert_delivered_in_order(backend, [f"killed-{i:04d}" for i in range(20)])
        heir.shutdown()


# --- the bound and write failures -------------------------------------------------------------


def hold_the_lease(path: Path) -> sqlite3.Connection:
    """Play another live process that holds the sender lease: this process only appends."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "INSERT OR REPLACE INTO sender (id, owner, pid, expires_ns, inflight) "
        "VALUES (1, 'another process', ?, ?, NULL)",
        (os.getppid(), time.time_ns() + 3600 * 10**9),
    )
    return db


def one_span_bytes(backend: FlakyReceiver, tmp_path: Path) -> int:
    """Bytes of one spooled single-span request named like ``full-0000``."""
    probe = spooling(backend.traces_endpoint, tmp_path / "probe.db")
    make_spans(provider_for(probe, batch=False), "full", 1)
    assert probe.force_flush(10_000)
    one = len(backend.receiver.export_requests()[0].SerializeToString())
    probe.shutdown()
    backend.receiver.clear()
    return one


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path):
    path = tmp_path / "spool.db"
    with FlakyReceiver() as backend:
        one = one_span_bytes(backend, tmp_path)
        exporter = spooling(backend.traces_endpoint, path, max_bytes=one * 5)
        assert exporter.pending() == (0, 0, 0)
        lease = hold_the_lease(path)  # nothing is in flight while the bound bites
        provider = provider_for(exporter, batch=False)
        names = make_spans(provider, "full", 12)  # same-length names: same-size requests
        assert exporter.pending()[1] == 5
        assert losses(exporter.destination) == {"spool-full": 7}
        lease.execute("DELETE FROM sender")  # the other process is done
        lease.close()
        assert exporter.force_flush(10_000)
        assert_delivered_in_order(backend, names[-5:])  # the newest five survived
        provider.shutdown()


def test_the_request_in_flight_is_never_evicted(tmp_path):
    with FlakyReceiver() as backend:
        one = one_span_bytes(backend, tmp_path)
        backend.hang()
        exporter = spooling(
            backend.traces_endpoint, tmp_path / "spool.db", timeout=3600, max_bytes=one * 3
        )
        provider = provider_for(exporter, batch=False)
        make_spans(provider, "full", 1)
        for _ in range(400):  # bounded wait until the first request is on the wire
            if backend.attempts:
                break
            time.sleep(0.05)
        assert backend.attempts, "the sender never reached the hanging backend"
        make_spans(provider, "full", 5, start=1)  # full-0001 .. full-0005
        assert exporter.pending()[1] == 3
        assert losses(exporter.destination) == {"spool-full": 3}
        backend.up()  # cuts the hanging request: it is retried, first
        assert exporter.force_flush(10_000)
        assert_delivered_in_order(backend, ["full-0000", "full-0004", "full-0005"])
        provider.shutdown()


def test_a_drained_spool_gives_its_disk_space_back(tmp_path):
    path = tmp_path / "spool.db"

    def on_disk() -> int:
        return sum(p.stat().st_size for p in tmp_path.glob("spool.db*"))

    with FlakyReceiver() as backend:
        backend.refuse()
        exporter = spooling(backend.traces_endpoint, path)
        provider = provider_for(exporter, batch=False)
        tracer = provider.get_tracer("test-spool")
        for i in range(40):  # ~40 x 50 kB requests
            tracer.start_span(f"big-{i:04d}", attributes={"blob": "x" * 50_000}).end()
        full = on_disk()
        assert full > 2_000_000
        backend.up()
        assert exporter.force_flush(20_000)
        for _ in range(200):  # bounded wait for the sender's vacuum after the last delete
            if on_disk() < full // 4:
                break
            time.sleep(0.05)
        assert on_disk() < full // 4, (full, on_disk())
        provider.shutdown()


def test_connections_opening_a_new_spool_at_once_all_work(tmp_path):
    # The exporter's writer and its sender thread open a new file together; SQLite answers
    # "database is locked" at once (no busy wait) to one of two connections of a process
    # switching a new file to WAL together, unless they take turns.
    failures: list[str] = []

    def open_and_append(path: Path) -> None:
        try:
            db = SpoolDB(path)
            db.append(b"request", spans=1, max_bytes=1000)
            db.totals()
            db.close()
        except sqlite3.Error as exc:
            failures.append(repr(exc))

    for round_ in range(200):
        path = tmp_path / f"spool-{round_}.db"
        threads = [threading.Thread(target=open_and_append, args=(path,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_a_batch_larger_than_the_bound_is_refused_and_counted(tmp_path):
    with FlakyReceiver() as backend:
        exporter = spooling(backend.traces_endpoint, tmp_path / "spool.db", max_bytes=10)
        provider = provider_for(exporter, batch=False)
        make_spans(provider, "huge", 1)
        assert losses(exporter.destination) == {"spool-full": 1}
        assert exporter.pending() == (0, 0, 0)
        provider.shutdown()


def test_an_unwritable_spool_counts_the_batch_and_never_raises(tmp_path):
    with FlakyReceiver() as backend:
        exporter = spooling(backend.traces_endpoint, tmp_path)  # a directory, not a file
        provider = provider_for(exporter, batch=False)
        make_spans(provider, "nowhere", 2)
        assert losses(exporter.destination) == {"spool-write-failed": 2}
        provider.shutdown()


def test_a_locked_spool_counts_the_batch_and_never_raises(tmp_path):
    path = tmp_path / "spool.db"
    with FlakyReceiver() as backend:
        exporter = spooling(backend.traces_endpoint, path)
        assert exporter.pending() == (0, 0, 0)  # the file exists
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            provider = provider_for(exporter, batch=False)
            make_spans(provider, "locked", 1)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert losses(exporter.destination) == {"spool-write-failed": 1}
        names = make_spans(provider, "after", 1)
        assert exporter.force_flush(10_000)
        assert_delivered_in_order(backend, names)
        provider.shutdown()


def test_a_damaged_row_is_rejected_and_counted_and_the_rest_is_delivered(tmp_path):
    path = tmp_path / "spool.db"
    with FlakyReceiver() as backend:
        backend.refuse()
        exporter = spooling(backend.traces_endpoint, path)
        provider = provider_for(exporter, batch=False)
        make_spans(provider, "before", 1)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(
            "INSERT INTO requests (created_ns, spans, size, body) VALUES (0, 3, 4, ?)",
            (b"\xff\xff\xff\xff",),
        )
        db.close()
        make_spans(provider, "after", 1)
        backend.up()
        assert exporter.force_flush(10_000)
        assert_delivered_in_order(backend, ["before-0000", "after-0000"])
        assert losses(exporter.destination) == {"rejected-by-backend": 3}
        provider.shutdown()


# --- fork -------------------------------------------------------------------------------------


def test_a_forked_child_spools_with_its_own_lock_and_connection(tmp_path):
    with FlakyReceiver() as backend:
        exporter = spooling(backend.traces_endpoint, tmp_path / "spool.db")
        provider = provider_for(exporter, batch=False)
        make_spans(provider, "parent", 1)
        assert exporter.force_flush(10_000)
        held, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:  # another thread owns the writer lock at fork time
            with exporter._lock:
                held.set()
                release.wait()

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        held.wait()
        pid = os.fork()
        if pid == 0:  # the child: it would deadlock on the parent's lock, or share its sqlite
            code = 1
            try:
                make_spans(provider, "child", 3)
                code = 0 if losses(exporter.destination) == {} else 2
            finally:
                os._exit(code)
        release.set()
        holder.join()
        for _ in range(600):  # bounded wait, not a timed assertion
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the parent's lock or connection")
        assert os.waitstatus_to_exitcode(status) == 0
        assert exporter.force_flush(10_000)  # the parent's sender delivers the child's spans
        assert_delivered_in_order(backend, ["parent-0000", *[f"child-{i:04d}" for i in range(3)]])
        provider.shutdown()


# --- gRPC -------------------------------------------------------------------------------------


def test_grpc_spool_waits_out_an_unavailable_backend_then_delivers(tmp_path):
    path = tmp_path / "spool.db"
    with OTLPGrpcReceiver() as receiver:
        dead = receiver.port  # a port nothing will listen on once the probe stops
    down = SpoolingExporter(GrpcSender(f"http://127.0.0.1:{dead}", timeout=1), path=path, **FAST)
    provider = provider_for(down, batch=False)
    make_spans(provider, "grpc", 4)
    assert not down.force_flush(300)
    provider.shutdown()
    assert losses(down.destination) == {}  # UNAVAILABLE is retried, never dropped
    with OTLPGrpcReceiver() as receiver:
        up = SpoolingExporter(GrpcSender(receiver.endpoint, timeout=5), path=path, **FAST)
        assert up.force_flush(20_000)
        spans = receiver.wait_for_spans(4)
        assert [span.name for span in spans] == [f"grpc-{i:04d}" for i in range(4)]
        up.shutdown()


# --- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"max_bytes": 0}, ValueError, "max_bytes"),
        ({"max_bytes": True}, TypeError, "max_bytes"),
        ({"shutdown_timeout_s": -1}, ValueError, "shutdown_timeout_s"),
        ({"shutdown_timeout_s": float("nan")}, ValueError, "shutdown_timeout_s"),
        ({"initial_backoff_s": "1"}, TypeError, "initial_backoff_s"),
        ({"initial_backoff_s": 5, "max_backoff_s": 1}, ValueError, "max_backoff_s"),
        ({"path": 3}, TypeError, "path"),
        ({"sender": "http://x"}, TypeError, "sender"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(tmp_path, kwargs, error, words):
    kwargs = {"sender": HttpSender(DEAD), "path": tmp_path / "s.db",
              **kwargs}  # fmt: skip
    with pytest.raises(error, match=words):
        SpoolingExporter(**kwargs)
    assert not (tmp_path / "s.db").exists()  # nothing half-applied


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"endpoint": "localhost:4318"}, ValueError, "endpoint"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"compression": "brotli"}, ValueError, "compression"),
        ({"headers": {"k": 1}}, TypeError, "headers"),
    ],
)
def test_bad_sender_arguments_are_refused_naming_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        HttpSender(**{"endpoint": DEAD, **kwargs})


_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)  # lone surrogates too
_VALUE = st.one_of(_TEXT, st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(),
                   st.lists(_TEXT, max_size=3))  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(batch=[("name \ud800", {"key \udc00": "value \ud800", "list": ["\udfff"]})])
@given(batch=st.lists(st.tuples(_TEXT, st.dictionaries(_TEXT, _VALUE, max_size=4)), max_size=5))
def test_any_span_content_is_spooled_whole_never_raised(tmp_path_factory, batch):
    path = tmp_path_factory.mktemp("fuzz") / "spool.db"
    exporter = SpoolingExporter(HttpSender(DEAD, timeout=1), path=path, shutdown_timeout_s=0,
                                **FAST)  # fmt: skip
    provider = provider_for(exporter, batch=False)
    tracer = provider.get_tracer("fuzz")
    for name, attributes in batch:
        tracer.start_span(name, attributes=attributes).end()
    provider.shutdown()
    spooled = SpoolingExporter(HttpSender(DEAD), path=path, shutdown_timeout_s=0, **FAST)
    assert spooled.pending()[1] == len(batch)  # a bad value costs that value, not its span
    assert losses(exporter.destination).keys() <= {"unencodable-text"}  # repaired, not lost
    spooled.shutdown()
