"""The internal-error guard: observability must never break the program it observes.

Everything on the span path (processor hooks, exporters, propagators, middlewares, patched
functions) runs under one guard, :class:`guarded`: a context manager and a decorator that
catches ``Exception``, logs it once per place to the ``sessiontrace`` logger with its
traceback, and lets the program go on. It has one more spelling, ``except Exception:
internal_error(where)``, in two kinds of places: the processors' ``on_start``/``on_end``, run
for every span, where a ``try`` costs nothing until something fails and a ``with`` about 0.1 µs;
and the exporters, whose failure must also be counted as lost spans before it is reported.
Tests switch on strict mode so that our own bugs surface as failures.

Every "say it once" in the package goes through :class:`LogOnce`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any, TypeVar

logger = logging.getLogger("sessiontrace")
F = TypeVar("F", bound=Callable[..., Any])

_strict = False


class LogOnce:
    """Logs a reason at ``level`` the first time it is seen, and at ``repeats`` after.

    A full disk or a locked file fails every attempt the same way; the first is worth a
    warning, the repeats only clutter the log. ``repeats=None`` keeps them out of it.

    Example:
        >>> once = LogOnce(repeats=logging.DEBUG)
        >>> [logging.getLevelName(once.level("disk full")) for _ in range(2)]
        ['WARNING', 'DEBUG']
    """

    def __init__(self, level: int = logging.WARNING, repeats: int | None = None) -> None:
        self._level = level
        self._repeats = repeats
        # No lock, so nothing can be held across os.fork(): two threads failing at once for
        # a new reason may both log it, which is harmless.
        self._seen: set[Hashable] = set()

    def level(self, reason: Hashable) -> int | None:
        """The level to log ``reason`` at now (it is remembered); None: do not log it."""
        first = reason not in self._seen
        self._seen.add(reason)
        return self._level if first else self._repeats

    def log(self, reason: Hashable, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message % args`` for ``reason``, at the level :meth:`level` gives."""
        level = self.level(reason)
        if level is not None:
            logger.log(level, message, *args, exc_info=exc_info)

    def forget(self) -> None:
        """Forget the reasons seen, so each is logged at ``level`` again."""
        self._seen = set()


# Internal errors: each place once, with its traceback.
_internal = LogOnce(logging.ERROR)
_internal_lock = threading.Lock()


def internal_error(where: str) -> None:
    """Report the exception being handled in ``where``; re-raise it only in strict mode.

    The guard's spelling for an ``except Exception:`` block. Each place is logged once, with
    its traceback, so a bug hit on every span does not flood the application's logs.
    """
    if _strict:
        raise
    with _internal_lock:  # one traceback per place, even from many threads at once
        level = _internal.level(where)
    if level is not None:
        logger.log(
            level,
            "sessiontrace: internal error in %s; the program goes on without it. Please report "
            "this at the sessiontrace issue tracker (this message is logged once).",
            where,
            exc_info=True,
        )


class guarded:
    """Run a block or a function so that an internal error is reported, never raised.

    Args:
        where: names the place in the report, e.g. ``"SQLiteSpanExporter.export"``.
        default: what a decorated function returns when it failed.

    Example (tests run in strict mode, where the guard raises; programs do not):
        >>> from sessiontrace._guard import guarded, set_strict
        >>> strict = set_strict(False)
        >>> with guarded("an example"):
        ...     {}["missing"]
        >>> @guarded("a parser", default=0)
        ... def parse(text):
        ...     return int(text)
        >>> parse("x")
        0
        >>> _ = set_strict(strict)
    """

    __slots__ = ("default", "where")

    def __init__(self, where: str, *, default: Any = None) -> None:
        self.where = where
        self.default = default

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_type is None or not issubclass(exc_type, Exception):
            return False  # KeyboardInterrupt, SystemExit and the like go on up
        if _strict:
            return False
        internal_error(self.where)
        return True

    def __call__(self, func: F) -> F:
        where, default = self.where, self.default

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception:
                internal_error(where)
                return default

        return run  # type: ignore[return-value]


def set_strict(strict: bool) -> bool:
    """Turn strict mode on or off; returns the previous setting. For tests."""
    global _strict
    previous, _strict = _strict, strict
    return previous


def reset_reported() -> None:
    """Forget which places were logged, so the next error in each is logged again."""
    with _internal_lock:
        _internal.forget()
