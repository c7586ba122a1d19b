"""The spool file: OTLP export requests kept in SQLite, oldest first, within a byte bound.

One row is one encoded ``ExportTraceServiceRequest`` (one batch). Triggers keep the running
totals (bytes, spans, rows) in the same transaction as every insert and delete, so every
process that shares the file sees the same totals. A one-row ``sender`` table is the lease
that lets exactly one process at a time send from the file (see :class:`SpoolDB`).

WAL with ``synchronous=NORMAL``: a commit survives the process being killed; only a power
cut or an OS crash can lose the last commits (SQLite's documented trade-off for WAL).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

_WAL_LIMIT = 16 * 1024 * 1024  # bytes the write-ahead log keeps after a checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    spans INTEGER NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL,
    spans INTEGER NOT NULL,
    rows INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals (id, bytes, spans, rows) VALUES (1, 0, 0, 0);
CREATE TRIGGER IF NOT EXISTS requests_added AFTER INSERT ON requests BEGIN
    UPDATE totals SET bytes = bytes + NEW.size, spans = spans + NEW.spans, rows = rows + 1
    WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS requests_removed AFTER DELETE ON requests BEGIN
    UPDATE totals SET bytes = bytes - OLD.size, spans = spans - OLD.spans, rows = rows - 1
    WHERE id = 1;
END;
CREATE TABLE IF NOT EXISTS sender (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    inflight INTEGER
);
"""


@dataclass(frozen=True)
class SpooledRequest:
    """One spooled export request: its row id, how many spans it holds, its bytes."""

    id: int
    spans: int
    body: bytes


@dataclass(frozen=True)
class Appended:
    """What an append did: ``stored`` is False when the batch itself was refused.

    ``evicted_spans`` counts spans of older requests deleted to make room.
    """

    stored: bool
    evicted_spans: int


_P = ParamSpec("_P")
_R = TypeVar("_R")

# One SQLite call at a time in this process, on every spool connection. No fork happens in
# the middle of one: the child inherits SQLite's per-process lock bookkeeping for the file,
# and a transaction open at that instant would leave every connection the child opens
# "database is locked". And two connections of one process switching a new file to WAL
# together would get "database is locked" at once, without the busy wait.
_FORK_GUARD = threading.RLock()


def _guarded(method: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _FORK_GUARD:
            return method(*args, **kwargs)

    return call


def _new_guard_in_child() -> None:
    global _FORK_GUARD
    _FORK_GUARD = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _FORK_GUARD.acquire(),
        after_in_parent=lambda: _FORK_GUARD.release(),
        after_in_child=_new_guard_in_child,
    )


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


class SpoolDB:
    """One connection to a spool file. Not thread-safe: one per thread (or behind a lock).

    Example:
        >>> import tempfile, pathlib
        >>> db = SpoolDB(pathlib.Path(tempfile.mkdtemp()) / "spool.db")
        >>> db.append(b"request", spans=2, max_bytes=1000)
        Appended(stored=True, evicted_spans=0)
        >>> db.oldest().spans
        2
        >>> db.close()
    """

    @_guarded
    def __init__(self, path: Path, *, busy_timeout_s: float = 2.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
        # write lock before reading the totals it decides on.
        self._conn = sqlite3.connect(
            str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._set_up()
        except BaseException:
            self._conn.close()
            raise

    def _set_up(self) -> None:
        # Before the first table: a drained spool can give its pages back (see vacuum).
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        # One script, one transaction: two processes creating the file at once agree.
        self._conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @_guarded
    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        self._conn.close()

    # --- appending --------------------------------------------------------------------------

    @_guarded
    def append(self, body: bytes, *, spans: int, max_bytes: int) -> Appended:
        """Store one request, first deleting the oldest requests if the bound needs room.

        The request the sender has in flight is never evicted. A request larger than
        ``max_bytes`` on its own is refused (``stored=False``) and nothing is deleted.
        """
        size = len(body)
        if size > max_bytes:
            return Appended(stored=False, evicted_spans=0)
        evicted = 0
        with self._transaction() as conn:
            (used,) = conn.execute("SELECT bytes FROM totals WHERE id = 1").fetchone()
            if used + size > max_bytes:
                inflight = self._inflight(conn)
                rows = conn.execute(
                    "SELECT id, spans, size FROM requests WHERE id != ? ORDER BY id",
                    (inflight,),
                )
                doomed: list[int] = []
                for row_id, row_spans, row_size in rows:
                    if used + size <= max_bytes:
                        break
                    doomed.append(row_id)
                    evicted += row_spans
                    used -= row_size
                rows.close()
                if used + size > max_bytes:  # only the in-flight request is left: refuse
                    return Appended(stored=False, evicted_spans=0)
                conn.executemany("DELETE FROM requests WHERE id = ?", [(i,) for i in doomed])
            conn.execute(
                "INSERT INTO requests (created_ns, spans, size, body) VALUES (?, ?, ?, ?)",
                (time.time_ns(), spans, size, body),
            )
        return Appended(stored=True, evicted_spans=evicted)

    @staticmethod
    def _inflight(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT inflight FROM sender WHERE id = 1 AND expires_ns > ?", (time.time_ns(),)
        ).fetchone()
        return -1 if row is None or row[0] is None else int(row[0])

    # --- reading and deleting ---------------------------------------------------------------

    @_guarded
    def oldest(self) -> SpooledRequest | None:
        """The oldest request, or None when the spool is empty."""
        row = self._conn.execute(
            "SELECT id, spans, body FROM requests ORDER BY id LIMIT 1"
        ).fetchone()
        return None if row is None else SpooledRequest(int(row[0]), int(row[1]), bytes(row[2]))

    @_guarded
    def delete(self, request_id: int) -> None:
        """Delete one request (sent, or rejected for good) and clear the in-flight mark."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM requests WHERE id = ?", (request_id,))
            conn.execute("UPDATE sender SET inflight = NULL WHERE inflight = ?", (request_id,))

    @_guarded
    def vacuum(self) -> None:
        """Give a drained spool's free pages back to the disk (after an outage filled it)."""
        # executescript steps it to the end (execute() would free a single page).
        self._conn.executescript("PRAGMA incremental_vacuum;")
        # Truncate the log too, but never wait for others: a busy file keeps it till later.
        timeout_ms = self._conn.execute("PRAGMA busy_timeout").fetchone()[0]
        self._conn.execute("PRAGMA busy_timeout=0")
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")

    @_guarded
    def totals(self) -> tuple[int, int, int]:
        """``(bytes, spans, requests)`` held in the spool now."""
        row = self._conn.execute("SELECT bytes, spans, rows FROM totals WHERE id = 1").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    # --- the sender lease -------------------------------------------------------------------

    @_guarded
    def claim_oldest(self, owner: str, duration_s: float) -> SpooledRequest | None:
        """Take (or renew) the sender lease and mark the oldest request in flight, atomically.

        Returns that request, or None when the spool is empty or another live process holds
        the lease. A lease is free when nobody holds it, when it has expired, or when its
        holder's process is gone (the spool is a local file, so the pid is on this machine).
        The request in flight is never evicted by an append.
        """
        now = time.time_ns()
        with self._transaction() as conn:
            row = conn.execute("SELECT owner, pid, expires_ns FROM sender WHERE id = 1").fetchone()
            if row is not None and row[0] != owner and row[2] > now and _pid_alive(int(row[1])):
                return None
            oldest = conn.execute(
                "SELECT id, spans, body FROM requests ORDER BY id LIMIT 1"
            ).fetchone()
            if oldest is None:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO sender (id, owner, pid, expires_ns, inflight) "
                "VALUES (1, ?, ?, ?, ?)",
                (owner, os.getpid(), now + int(duration_s * 1e9), oldest[0]),
            )
        return SpooledRequest(int(oldest[0]), int(oldest[1]), bytes(oldest[2]))

    @_guarded
    def settle(self, owner: str) -> None:
        """Nothing is in flight any more (the send failed): the request may be evicted again."""
        with self._transaction() as conn:
            conn.execute("UPDATE sender SET inflight = NULL WHERE id = 1 AND owner = ?", (owner,))

    @_guarded
    def release(self, owner: str) -> None:
        """Give the lease up now, so another process (or the next start) sends at once."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM sender WHERE id = 1 AND owner = ?", (owner,))
