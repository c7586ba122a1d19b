"""The query that clears sessions of every problem ``diagnose`` reports, from summaries alone.

It reads the ``sessions`` table and the span indexes (``spans_session_trace``,
``spans_unsessioned``: see ``_schema.py``), a row per session and an index entry per span,
never a span's row. :meth:`SessionStore.cleared_sessions` runs it; ``_doctor_scan.py``
diagnoses only the sessions it does not clear.

Why a session the query clears has no problem (each problem kind :func:`diagnose` reports
is found among the spans of the session's traces, so each needs something the query sees):

* ``unstamped_root`` / ``unstamped_span``: a trace of the session holds a span without a
  session, which the index ``spans_unsessioned`` lists. Which session such a span is reported
  under (its nearest stamped ancestor's, or one below it) can be any session with spans in
  that trace, so every session of the trace is a suspect.
* ``conflicting_keys``: a span whose keys name two sessions is reported under each of them,
  also under a session whose own spans are all fine. The span is counted in
  ``sessions.conflicts`` of the session its ``session_id`` column names, and that session has
  the trace in ``spans_session_trace``: every session of every trace of such a session is a suspect.
* ``dropped_keys``: ``diagnose`` expects, per service, the set of session keys most stamped
  spans of the session's traces carry, counting other sessions' spans in a shared trace. A span
  misses a key only if two stamped spans among those traces carry different key sets. If they
  all carry the same set there is nothing to miss. A cleared session's own spans all carry one
  key set (``sessions.key_mask_or == key_mask_and``), and so do those of every other session
  in its traces, and it is the same set for all of them; every stamped span of those traces
  belongs to one of these sessions, so all of them agree. Masks are per key and per session,
  not per service or per trace, so this is a superset: spans of two services that disagree,
  or a session that shares one trace with the cleared one and disagrees with itself in
  another, make a suspect, even though ``diagnose`` would find nothing. The attribute limit
  (``sessions.full_spans``) needs no test of its own: a span that lost keys to it is
  unstamped or has a mask that differs from the others.

A few tests cost nothing and make the query refuse summaries that disagree with each other
(a trace whose sessions are missing from ``sessions``, a stamped span without key bits, span
or trace counts that do not add up): such a session is diagnosed from its spans too.

What the fast path does not see: a row the reader cannot read whole (see
``SessionStore.bad_rows``) is met only in the sessions it decodes; and a row whose query
columns disagree with its attribute JSON is judged by its columns (only a program other than
sessiontrace can write one: the exporter and ``sessiontrace migrate`` derive the columns from
the JSON).
"""

# One row per session that cannot have a problem: its id, trace count and span count.
CLEARED = """
WITH pairs (session_id, trace_id, spans) AS (
    SELECT session_id, trace_id, COUNT(*) FROM spans INDEXED BY spans_session_trace
    WHERE session_id IS NOT NULL GROUP BY session_id, trace_id
),
unstamped (trace_id) AS (
    SELECT DISTINCT trace_id FROM spans INDEXED BY spans_unsessioned WHERE session_id IS NULL
),
per_trace (trace_id, spans, suspect) AS (
    SELECT p.trace_id, SUM(p.spans),
        MAX(s.session_id IS NULL
            OR s.key_mask_or != s.key_mask_and
            OR s.key_mask_and = 0
            OR s.conflicts != 0)
        OR MIN(s.key_mask_and) != MAX(s.key_mask_and)
        OR p.trace_id IN unstamped
    FROM pairs AS p
    LEFT JOIN sessions AS s ON s.session_id = p.session_id
    GROUP BY p.trace_id
),
per_session (session_id, traces, spans, own, suspect) AS (
    SELECT p.session_id, COUNT(*), SUM(t.spans), SUM(p.spans), MAX(t.suspect)
    FROM pairs AS p JOIN per_trace AS t ON t.trace_id = p.trace_id
    GROUP BY p.session_id
)
SELECT s.session_id, p.traces, p.spans FROM sessions AS s
JOIN per_session AS p ON p.session_id = s.session_id
WHERE p.suspect = 0 AND p.own = s.span_count AND p.traces = s.trace_count
"""
