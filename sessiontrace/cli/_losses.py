"""Dropped spans and repaired values from the store's ``losses`` table, as lines to print.

Records come roughly once a second per reason from each exporting process. Consecutive
records (in time order) with the same kind, reason and destination merge into one line, so a
minute of a full queue is one line, not sixty.
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

# What each reason key means, as the words after "dropped ... :". An unknown key (a newer
# writer's) is shown as it is.
_CAUSES = {
    "queue-full": "the export queue was full",
    "export-failed": "the export failed",
    "shutdown-timeout": "the program shut down before they were exported",
    "spool-full": "the spool for a down backend was full",
    "unencodable-text": "they had text that could not be encoded",
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
    """Merge consecutive records with the same kind, reason and destination.

    Args:
        losses: Records in time order, as :meth:`SessionStore.losses` returns them.

    Returns:
        One run per stretch of same-keyed records; the message is the latest record's.

    Example:
        >>> merge([])
        []
    """
    runs: list[LossRun] = []
    for loss in sorted(losses, key=lambda item: (item.first_ns, item.id)):
        key = (loss.kind, loss.reason, loss.destination)
        last = runs[-1] if runs else None
        if last is not None and (last.kind, last.reason, last.destination) == key:
            runs[-1] = LossRun(
                *key,
                count=last.count + loss.count,
                first_ns=min(last.first_ns, loss.first_ns),
                last_ns=max(last.last_ns, loss.last_ns),
                message=loss.message or last.message,
            )
        else:
            runs.append(LossRun(*key, loss.count, loss.first_ns, loss.last_ns, loss.message))
    return runs


def line(run: LossRun) -> str:
    """One sentence for a run: how many, when, where, why, and the record's fix.

    Example:
        >>> line(LossRun("repaired", "unencodable-text", "store", 37, 0, 0, ""))[:47]
        '37 attribute values had unencodable text, store'
    """
    when = _when(run.first_ns, run.last_ns)
    where = "" if run.destination == "store" else f" for {safe(run.destination)}"
    message = safe(run.message).rstrip(".")
    if run.kind == REPAIRED:
        head = (
            f"{run.count:,} attribute value{'s' if run.count != 1 else ''} had unencodable "
            f"text, stored with U+FFFD{where} {when}"
        )
    elif run.kind == DROPPED:
        cause = _CAUSES.get(run.reason, safe(run.reason))
        head = f"{run.count:,} span{'s' if run.count != 1 else ''}{where} dropped {when}: {cause}"
    else:
        head = f"{run.count:,} {safe(run.kind)} ({safe(run.reason)}){where} {when}"
    return f"{head}; {message}" if message else head


def _when(first_ns: int, last_ns: int) -> str:
    first, last = _local(first_ns), _local(last_ns)
    if first.date() != last.date():
        return f"between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M}"
    if (first.hour, first.minute) == (last.hour, last.minute):
        return f"at {first:%H:%M} on {first:%Y-%m-%d}"
    return f"between {first:%H:%M} and {last:%H:%M} on {first:%Y-%m-%d}"


def _local(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9).astimezone()
