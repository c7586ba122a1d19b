"""Dropped spans and repaired values from the store's ``losses`` table, as lines to print.

Records come roughly once a second per reason from each exporting process. Records with the
same kind, reason and destination that follow one another (less than a minute apart) merge
into one line, so an hour of a full queue is one line, not 3,600.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sessiontrace.cli._format import safe
from sessiontrace.store import StoredLoss

DROPPED = "dropped"
REPAIRED = "repaired"

GAP_NS = 60 * 1_000_000_000
"""Records of one key further apart than this (a minute) are shown as separate lines."""

# What each reason key means, as the words after "dropped ... :". An unknown key (a newer
# writer's) is shown as it is.
# Only used when a record has no message (the writer's message names cause and fix).
_CAUSES = {
    "queue-full": "the export queue was full",
    "export-failed": "the export failed",
    "shutdown-timeout": "the program shut down before they were exported",
    "after-shutdown": "they ended after the export was shut down",
    "spool-full": "the spool for a down backend was full",
    "spool-write-failed": "the spool could not be written",
    "encode-failed": "the batch could not be encoded",
}


@dataclass(frozen=True)
class LossRun:
    """Adjacent loss records of one kind, reason and destination, merged.

    Example:
        >>> run = LossRun("dropped", "queue-full", "store", 1204, 0, 0, "raise max_queue_size")
        >>> run.count
        1204
    """

    kind: str
    reason: str
    destination: str
    count: int
    first_ns: int
    last_ns: int
    message: str

    def document(self) -> dict[str, Any]:
        """The run as a JSON-ready mapping."""
        return {
            "kind": self.kind,
            "reason": self.reason,
            "destination": self.destination,
            "count": self.count,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "message": self.message,
        }


def merge(losses: Sequence[StoredLoss]) -> list[LossRun]:
    """Merge the records of each kind, reason and destination that follow one another.

    A record joins the previous run of its key when it starts within :data:`GAP_NS` of that
    run's end (records of other keys in between do not matter: two exporters losing spans at
    once each get their own line); a longer pause starts a new run.

    Args:
        losses: The records, as :meth:`SessionStore.losses` returns them.

    Returns:
        The runs, ordered by their first loss; each keeps its latest record's message.

    Example:
        >>> merge([])
        []
    """
    runs: list[LossRun] = []
    open_runs: dict[tuple[str, str, str], int] = {}
    for loss in sorted(losses, key=lambda item: (item.first_ns, item.id)):
        key = (loss.kind, loss.reason, loss.destination)
        index = open_runs.get(key)
        if index is not None and loss.first_ns - runs[index].last_ns <= GAP_NS:
            last = runs[index]
            runs[index] = LossRun(
                *key,
                count=last.count + loss.count,
                first_ns=last.first_ns,
                last_ns=max(last.last_ns, loss.last_ns),
                message=loss.message or last.message,
            )
        else:
            open_runs[key] = len(runs)
            runs.append(LossRun(*key, loss.count, loss.first_ns, loss.last_ns, loss.message))
    return runs


def line(run: LossRun) -> str:
    """One line for a run: how many, when, where, and the record's cause and fix.

    Example:
        >>> line(LossRun("repaired", "unencodable-text", "store", 37, 0, 0, ""))[:47]
        '37 attribute values had unencodable text, store'
    """
    when = _when(run.first_ns, run.last_ns)
    where = "" if run.destination == "store" else f" for {safe(run.destination)}"
    message = safe(" ".join(run.message.split()))
    if run.kind == REPAIRED:
        head = (
            f"{run.count:,} attribute value{'s' if run.count != 1 else ''} had unencodable "
            f"text, stored with U+FFFD{where} {when}"
        )
        return f"{head}; {message}" if message else head
    if run.kind == DROPPED:
        noun = "span" if run.count == 1 else "spans"
        head = f"{run.count:,} {noun}{where} dropped {when} ({safe(run.reason)})"
    else:  # a kind a newer writer records
        head = f"{run.count:,} {safe(run.kind)}{where} {when} ({safe(run.reason)})"
    return f"{head}: {message or _CAUSES.get(run.reason, 'no cause recorded')}"


def _when(first_ns: int, last_ns: int) -> str:
    first, last = _local(first_ns), _local(last_ns)
    if first.date() != last.date():
        return f"between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M}"
    if (first.hour, first.minute) == (last.hour, last.minute):
        return f"at {first:%H:%M} on {first:%Y-%m-%d}"
    return f"between {first:%H:%M} and {last:%H:%M} on {first:%Y-%m-%d}"


def _local(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9).astimezone()
