"""Carry the session into threads: ``wrap(fn)`` and a context-carrying thread pool.

``threading.Thread``, ``ThreadPoolExecutor`` and ``loop.run_in_executor`` run their functions
in a fresh context, so neither the session nor the current span follows them. ``wrap``
captures the whole context (contextvars, hence the OpenTelemetry context too) where it is
called and runs the function inside a copy of it, wherever and however often it is called.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to the current context: the session in force now applies when it runs.

    Each call runs in its own copy of the captured context, so the wrapped function may run in
    several threads at once, and what it sets does not leak back. It composes with
    ``opentelemetry-instrumentation-threading``: the captured context simply wins inside ``fn``.

    Example:
        >>> import threading
        >>> from sessiontrace import current_session_id, using_session, wrap
        >>> seen = []
        >>> with using_session("chat-42"):
        ...     worker = threading.Thread(target=wrap(lambda: seen.append(current_session_id())))
        >>> worker.start(); worker.join()
        >>> seen
        ['chat-42']
    """
    if not callable(fn):
        raise TypeError(f"wrap() takes a callable, got {type(fn).__name__}")
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured_context


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the context of the code that submitted them.

    Use it wherever a thread pool is used, including ``loop.run_in_executor(executor, fn)``.

    Example:
        >>> from sessiontrace import ContextThreadPoolExecutor, current_session_id, using_session
        >>> with ContextThreadPoolExecutor(max_workers=2) as pool, using_session("chat-42"):
        ...     pool.submit(current_session_id).result()
        'chat-42'
    """

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)
