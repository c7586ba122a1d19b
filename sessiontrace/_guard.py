"""The internal-error guard: observability must never break the program it observes.

Code on the span path (processor hooks, exporters, patched functions) catches ``Exception``
and calls :func:`internal_error`, which logs once per place to the ``sessiontrace`` logger and
lets the program go on. Tests switch on strict mode so that our own bugs surface as failures.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("sessiontrace")

_reported: set[str] = set()
_lock = threading.Lock()
_strict = False


def internal_error(where: str) -> None:
    """Report the exception being handled in ``where``; re-raise it only in strict mode.

    Call it from an ``except Exception:`` block. Each place is logged once, with its traceback,
    so a bug hit on every span does not flood the application's logs.
    """
    if _strict:
        raise
    with _lock:
        first = where not in _reported
        _reported.add(where)
    if first:
        logger.exception(
            "sessiontrace: internal error in %s; the span goes on without it. Please report "
            "this at the sessiontrace issue tracker (this message is logged once).",
            where,
        )


def set_strict(strict: bool) -> bool:
    """Turn strict mode on or off; returns the previous setting. For tests."""
    global _strict
    previous, _strict = _strict, strict
    return previous


def reset_reported() -> None:
    """Forget which places were logged, so the next error in each is logged again."""
    with _lock:
        _reported.clear()


class RepeatQuieter:
    """The log level for a failure: WARNING the first time a reason is seen, DEBUG after.

    A full disk or a locked file fails every attempt the same way; the first is worth a
    warning, the repeats only clutter the log.

    Example:
        >>> quieter = RepeatQuieter()
        >>> [logging.getLevelName(quieter.level("disk full")) for _ in range(2)]
        ['WARNING', 'DEBUG']
    """

    def __init__(self) -> None:
        # No lock, so nothing can be held across os.fork(): two threads failing at once for
        # a new reason may both warn, which is harmless.
        self._seen: set[str] = set()

    def level(self, reason: str) -> int:
        """WARNING for a reason not seen before (it is remembered), else DEBUG."""
        first = reason not in self._seen
        self._seen.add(reason)
        return logging.WARNING if first else logging.DEBUG
