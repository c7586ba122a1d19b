"""Diagnose every session of a store, decoding only the sessions whose summaries allow a problem.

:func:`~sessiontrace.store._doctor.diagnose` decodes every span of a session's traces. Over a
whole store that is every span (about a minute at a million). The summary tables the exporter
keeps (``sessions``, ``session_traces``, ``traces``: see ``_schema.py``) already say which
sessions *could* have a problem, so one query over them (one row per session and per trace,
never a span) picks the suspects; only those are diagnosed, and every other session gets the
clean :class:`Diagnosis` that ``diagnose`` would return, with its counts from the summaries.

Why a session the query clears has no problem (each problem kind :func:`diagnose` reports
is found among the spans of the session's traces, so each needs something the query sees):

* ``unstamped_root`` / ``unstamped_span``: a trace of the session holds a span without a
  session, so ``traces.session_spans`` is below ``traces.span_count``. Which session such a
  span is reported under (its nearest stamped ancestor's, or one below it) can be any session
  with spans in that trace, so every session of the trace is a suspect.
* ``conflicting_keys``: a span whose keys name two sessions is reported under each of them,
  also under a session whose own spans are all fine. The span is counted in
  ``sessions.conflicts`` of the session its ``session_id`` column names, and that session has
  the trace in ``session_traces``: every session of every trace of such a session is a suspect.
* ``dropped_keys``: ``diagnose`` expects, per service, the set of session keys most stamped
  spans of the session's traces carry, counting other sessions' spans in a shared trace. A span
  misses a key only if two stamped spans among those traces carry different key sets. If they
  all carry the same set there is nothing to miss. Every trace of a cleared session has one
  key mask over its stamped spans (``traces.key_mask_or == key_mask_and``), and so do the
  session's own spans (``sessions.key_mask_or == key_mask_and``). The session has a span in
  each of its traces, so every trace's mask is the session's and all stamped spans agree.
  Masks are per key and not per service, so this is a superset: spans of two services that
  disagree make a suspect, even though ``diagnose`` compares each service only with itself.
  The attribute limit (``sessions.full_spans``) needs no test of its own: a span that lost
  keys to it is unstamped or has a mask that differs from the others.

A few tests cost nothing and make the query refuse summaries that disagree with each other
(a session's trace missing from ``traces``, a stamped span without key bits, counts that do
not add up): such a session is diagnosed from its spans too.

What the fast path does not see: a row the reader cannot read whole (see
``SessionStore.bad_rows``) is met only in the sessions it decodes; and a row whose query
columns disagree with its attribute JSON is judged by its columns (only a program other than
sessiontrace can write one: the exporter and ``sessiontrace migrate`` derive the columns from
the JSON).
"""

from __future__ import annotations

from collections.abc import Iterator

from sessiontrace.store._doctor import Diagnosis, diagnose
from sessiontrace.store._reader import SessionStore

# One row per session that cannot have a problem: its id, trace count and span count.
_CLEARED = """
WITH conflicted (trace_id) AS (
    SELECT trace_id FROM session_traces
    WHERE session_id IN (SELECT session_id FROM sessions WHERE conflicts != 0)
),
per_session (session_id, traces, spans, stamped, suspect) AS (
    SELECT st.session_id, COUNT(*), SUM(t.span_count), SUM(t.session_spans),
        MAX(t.trace_id IS NULL
            OR t.session_spans != t.span_count
            OR t.key_mask_or != t.key_mask_and
            OR t.key_mask_and = 0
            OR st.trace_id IN conflicted)
    -- In trace order, the lookups in traces go through that table front to back. At a million
    -- spans its pages do not fit SQLite's default cache, and in session order they are read
    -- at random (this query: 0.6 s against 0.8 s; the join alone, 0.3 s against 0.7 s).
    FROM (SELECT session_id, trace_id FROM session_traces ORDER BY trace_id) AS st
    LEFT JOIN traces AS t ON t.trace_id = st.trace_id
    GROUP BY st.session_id
)
SELECT s.session_id, p.traces, p.spans FROM sessions AS s
JOIN per_session AS p ON p.session_id = s.session_id
WHERE p.suspect = 0
    AND s.key_mask_or = s.key_mask_and
    AND s.key_mask_and != 0
    AND p.stamped >= s.span_count
"""


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
            # The reader's lenient query runner: text that is not UTF-8 does not fail it.
            rows = store._rows(_CLEARED)
            self._cleared = {session_id: (traces, spans) for session_id, traces, spans in rows}

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
