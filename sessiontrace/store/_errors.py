"""The errors opening and reading a store raise: no store, not a store, no access, no session.

They are re-exported from :mod:`sessiontrace.store`, which is where users import them.

Example:
    >>> from sessiontrace.store import SessionNotFoundError
    >>> issubclass(SessionNotFoundError, LookupError)
    True
"""

from __future__ import annotations

import errno
from pathlib import Path


class StoreNotFoundError(FileNotFoundError):
    """There is no store at the given path.

    ``filename`` holds the path; the message says how to create the store.

    Example:
        >>> from sessiontrace.store import SessionStore
        >>> try:
        ...     SessionStore("/nonexistent/sessions.db")
        ... except StoreNotFoundError as exc:
        ...     print(exc.filename)
        /nonexistent/sessions.db
    """

    def __init__(self, path: Path) -> None:
        super().__init__(
            errno.ENOENT,
            f"no session store at {path}; run your program with sessiontrace.configure() "
            "first, or pass --store PATH",
            str(path),
        )

    def __str__(self) -> str:
        return str(self.strerror)


class StoreFormatError(ValueError):
    """The file exists but is not a store this version of sessiontrace can read.

    Example:
        >>> issubclass(StoreFormatError, ValueError)
        True
    """


class StoreAccessError(PermissionError):
    """The store exists but this user cannot read it; the message names the cause and the fix.

    Example:
        >>> issubclass(StoreAccessError, PermissionError)
        True
    """

    def __str__(self) -> str:
        return str(self.strerror)


class SessionNotFoundError(LookupError):
    """No span in the store carries the requested session id.

    Attributes:
        session_id: The id that was looked up.
        path: The store that was searched.

    Example:
        >>> issubclass(SessionNotFoundError, LookupError)
        True
    """

    def __init__(self, session_id: str, path: Path) -> None:
        super().__init__(
            f"no session {session_id!r} in the store at {path}; "
            "run `sessiontrace sessions` to list the session ids it holds"
        )
        self.session_id = session_id
        self.path = path
