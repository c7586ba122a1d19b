"""BackgroundPruner: apply the store's retention limits in a thread of its own.

The store exporter owns one when ``configure(store_max_age=..., store_max_bytes=...)`` (or
their environment variables) set a limit. It prunes soon after the first export and then
every ``interval`` seconds, on its own connection, in short transactions (see
``_retention.py``), so neither the application nor the export thread waits for it. A failure
is logged once per distinct reason and tried again at the next interval. After ``os.fork()``
the child starts its own thread on its next export.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from pathlib import Path

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from sessiontrace._guard import LogOnce
from sessiontrace.store._retention import PruneReport, prune

logger = logging.getLogger("sessiontrace")

FIRST_DELAY_SECONDS = 1.0
"""How long after the first export the first prune runs (start-up is left alone)."""


class BackgroundPruner:
    """Prune the store at ``path`` every ``interval`` seconds while the exporter runs.

    Example:
        >>> pruner = BackgroundPruner(Path("/tmp/sessiontrace-example.db"), max_age=7 * 86400)
        >>> pruner.stop()
    """

    def __init__(
        self,
        path: Path,
        *,
        max_age: float | None = None,
        max_bytes: int | None = None,
        interval: float = 60.0,
    ) -> None:
        self.path = path
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.interval = interval
        self.last_report: PruneReport | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._reported = LogOnce(repeats=logging.DEBUG)
        self._lock = threading.Lock()
        _live.add(self)

    def ensure_running(self) -> None:
        """Start the thread if it is not running in this process (cheap when it is)."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._stopped.is_set():
                return
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._pid, self._thread, self._stopped = os.getpid(), None, threading.Event()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sessiontrace-store-pruner", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Stop after the transaction in progress, if any; never waits for it."""
        self._stopped.set()

    def prune_now(self) -> PruneReport | None:
        """Apply the limits once, here; ``None`` when it failed (the reason is logged)."""
        try:
            report = prune(self.path, older_than=self.max_age, max_bytes=self.max_bytes)
        except Exception as exc:  # never raises into the exporter or the application
            reason = f"{type(exc).__name__}: {exc}"
            self._reported.log(
                reason,
                "sessiontrace: could not prune the store at %s (%s); it is tried again in "
                "%.0f s. Check that the disk is writable, or run `sessiontrace prune` to see "
                "the error.",
                self.path,
                reason,
                self.interval,
            )
            return None
        self.last_report = report
        if report.sessions_removed or report.traces_removed:
            logger.info(
                "sessiontrace: pruned %s sessions and %s traces without one (%s spans) from "
                "the store at %s, now %s bytes",
                report.sessions_removed,
                report.traces_removed,
                report.spans_removed,
                self.path,
                report.bytes_after,
            )
        return report

    def _run(self) -> None:
        # As the exporter writes: a sqlite3 instrumentation makes no spans of the pruning.
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            stopped = self._stopped
            if stopped.wait(FIRST_DELAY_SECONDS):
                return
            while not stopped.is_set():
                self.prune_now()
                if stopped.wait(self.interval):
                    return
        finally:
            detach(token)

    def _after_fork_in_child(self) -> None:
        # Another thread of the parent may have held the lock at the fork: the child's copy
        # would then stay locked for ever.
        self._lock = threading.Lock()


_live: weakref.WeakSet[BackgroundPruner] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pruner in list(_live):
        pruner._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
