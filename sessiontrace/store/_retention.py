"""Retention: remove whole sessions from the store, oldest first, by age or by size.

The unit removed is a session together with all of its sub-sessions (and theirs), never a
part of one, so every command still reads every session that is left whole. A trace that
carries no session at all is a unit of its own. A unit's age is the end of its last span.
``prune`` runs one short transaction per :data:`UNITS_PER_TRANSACTION` units, so programs
writing the store meanwhile wait at most one of them, and gives the freed pages back to the
disk (new stores use incremental vacuum; an older file keeps them for new spans).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sessiontrace.store._errors import StoreNotFoundError
from sessiontrace.store._migrate import open_writable
from sessiontrace.store._models import Frozen, UtcDatetime, utc_from_ns
from sessiontrace.store._schema import SESSION_TABLES, in_chunks

UNITS_PER_TRANSACTION = 100
"""Sessions (with their sub-sessions) or session-less traces removed per transaction."""

_VACUUM_PAGES = 256  # pages given back to the disk per transaction


class PruneReport(Frozen):
    """What :func:`prune` removed, or would remove with ``dry_run``.

    ``bytes_before`` and ``bytes_after`` are the store's size on disk, with its ``-wal`` file.
    ``oldest_removed`` and ``newest_removed`` are the last activity of the oldest and newest
    unit removed (``None`` when nothing was).

    Example:
        >>> report = prune("/tmp/sessiontrace-example.db", older_than=7 * 86400)  # doctest: +SKIP
        >>> print(report.sessions_removed, report.spans_removed)  # doctest: +SKIP
    """

    sessions_removed: int
    traces_removed: int
    spans_removed: int
    bytes_before: int
    bytes_after: int
    oldest_removed: UtcDatetime | None
    newest_removed: UtcDatetime | None
    dry_run: bool


@dataclass
class _Unit:
    last_end_ns: int
    spans: int
    sessions: list[str] = field(default_factory=list)
    trace_id: str | None = None
    top: str | None = None  # the family's top session (None for a trace without a session)


def prune(
    path: str | os.PathLike[str],
    *,
    older_than: float | None = None,
    max_bytes: int | None = None,
    dry_run: bool = False,
    now_ns: int | None = None,
) -> PruneReport:
    """Remove sessions older than ``older_than`` seconds, then the oldest until the store
    takes at most ``max_bytes``.

    Args:
        path: The store file.
        older_than: Remove every unit whose last span ended longer ago than this.
        max_bytes: Then remove the oldest units until the pages in use fit in this many bytes.
        dry_run: Only say what would be removed.
        now_ns: The time to measure ages from (default: now), in ns since the epoch.

    Returns:
        What was removed.

    Raises:
        StoreNotFoundError: If there is no store at ``path``.
        ValueError: If neither limit is given.
        sqlite3.Error: If SQLite cannot read or write the file.

    Example:
        >>> prune("/tmp/sessiontrace-example.db", max_bytes=500_000_000)  # doctest: +SKIP
    """
    if older_than is None and max_bytes is None:
        raise ValueError("give older_than (seconds) or max_bytes, or both")
    target = Path(path).expanduser().absolute()
    if not target.is_file():
        raise StoreNotFoundError(target)
    before = _disk_bytes(target)
    now_ns = time.time_ns() if now_ns is None else now_ns
    # An age longer than the epoch is old (such as 10**300 weeks): nothing is that old.
    cutoff = None
    if older_than is not None and older_than * 1e9 < now_ns:
        cutoff = now_ns - int(older_than * 1e9)
    conn = open_writable(target)
    try:
        units = _units(conn)
        chosen: list[_Unit] = []
        if older_than is not None:
            chosen = [unit for unit in units if cutoff is not None and unit.last_end_ns < cutoff]
        if max_bytes is not None:
            chosen = _add_for_size(conn, units, chosen, max_bytes)
        removed = _plan(conn, chosen) if dry_run else _remove(conn, chosen, cutoff)
        if not dry_run:
            while max_bytes is not None and _used_bytes(conn) > max_bytes:
                # The estimate per span was low: take the next oldest and measure again.
                left = _units(conn)
                more = _add_for_size(conn, left, [], max_bytes) or left[:1]
                if not more:
                    break
                extra = _remove(conn, more, None)
                if not (extra.sessions or extra.traces):
                    break  # nothing left that can go (the rest is the layout's own pages)
                removed = _merge(removed, extra)
            _give_back_space(conn)
    finally:
        conn.close()
    return PruneReport(
        sessions_removed=removed.sessions,
        traces_removed=removed.traces,
        spans_removed=removed.spans,
        bytes_before=before,
        bytes_after=before if dry_run else _disk_bytes(target),
        oldest_removed=None if removed.oldest is None else utc_from_ns(removed.oldest),
        newest_removed=None if removed.newest is None else utc_from_ns(removed.newest),
        dry_run=dry_run,
    )


@dataclass
class _Removed:
    sessions: int = 0
    traces: int = 0
    spans: int = 0
    oldest: int | None = None
    newest: int | None = None


def _units(conn: sqlite3.Connection) -> list[_Unit]:
    """Every session family (a top session and all below it) and session-less trace, oldest
    first."""
    parents: dict[str, str | None] = {}
    last: dict[str, tuple[int, int]] = {}
    for session_id, parent, last_end, spans in conn.execute(
        "SELECT session_id, parent_session_id, last_end_ns, span_count FROM sessions"
    ):
        parents[session_id] = parent
        last[session_id] = (last_end, spans)
    families: dict[str, _Unit] = {}
    for session_id in parents:
        top = _top(session_id, parents)
        unit = families.get(top)
        last_end, spans = last[session_id]
        if unit is None:
            families[top] = unit = _Unit(last_end_ns=last_end, spans=0, top=top)
        unit.sessions.append(session_id)
        unit.spans += spans
        unit.last_end_ns = max(unit.last_end_ns, last_end)
    units = list(families.values())
    for trace_id, end_ns, spans in conn.execute(_SESSIONLESS_TRACES):
        units.append(_Unit(last_end_ns=end_ns, spans=spans, trace_id=trace_id))
    units.sort(key=lambda unit: unit.last_end_ns)
    return units


# Each trace none of whose spans carries a session, its last end and span count: read off the
# index of spans outside any session, and the primary key (both cover what they are asked).
_SESSIONLESS_TRACES = """
SELECT u.trace_id, MAX(u.end_ns), COUNT(*) FROM spans AS u INDEXED BY spans_unsessioned
WHERE u.session_id IS NULL GROUP BY u.trace_id
HAVING COUNT(*) = (SELECT COUNT(*) FROM spans AS a WHERE a.trace_id = u.trace_id)
"""


def _top(session_id: str, parents: dict[str, str | None]) -> str:
    """The top of ``session_id``'s family: the first one up whose parent is not stored. Where
    parents name each other in a circle (hostile stamps), the circle's least id, so every
    member of the circle, and all below it, is in one family."""
    path = [session_id]
    seen = {session_id}
    while True:
        parent = parents.get(session_id)
        if parent is None or parent not in parents:
            return session_id
        if parent in seen:
            return min(path[path.index(parent) :])
        path.append(parent)
        seen.add(parent)
        session_id = parent


def _add_for_size(
    conn: sqlite3.Connection, units: list[_Unit], chosen: list[_Unit], max_bytes: int
) -> list[_Unit]:
    used = _used_bytes(conn)
    total_spans = sum(unit.spans for unit in units) or 1
    taken = {id(unit) for unit in chosen}
    # Bytes in use per span, on average: remove about as many spans as the excess takes.
    to_free = used - max_bytes - sum(unit.spans for unit in chosen) * used / total_spans
    chosen = list(chosen)
    for unit in units:
        if to_free <= 0:
            break
        if id(unit) not in taken:
            chosen.append(unit)
            to_free -= unit.spans * used / total_spans
    return chosen


def _plan(conn: sqlite3.Connection, units: Iterable[_Unit]) -> _Removed:
    """What removing ``units`` in this order removes, as ``_remove`` counts it: a trace's
    spans without a session go with the last session that has spans in it."""
    removed = _Removed()
    gone: set[str] = set()
    done_traces: set[str] = set()
    for unit in units:
        spans = unit.spans
        gone.update(unit.sessions)
        for trace_id in _traces_of(conn, unit.sessions):
            if trace_id in done_traces:
                continue
            # By the spans' primary key: spans_session_trace begins with the session.
            owners = conn.execute(
                "SELECT DISTINCT session_id FROM spans WHERE trace_id = ? "
                "AND session_id IS NOT NULL",
                (trace_id,),
            ).fetchall()
            if all(owner in gone for (owner,) in owners):
                done_traces.add(trace_id)
                row = conn.execute(
                    "SELECT COUNT(*) FROM spans WHERE trace_id = ? AND session_id IS NULL",
                    (trace_id,),
                ).fetchone()
                spans += int(row[0])
        _count(removed, unit, spans)
    return removed


def _traces_of(conn: sqlite3.Connection, sessions: list[str]) -> list[str]:
    found: list[str] = []
    for chunk, marks in in_chunks(sessions):
        found.extend(
            trace_id
            for (trace_id,) in conn.execute(
                f"SELECT DISTINCT trace_id FROM spans WHERE session_id IN ({marks})",
                chunk,
            )
        )
    return list(dict.fromkeys(found))


def _count(removed: _Removed, unit: _Unit, spans: int) -> None:
    removed.sessions += len(unit.sessions)
    removed.traces += unit.trace_id is not None
    removed.spans += spans
    end = unit.last_end_ns
    removed.oldest = end if removed.oldest is None else min(removed.oldest, end)
    removed.newest = end if removed.newest is None else max(removed.newest, end)


def _remove(conn: sqlite3.Connection, units: list[_Unit], cutoff: int | None) -> _Removed:
    """Remove ``units``, one short transaction per :data:`UNITS_PER_TRANSACTION`.

    Programs may have written since the units were listed: inside the transaction each
    family is read again (a new sub-session goes with it), one that has gained a parent is
    left for a later prune, and one listed as older than ``cutoff`` that has been active
    since is kept.
    """
    removed = _Removed()
    for start in range(0, len(units), UNITS_PER_TRANSACTION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for unit in units[start : start + UNITS_PER_TRANSACTION]:
                if unit.trace_id is not None:
                    spans = _remove_trace(conn, unit.trace_id)
                    if spans:
                        _count(removed, unit, spans)
                    continue
                family = _family_now(conn, unit)
                if family is None:
                    continue
                if cutoff is not None and unit.last_end_ns < cutoff <= family.last_end_ns:
                    continue
                spans = _remove_family(conn, family.sessions)
                _count(removed, family, spans)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return removed


_FAMILY = """
WITH RECURSIVE tree (id) AS (
    SELECT ? UNION SELECT c.session_id FROM sessions AS c JOIN tree ON c.parent_session_id = tree.id
)
SELECT session_id, last_end_ns, span_count FROM sessions WHERE session_id IN tree
"""


def _family_now(conn: sqlite3.Connection, unit: _Unit) -> _Unit | None:
    """The unit's family as the store holds it now; None when it is gone or has become part
    of a bigger family (its top session gained a stored parent)."""
    top = unit.top if unit.top is not None else unit.sessions[0]
    row = conn.execute(
        "SELECT parent_session_id FROM sessions WHERE session_id = ?", (top,)
    ).fetchone()
    if row is None:
        return None
    parent = row[0]
    if (
        parent is not None
        and parent not in unit.sessions
        and conn.execute("SELECT 1 FROM sessions WHERE session_id = ?", (parent,)).fetchone()
    ):
        return None
    family = _Unit(last_end_ns=unit.last_end_ns, spans=0, top=top)
    for session_id, last_end, spans in conn.execute(_FAMILY, (top,)):
        family.sessions.append(session_id)
        family.spans += spans
        family.last_end_ns = max(family.last_end_ns, last_end)
    return family


def _remove_trace(conn: sqlite3.Connection, trace_id: str) -> int:
    # Another writer may have added a span with a session to it since it was listed.
    if conn.execute(
        "SELECT 1 FROM spans WHERE trace_id = ? AND session_id IS NOT NULL LIMIT 1", (trace_id,)
    ).fetchone():
        return 0
    spans = conn.execute("DELETE FROM spans WHERE trace_id = ?", (trace_id,)).rowcount
    return int(spans)


def _remove_family(conn: sqlite3.Connection, sessions: list[str]) -> int:
    traces = _traces_of(conn, sessions)
    spans = 0
    for chunk, marks in in_chunks(sessions):
        spans += conn.execute(f"DELETE FROM spans WHERE session_id IN ({marks})", chunk).rowcount
        for table in SESSION_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE session_id IN ({marks})", chunk)
    for trace_id in traces:
        # The spans of its traces that carry no session (a request span around it) go too,
        # unless the trace still has another session's spans.
        if not conn.execute(
            "SELECT 1 FROM spans WHERE trace_id = ? AND session_id IS NOT NULL LIMIT 1",
            (trace_id,),
        ).fetchone():
            spans += conn.execute("DELETE FROM spans WHERE trace_id = ?", (trace_id,)).rowcount
    return int(spans)


def _merge(first: _Removed, second: _Removed) -> _Removed:
    ends = [
        end for end in (first.oldest, second.oldest, first.newest, second.newest) if end is not None
    ]
    return _Removed(
        sessions=first.sessions + second.sessions,
        traces=first.traces + second.traces,
        spans=first.spans + second.spans,
        oldest=min(ends) if ends else None,
        newest=max(ends) if ends else None,
    )


def _used_bytes(conn: sqlite3.Connection) -> int:
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def _give_back_space(conn: sqlite3.Connection) -> None:
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:  # incremental
        while int(conn.execute("PRAGMA freelist_count").fetchone()[0]) > 0:
            before = int(conn.execute("PRAGMA page_count").fetchone()[0])
            conn.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES})").fetchall()
            if int(conn.execute("PRAGMA page_count").fetchone()[0]) >= before:
                break
    # PASSIVE: a TRUNCATE checkpoint would hold new writers (the application's exporter)
    # while it waits for readers. The log is cut back to journal_size_limit when it restarts.
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _disk_bytes(path: Path) -> int:
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total
