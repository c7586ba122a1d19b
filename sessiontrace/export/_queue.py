"""ExportQueue: hand finished spans to an exporter in batches, off the application thread,
counting every span it cannot deliver.

The SDK's ``BatchSpanProcessor`` drops spans silently when its queue is full (one log line,
no count) and can hold interpreter exit for as long as its exporter retries. This queue is
the same idea with the promises sessiontrace makes (see docs/reliability.md):

- **Full queue.** ``on_full="block"`` (the local store, the durable spool: local writes that
  keep up) makes the thread ending a span wait for room, up to ``block_timeout_s``; if the
  exporter is stuck that long, the queue stops waiting and drops (counted) until it has
  drained to half. ``on_full="drop"`` (a remote backend, whose outage must not stall the
  application) drops at once. Every dropped span is counted in the loss ledger.
- **Failed exports** are counted as lost, per destination.
- **Shutdown** is bounded by ``shutdown_timeout_s`` (5 s by default): what is still queued
  or in flight then is counted, and exit goes on.
- **Fork.** The child starts with an empty queue, a fresh lock and its own worker thread.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from typing import Literal

from opentelemetry.context import (
    Context,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from sessiontrace._guard import guarded
from sessiontrace.export._deliver import LOSS_MESSAGES, Prepare, deliver
from sessiontrace.export._losses import LEDGER

logger = logging.getLogger("sessiontrace")

OnFull = Literal["block", "drop"]

_queues: weakref.WeakSet[ExportQueue] = weakref.WeakSet()


class ExportQueue(SpanProcessor):
    """A batching span processor that counts what it cannot deliver.

    Args:
        exporter: where batches go.
        destination: how losses name it, e.g. ``"store"`` or ``"otlp http://host/v1/traces"``.
        max_queue_size: spans held before the ``on_full`` policy applies.
        max_batch_size: spans per ``export`` call.
        schedule_delay_s: longest wait before a partial batch is sent.
        on_full: ``"block"`` or ``"drop"`` (see the module docstring).
        block_timeout_s: longest wait for room with ``"block"``.
        shutdown_timeout_s: longest time ``shutdown()`` takes.
        prepare: applied to each batch before export (e.g. restoring stamped keys).

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter)
        >>> exporter = InMemorySpanExporter()
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(ExportQueue(exporter, destination="memory"))
        >>> provider.get_tracer("demo").start_span("hello").end()
        >>> provider.force_flush()
        True
        >>> [span.name for span in exporter.get_finished_spans()]
        ['hello']
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        destination: str,
        max_queue_size: int = 8192,
        max_batch_size: int = 512,
        schedule_delay_s: float = 0.5,
        on_full: OnFull = "drop",
        block_timeout_s: float = 1.0,
        shutdown_timeout_s: float = 5.0,
        prepare: Prepare | None = None,
    ) -> None:
        self.exporter = exporter
        self.destination = destination
        self._max_queue = max_queue_size
        self._max_batch = min(max_batch_size, max_queue_size)
        self._delay = schedule_delay_s
        self._on_full = on_full
        self._block_timeout = block_timeout_s
        self._shutdown_timeout = shutdown_timeout_s
        self._prepare = prepare
        self._reset()
        _queues.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the worker waits for spans
        self._room = threading.Condition(self._lock)  # producers wait for room
        self._done = threading.Condition(self._lock)  # flushers wait for progress
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._in_flight = 0
        self._flush_requests = 0
        self._in_flight_counted = False  # shutdown gave up on the batch in flight, counted
        self._waiting = 0  # producers waiting for room: the worker must not wait for a batch
        self._stuck = False  # a block timed out: drop until the queue drains to half
        self._closed = False
        self._worker: threading.Thread | None = None
        self._pid = os.getpid()

    # -- the application side -------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        with self._lock:
            if self._closed:
                self._lost(1, "after-shutdown")
                return
            if self._worker is None:
                self._start_worker()
            if len(self._queue) >= self._max_queue and not self._wait_for_room():
                self._lost(1, "queue-full")
                return
            self._queue.append(span)
            if len(self._queue) >= self._max_batch:
                self._work.notify()

    def _wait_for_room(self) -> bool:
        # Called with the lock held and the queue full.
        if self._on_full == "drop" or self._stuck:
            return False
        if threading.current_thread() is self._worker:
            return False  # never wait for ourselves (a span ended by the exporter's thread)
        self._work.notify()
        deadline = time.monotonic() + self._block_timeout
        self._waiting += 1
        try:
            while len(self._queue) >= self._max_queue and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stuck = True
                    return False
                self._room.wait(remaining)
        finally:
            self._waiting -= 1
        return not self._closed

    def _lost(self, count: int, reason: str) -> None:
        message = LOSS_MESSAGES[reason].format(destination=self.destination)
        LEDGER.record(reason, self.destination, count, message)

    # -- the worker -----------------------------------------------------------------------

    def _start_worker(self) -> None:
        worker = threading.Thread(
            target=_run_worker, args=(weakref.ref(self),), name="sessiontrace-export", daemon=True
        )
        self._worker = worker
        worker.start()

    def _next_batch(self) -> list[ReadableSpan] | None:
        """Wait for a batch (None when closed and empty); called by the worker."""
        with self._lock:
            # A partial batch goes once the delay has passed without filling it.
            deadline = time.monotonic() + self._delay
            while len(self._queue) < self._max_batch and not (self._closed or self._flush_requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._work.wait(remaining)
            if not self._queue:
                return None if self._closed else []
            count = min(self._max_batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            if self._stuck and len(self._queue) <= self._max_queue // 2:
                self._stuck = False
            self._room.notify_all()
            return batch

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            deliver(self.exporter, batch, self.destination, self._prepare, self._count_failure)
        finally:
            with self._lock:
                self._in_flight = 0
                self._in_flight_counted = False
                self._done.notify_all()

    # -- flush and shutdown ---------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; ``False`` if that took longer than the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            if self._worker is None and self._queue:
                self._start_worker()
            self._flush_requests += 1
            try:
                self._work.notify()
                while self._queue or self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._work.notify()
                    self._done.wait(min(remaining, 0.05))
            finally:
                self._flush_requests -= 1
        return bool(self.exporter.force_flush(max(0, int((deadline - time.monotonic()) * 1000))))

    def shutdown(self) -> None:
        """Export what is queued within ``shutdown_timeout_s``; count the rest; stop."""
        self.close_within(time.monotonic() + self._shutdown_timeout)

    def begin_close(self) -> None:
        """Stop taking spans and wake the worker to drain the queue."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._work.notify_all()
            self._room.notify_all()

    def close_within(self, deadline: float) -> None:
        """Finish :meth:`begin_close`: wait for the worker until ``deadline``, count what it
        could not send, then shut the exporter down."""
        self.begin_close()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = len(self._queue)
            if worker is not None and worker.is_alive() and self._in_flight:
                left += self._in_flight
                self._in_flight_counted = True  # if it fails later, it is not counted twice
            self._queue.clear()
        if left:
            self._lost(left, "shutdown-timeout")
        if worker is not None and worker.is_alive():
            # The exporter is still busy (a backend that does not answer): shutting it down
            # under the worker could block too, so it is left to end with the process.
            return
        with guarded(f"shutting down the exporter to {self.destination}"):
            self.exporter.shutdown()

    def _count_failure(self) -> bool:
        return not self._in_flight_counted

    def _after_fork_in_child(self) -> None:
        # The parent's spans are the parent's to export; the worker thread did not survive.
        closed = self._closed
        self._reset()
        self._closed = closed


def _run_worker(queue_ref: weakref.ref[ExportQueue]) -> None:
    while True:
        queue = queue_ref()
        if queue is None or queue._pid != os.getpid():
            return
        batch = queue._next_batch()
        if batch is None:
            return
        if batch:
            try:
                queue._export(batch)
            except Exception:  # strict mode in tests re-raises internal errors: keep going
                logger.debug("sessiontrace: export worker error", exc_info=True)
        del queue


def _after_fork_in_child() -> None:
    for queue in list(_queues):
        queue._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
