"""CommandError: an expected failure a command reports as one line on stderr and an exit code."""

from __future__ import annotations


class CommandError(Exception):
    """Raised by a command to stop with ``message`` on stderr and ``exit_code``.

    Example:
        >>> CommandError("the store is empty", exit_code=1).exit_code
        1
    """

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
