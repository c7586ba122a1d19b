"""Celery: a task runs with the session that was in force where it was sent.

``instrument()`` connects Celery's signals: ``before_task_publish`` puts ``carrier()`` into the
message headers, ``task_prerun`` puts it back in force in the worker (trace parent included)
and ``task_postrun`` takes it out. Nothing here raises into Celery.

Example:
    >>> from sessiontrace.integrations import celery as celery_sessions
    >>> celery_sessions.instrument()
    >>> celery_sessions.uninstrument()
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from sessiontrace._guard import guarded
from sessiontrace._propagation import carrier, using_carrier

try:
    from celery import signals  # type: ignore[import-untyped,unused-ignore]
except ImportError as error:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "sessiontrace.integrations.celery needs celery: pip install celery"
    ) from error

__all__ = ["HEADER", "instrument", "uninstrument"]

HEADER = "sessiontrace"  # the message header that carries carrier()'s dict
_active: dict[str, AbstractContextManager[None]] = {}
_lock = threading.Lock()


@guarded("celery before_task_publish")
def _before_publish(sender: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    values = carrier()
    if values and headers is not None:
        headers[HEADER] = values


@guarded("celery task_prerun")
def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    values = getattr(getattr(task, "request", None), HEADER, None)
    if not values or task_id is None:
        return
    scope = using_carrier(values)
    scope.__enter__()
    with _lock:
        _active[task_id] = scope


@guarded("celery task_postrun")
def _postrun(task_id: str | None = None, **_: Any) -> None:
    with _lock:
        scope = _active.pop(task_id, None) if task_id is not None else None
    if scope is not None:
        scope.__exit__(None, None, None)


def instrument() -> None:
    """Carry the session from where a task is sent to where it runs. Idempotent."""
    signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid=HEADER)
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid=HEADER)
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid=HEADER)


def uninstrument() -> None:
    """Disconnect the signals :func:`instrument` connected."""
    signals.before_task_publish.disconnect(_before_publish, dispatch_uid=HEADER)
    signals.task_prerun.disconnect(_prerun, dispatch_uid=HEADER)
    signals.task_postrun.disconnect(_postrun, dispatch_uid=HEADER)
