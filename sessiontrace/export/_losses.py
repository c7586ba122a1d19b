"""Loss accounting: every span dropped and every value repaired is counted, logged once, kept.

Anything on the export path that gives up on a span (a full queue, a failed export, a
shutdown deadline, a full spool) or repairs a value (text that cannot be encoded) calls
:func:`record_loss`. The ledger keeps per-process totals, logs each kind of loss once with its
fix, and holds records until the local store writes them (``losses`` table), where
``sessiontrace sessions`` and ``sessiontrace doctor`` show them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

from sessiontrace._guard import LogOnce

logger = logging.getLogger("sessiontrace")

LossKind = Literal["dropped", "repaired"]


@dataclass(frozen=True)
class Loss:
    """One record of losses of one kind, reason and destination over a span of time.

    ``count`` is spans for ``dropped`` and attribute values for ``repaired``; times are
    wall-clock nanoseconds.
    """

    kind: LossKind
    reason: str
    destination: str
    count: int
    first_ns: int
    last_ns: int
    message: str
    pid: int


Key = tuple[str, str, str]


class LossLedger:
    """Counts losses in this process and holds them until the store records them.

    Example:
        >>> ledger = LossLedger()
        >>> ledger.record("queue-full", "store", 3, "the export queue was full", log=False)
        >>> ledger.totals()
        {('dropped', 'queue-full', 'store'): 3}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Key, Loss] = {}
        self._totals: dict[Key, int] = {}
        self._once = LogOnce()  # each kind of loss is logged the first time it happens

    def record(
        self,
        reason: str,
        destination: str,
        count: int,
        message: str,
        *,
        kind: LossKind = "dropped",
        log: bool = True,
    ) -> None:
        """Count ``count`` spans dropped (or values repaired) for ``reason`` at ``destination``.

        ``message`` is one sentence with the cause and the fix; it is logged the first time
        this kind of loss happens in the process, and stored with the record.
        """
        if count <= 0:
            return
        now = time.time_ns()
        key = (kind, reason, destination)
        with self._lock:
            self._totals[key] = self._totals.get(key, 0) + count
            held = self._pending.get(key)
            if held is None:
                self._pending[key] = Loss(
                    kind, reason, destination, count, now, now, message, os.getpid()
                )
            else:
                self._pending[key] = replace(
                    held, count=held.count + count, last_ns=now, message=message
                )
            level = self._once.level(key)
        if log and level is not None:
            what = "spans dropped" if kind == "dropped" else "values repaired"
            logger.log(
                level,
                "sessiontrace: %s %s (%s, %s): %s This is logged once per cause; "
                "`sessiontrace doctor` shows the totals.",
                count,
                what,
                reason,
                destination,
                message,
            )

    def take_pending(self) -> list[Loss]:
        """Hand over the records not yet stored (the store writes them with its next batch)."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        return pending

    def has_pending(self) -> bool:
        """Whether records are waiting to be stored."""
        return bool(self._pending)

    def give_back(self, losses: list[Loss]) -> None:
        """Put back records that could not be stored, merged with any newer ones."""
        with self._lock:
            for loss in losses:
                key = (loss.kind, loss.reason, loss.destination)
                held = self._pending.get(key)
                if held is None:
                    self._pending[key] = loss
                else:
                    self._pending[key] = replace(
                        held, count=held.count + loss.count, first_ns=loss.first_ns
                    )

    def totals(self) -> dict[Key, int]:
        """``{(kind, reason, destination): count}`` for this process since it started."""
        with self._lock:
            return dict(self._totals)

    def reset(self) -> None:
        """Forget everything, as in a new process (used after fork, and by tests)."""
        self._lock = threading.Lock()
        self._pending = {}
        self._totals = {}
        self._once = LogOnce()


LEDGER = LossLedger()
"""The process's ledger; the export path records into it."""

if hasattr(os, "register_at_fork"):
    # A child's losses are its own: the parent's records are the parent's to store, and a
    # lock held by another thread at fork time would never be released in the child.
    os.register_at_fork(after_in_child=LEDGER.reset)


def record_loss(
    reason: str, destination: str, count: int, message: str, *, kind: LossKind = "dropped"
) -> None:
    """Count a loss in the process's ledger (see :meth:`LossLedger.record`)."""
    LEDGER.record(reason, destination, count, message, kind=kind)
