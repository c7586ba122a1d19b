"""Diagnose every session of a store, decoding only the sessions whose summaries allow a problem.

:func:`~sessiontrace.store._doctor.diagnose` decodes every span of a session's traces. Over a
whole store that is every span (about a minute at a million). The summary tables the exporter
keeps (``sessions``, with the indexes of each session's traces and of the spans outside any
session: see ``_schema.py``) already say which sessions *could* have a problem, so one query
over them (``_cleared.py``, which also says why a session it clears has no problem) picks the
suspects; only those are diagnosed, and every other session gets the clean
:class:`Diagnosis` that ``diagnose`` would return, with its counts from the summaries.
"""

from __future__ import annotations

from collections.abc import Iterator

from sessiontrace.store._diagnosis import Diagnosis
from sessiontrace.store._doctor import diagnose
from sessiontrace.store._reader import SessionStore


class SessionSweep:
    """Every listed session's :class:`Diagnosis`, in listing order (most recently active first).

    Equal to ``[diagnose(store, s.session_id) for s in store.sessions()]``, but only the
    :attr:`suspects` are decoded. Building one reads the listing and the summary tables;
    iterating diagnoses the suspects one by one, as it goes.

    Args:
        store: The store to check.
        every_span: Decode every session, not only the suspects: the only way to meet rows
            another program wrote or damaged in sessions whose summaries look clean.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     sweep = SessionSweep(store)
        ...     print(len(sweep), "sessions,", len(sweep.suspects), "to decode")
        ...     troubled = [found for found in sweep if not found.ok]
    """

    def __init__(self, store: SessionStore, *, every_span: bool = False) -> None:
        self._store = store
        self.session_ids: tuple[str, ...] = tuple(
            summary.session_id for summary in store.sessions()
        )
        self._cleared: dict[str, tuple[int, int]] = {}
        if not every_span:  # else every session is decoded: rows other programs wrote too
            self._cleared = store.cleared_sessions()

    def __len__(self) -> int:
        return len(self.session_ids)

    @property
    def suspects(self) -> tuple[str, ...]:
        """The sessions that are decoded (those the summaries do not clear), in listing order."""
        return tuple(sid for sid in self.session_ids if sid not in self._cleared)

    def __iter__(self) -> Iterator[Diagnosis]:
        for session_id in self.session_ids:
            counts = self._cleared.get(session_id)
            if counts is None:
                yield diagnose(self._store, session_id)
            else:
                yield Diagnosis(
                    session_id=session_id,
                    traces_checked=counts[0],
                    spans_checked=counts[1],
                    problems=(),
                )
