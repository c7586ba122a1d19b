"""The local session store: an OpenTelemetry exporter that writes SQLite, and its reader.

Example:
    >>> from sessiontrace.store import SQLiteSpanExporter, SessionStore
    >>> exporter = SQLiteSpanExporter("/tmp/sessiontrace-example.db")  # behind a BatchSpanProcessor
    >>> with SessionStore("/tmp/sessiontrace-example.db") as store:  # doctest: +SKIP
    ...     for summary in store.sessions():
    ...         print(summary.session_id, summary.trace_count, summary.total_tokens)

A session step by step (one step per tracker step, or per trace for a plain session):

    >>> from sessiontrace.store import steps, summary
    >>> with SessionStore("/tmp/sessiontrace-example.db") as store:  # doctest: +SKIP
    ...     for step in steps(store, "trip-1"):
    ...         print(step.index, step.name, step.total_tokens, step.state)
    ...     print(summary(store, "trip-1"))

Spans the export path dropped, and rows the reader could not read whole:

    >>> with SessionStore("/tmp/sessiontrace-example.db") as store:  # doctest: +SKIP
    ...     for loss in store.losses():
    ...         print(loss.kind, loss.count, loss.reason, loss.message)
    ...     print([bad.message for bad in store.bad_rows])

Spans that lost their session (what ``sessiontrace doctor`` reports), with the likely cause:

    >>> from sessiontrace.store import diagnose
    >>> with SessionStore("/tmp/sessiontrace-example.db") as store:  # doctest: +SKIP
    ...     for problem in diagnose(store, "trip-1").problems:
    ...         print(problem.trace_id, problem.cause, problem.span_names, problem.fix)
"""

from __future__ import annotations

from sessiontrace.store._diagnosis import Diagnosis, Problem, ProblemSpan
from sessiontrace.store._doctor import diagnose
from sessiontrace.store._errors import (
    SessionNotFoundError,
    StoreAccessError,
    StoreFormatError,
    StoreNotFoundError,
)
from sessiontrace.store._exporter import SQLiteSpanExporter
from sessiontrace.store._models import (
    BadRow,
    LLMCall,
    SessionSummary,
    SessionTotals,
    StoredEvent,
    StoredLoss,
    StoredSpan,
    StoredStep,
    StoredTrace,
    StoredTrackerSummary,
)
from sessiontrace.store._paging import SessionPage
from sessiontrace.store._reader import SessionStore
from sessiontrace.store._schema import DEFAULT_STORE_PATH, SCHEMA_VERSION
from sessiontrace.store._steps import children, outside_steps, steps, summary

__all__ = [
    "BadRow",
    "DEFAULT_STORE_PATH",
    "Diagnosis",
    "LLMCall",
    "Problem",
    "ProblemSpan",
    "SCHEMA_VERSION",
    "SQLiteSpanExporter",
    "SessionNotFoundError",
    "SessionPage",
    "SessionStore",
    "SessionSummary",
    "SessionTotals",
    "StoreAccessError",
    "StoreFormatError",
    "StoreNotFoundError",
    "StoredEvent",
    "StoredLoss",
    "StoredSpan",
    "StoredStep",
    "StoredTrace",
    "StoredTrackerSummary",
    "children",
    "diagnose",
    "outside_steps",
    "steps",
    "summary",
]
