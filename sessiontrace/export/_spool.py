"""The durable OTLP exporter: spool every batch to disk at once, send it in order when it can.

``export()`` encodes the batch as an OTLP ``ExportTraceServiceRequest`` and appends the bytes
to a SQLite spool (one transaction) and returns; a sender thread sends the spool's requests
oldest first, deleting each only once the backend accepted it. Retryable failures back off
(exponential, jittered, capped) and retry the same request, so order holds; a permanent
rejection drops that one request and counts it. The spool survives restarts: a new exporter on
the same file resumes where the last one stopped. Delivery is at-least-once.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from sessiontrace._guard import LogOnce, internal_error
from sessiontrace.export._losses import record_loss
from sessiontrace.export._repair import repair_batch
from sessiontrace.export._senders import GrpcSender, HttpSender, Outcome, Sender, seconds
from sessiontrace.export._spool_db import SpoolDB

logger = logging.getLogger("sessiontrace")

DEFAULT_SPOOL_PATH = Path(".sessiontrace") / "spool.db"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
_IDLE_POLL_S = 1.0  # how often an idle or lease-less sender looks for other processes' rows
_LEASE_MARGIN_S = 10.0

_EXPORTERS: weakref.WeakSet[SpoolingExporter] = weakref.WeakSet()
_ABANDONED: list[object] = []  # a parent's connections, kept (never closed) in a forked child
_OWNER_IDS = itertools.count()
_REPAIRED = (
    "span text held lone surrogates (e.g. os.fsdecode of a non-UTF-8 name); they were sent "
    "as U+FFFD. Decode such text with errors='replace' at the source to keep it readable."
)


class SpoolingExporter(SpanExporter):
    """A ``SpanExporter`` that never loses a batch to a backend outage (within its byte bound).

    Put it behind a ``BatchSpanProcessor`` in place of the OTLP exporter. Batches go to a
    spool file first; a background thread sends them, in order, when the backend answers.

    Args:
        sender: where to send, an :class:`HttpSender` (default: from the ``OTEL_EXPORTER_OTLP_*``
            environment, as the OTLP/HTTP exporter) or a :class:`GrpcSender`.
        path: the spool file (default ``.sessiontrace/spool.db``); several processes may share
            it (one of them sends at a time).
        max_bytes: the spool's bound in bytes of encoded requests (default 100 MiB). A batch
            that does not fit evicts the oldest requests, counted as ``spool-full`` losses.
        shutdown_timeout_s: how long ``shutdown()`` may try to send what is left (default 5);
            what is not sent stays in the spool for the next start, and is not a loss.
        initial_backoff_s, max_backoff_s: retry delays after a failed send: doubling from the
            first to the cap, each with +/-20% jitter (defaults 1 and 30).

    Raises:
        TypeError, ValueError: for an argument of the wrong type or out of range.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import BatchSpanProcessor
        >>> exporter = SpoolingExporter(
        ...     HttpSender("http://127.0.0.1:4318/v1/traces"), path=tmp / "spool.db"
        ... )  # doctest: +SKIP
        >>> TracerProvider().add_span_processor(BatchSpanProcessor(exporter))  # doctest: +SKIP
    """

    repairs_text = True  # the export queue leaves lone surrogates to export()
    counts_losses = True  # a FAILURE from export() is already in the loss ledger

    def __init__(
        self,
        sender: Sender | None = None,
        *,
        path: str | os.PathLike[str] = DEFAULT_SPOOL_PATH,
        max_bytes: int = DEFAULT_MAX_BYTES,
        shutdown_timeout_s: float = 5.0,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an int (bytes), got {type(max_bytes).__name__}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")
        self._shutdown_timeout_s = seconds(
            "shutdown_timeout_s", shutdown_timeout_s, allow_zero=True
        )
        self._initial_backoff_s = seconds("initial_backoff_s", initial_backoff_s)
        self._max_backoff_s = seconds("max_backoff_s", max_backoff_s)
        if self._max_backoff_s < self._initial_backoff_s:
            raise ValueError(
                f"max_backoff_s ({max_backoff_s!r}) must be at least initial_backoff_s "
                f"({initial_backoff_s!r})"
            )
        self._sender: Sender = sender if sender is not None else HttpSender()
        if not isinstance(self._sender, (HttpSender, GrpcSender)):
            raise TypeError(
                f"sender must be an HttpSender or GrpcSender (sessiontrace.export), got {sender!r}"
            )
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.destination = self._sender.destination
        self._lease_s = self._max_backoff_s + self._sender.timeout + _LEASE_MARGIN_S
        self._fresh_state()
        _EXPORTERS.add(self)
        self._start()

    def _fresh_state(self) -> None:
        """Everything a process must own alone: locks, connections, the thread, the owner id."""
        self._lock = threading.Lock()  # guards _writer
        self._cond = threading.Condition()  # guards the flags below; the sender waits on it
        self._writer: SpoolDB | None = None
        self._sender_db: SpoolDB | None = None  # the sender thread's own connection
        self._thread: threading.Thread | None = None
        self._news = False  # export() appended since the sender last looked
        self._emptied = False  # the sender deleted requests since the spool was last empty
        self._hurry = False  # force_flush() wants a retry now, not after the backoff
        self._draining = False  # shutdown(): send what answers, stop at the first failure
        self._stopped = False
        self._closed = False
        self._deadline = 0.0  # shutdown()'s, on the monotonic clock
        self._owner = f"{os.getpid()}:{id(self):x}:{next(_OWNER_IDS)}"

    def _after_fork_in_child(self) -> None:
        _ABANDONED.extend((self._writer, self._sender_db))  # the parent's: never closed here
        self._sender.forget()
        closed = self._closed
        self._fresh_state()
        self._closed = closed  # the sender thread starts again on first use, not here

    # --- the caller's side ------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append the batch to the spool and return; the sender thread delivers it.

        Returns FAILURE only when the batch could not be spooled, and then it has already been
        counted as a loss (``spool-write-failed``, ``spool-full`` or ``encode-failed``).
        """
        if not spans:
            return SpanExportResult.SUCCESS
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return self._spool(spans)
        except Exception:  # our bug: never the caller's problem
            self._loss("spool-write-failed", len(spans), "an internal error; please report it.")
            internal_error("SpoolingExporter.export")
            return SpanExportResult.FAILURE
        finally:
            detach(token)

    def _spool(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        count = len(spans)
        if self._closed:
            self._loss("exporter-shut-down", count, "spans ended after shutdown(); end them "
                       "before shutting the tracer provider down.")  # fmt: skip
            return SpanExportResult.FAILURE
        try:
            try:
                body = encode_spans(spans).SerializePartialToString()
            except UnicodeEncodeError:  # lone surrogates: only such a batch pays for repair
                spans, repaired = repair_batch(spans)
                record_loss(
                    "unencodable-text", self.destination, repaired, _REPAIRED, kind="repaired"
                )
                body = encode_spans(spans).SerializePartialToString()
        except Exception as exc:
            self._loss("encode-failed", count, f"the batch could not be encoded as OTLP ({exc}); "
                       "please report it with the span's attribute types.")  # fmt: skip
            return SpanExportResult.FAILURE
        try:
            with self._lock:
                if self._writer is None:
                    self._writer = SpoolDB(self.path)
                appended = self._writer.append(body, spans=count, max_bytes=self.max_bytes)
        except Exception as exc:  # sqlite3.Error, OSError: locked, disk full, unwritable
            message = (
                f"the spool {self.path} could not be written ({exc}); free disk space or "
                f"point the spool at a writable path."
            )
            self._loss("spool-write-failed", count, message)
            return SpanExportResult.FAILURE
        if appended.evicted_spans:
            self._loss("spool-full", appended.evicted_spans, self._full_message())
        if not appended.stored:
            self._loss("spool-full", count, f"a batch of {len(body)} bytes does not fit; "
                       + self._full_message())  # fmt: skip
            return SpanExportResult.FAILURE
        self._start()
        with self._cond:
            self._news = True
            self._cond.notify_all()
        return SpanExportResult.SUCCESS

    def _full_message(self) -> str:
        return (
            f"the spool {self.path} reached its bound of {self.max_bytes} bytes while "
            f"{self.destination} was unreachable, so the oldest batches were dropped; raise "
            f"max_bytes or bring the backend back."
        )

    def _loss(self, reason: str, count: int, message: str) -> None:
        record_loss(reason, self.destination, count, message)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Try to send everything spooled within ``timeout_millis``; True if the spool is empty.

        A sender waiting out a backoff retries at once. Spans of other processes sharing the
        file count too: "empty" means the file holds nothing.
        """
        deadline = time.monotonic() + max(timeout_millis, 0) / 1000
        self._start()
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
        while True:
            held = self.pending()
            if held is not None and held[2] == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                return False
            with self._cond:
                self._cond.wait(min(remaining, 0.05))

    def pending(self) -> tuple[int, int, int] | None:
        """``(bytes, spans, requests)`` waiting in the spool, or None if it cannot be read.

        Example:
            >>> exporter.pending()  # doctest: +SKIP
            (0, 0, 0)
        """
        try:
            with self._lock:
                if self._writer is None:
                    self._writer = SpoolDB(self.path)
                return self._writer.totals()
        except Exception:  # a question, never a crash
            return None

    def shutdown(self) -> None:
        """Send what the backend takes within ``shutdown_timeout_s``, then stop.

        Returns by the deadline even when the backend hangs: what was not sent stays in the
        spool for the next start and is not counted as lost. A sender thread stuck in a request
        is a daemon, so it never holds up interpreter exit.
        """
        if self._closed:
            return
        self._closed = True
        deadline = self._deadline = time.monotonic() + self._shutdown_timeout_s
        with self._cond:
            self._draining = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(max(deadline - time.monotonic(), 0))
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        with self._lock:
            writer, self._writer = self._writer, None
            try:
                if thread is not None and thread.is_alive():  # stuck in a request
                    writer = writer or SpoolDB(self.path)
                    writer.release(self._owner)  # so the next start sends at once
            except Exception:  # the lease expires on its own
                logger.debug("sessiontrace: could not release the spool lease", exc_info=True)
            if writer is not None:
                writer.close()

    # --- the sender thread ------------------------------------------------------------------

    def _start(self) -> None:
        with self._cond:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._run, name="sessiontrace-spool-sender", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        db: SpoolDB | None = None
        attempt = 0
        unreadable = LogOnce(repeats=logging.DEBUG)  # a warning, then debug for repeats
        try:
            while not self._stopped:
                try:
                    if db is None:
                        db = self._sender_db = SpoolDB(self.path)
                    delay = self._step(db)
                except Exception as exc:  # the file is locked or broken: try again later
                    unreadable.log(
                        "unreadable",
                        "sessiontrace: the spool %s cannot be read (%s); retrying with backoff. "
                        "Free disk space or point the spool at a writable path.",
                        self.path,
                        exc,
                    )
                    delay = -1.0
                if delay is None:  # sent (or dropped) one request: on to the next
                    attempt = 0
                    continue
                if delay == 0.0:  # nothing to send, or another process sends
                    if self._draining:
                        return
                    self._wait(lambda: self._news, _IDLE_POLL_S)
                    self._news = False
                    continue
                if self._draining:  # shutting down and the backend fails: keep the rest
                    return
                if delay < 0:
                    delay = self._backoff(attempt)
                attempt += 1
                self._wait(lambda: self._hurry, delay)
                self._hurry = False
        finally:
            if db is not None:
                try:
                    db.release(self._owner)
                except Exception:  # the lease expires on its own
                    logger.debug("sessiontrace: could not release the spool lease", exc_info=True)
                db.close()
            self._sender.close()
            detach(token)
            with self._cond:
                self._cond.notify_all()

    def _wait(self, until: Callable[[], bool], timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: until() or self._draining or self._stopped, timeout)

    def _backoff(self, attempt: int) -> float:
        base = min(self._initial_backoff_s * 2 ** min(attempt, 30), self._max_backoff_s)
        jittered: float = base * random.uniform(0.8, 1.2)
        return min(jittered, self._max_backoff_s)

    def _step(self, db: SpoolDB) -> float | None:
        """Send the oldest request once. None: done with it; 0: idle; >0 or -1: back off."""
        if db.totals()[2] == 0:  # a read: an idle spool writes nothing
            if self._emptied:
                self._emptied = False
                db.vacuum()
            return 0.0
        request = db.claim_oldest(self._owner, self._lease_s)
        if request is None:  # emptied meanwhile, or another process sends
            return 0.0
        timeout = self._sender.timeout
        if self._draining:  # never start a request that would outlive shutdown's deadline
            timeout = min(timeout, max(self._deadline - time.monotonic(), 0.05))
        try:
            outcome: Outcome = self._sender.send(request.body, timeout)
        except Exception as exc:  # a bug of ours or of a library: retry, and say so
            logger.warning("sessiontrace: sending to %s failed (%r)", self.destination, exc)
            db.settle(self._owner)
            return -1.0
        self._emptied = True  # once the spool is empty again, vacuum it
        if outcome.sent:
            db.delete(request.id)
        elif not outcome.retry:
            db.delete(request.id)
            self._loss(
                "rejected-by-backend",
                request.spans,
                f"{self.destination} rejected a batch for good ({outcome.reason}); check the "
                f"endpoint, its headers (API key) and the backend's limits.",
            )
        else:
            logger.debug("sessiontrace: %s: %s; will retry", self.destination, outcome.reason)
            db.settle(self._owner)  # no longer in flight: evictable again
            if outcome.retry_after_s is not None:
                return max(min(outcome.retry_after_s, self._max_backoff_s), 0.001)
            return -1.0
        with self._cond:
            self._cond.notify_all()  # force_flush() looks again
        return None


if hasattr(os, "register_at_fork"):

    def _reset_in_child() -> None:
        for exporter in list(_EXPORTERS):
            exporter._after_fork_in_child()

    os.register_at_fork(after_in_child=_reset_in_child)
