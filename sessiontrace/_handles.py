"""set_session() and its kin: values in force until the returned handle restores them.

For code with no block to wrap (a Streamlit rerun, a notebook cell, a request's start and end
hooks). Each call pushes an entry (``_context.push``) and hands back its token in a
:class:`SessionHandle`; restoring it follows the one rule of ``_context.undo``.
"""

from __future__ import annotations

from sessiontrace._context import Entry, current_frame, here, push, undo
from sessiontrace._using import SessionScope, required


class SessionHandle:
    """Undoes one :func:`set_session`, :func:`set_user` or :func:`clear_session` call.

    Call :meth:`restore` from the same thread or task, for example from a framework's
    end-of-request hook. It is also a context manager that restores on exit.

    Example:
        >>> from sessiontrace import current_session_id, set_session
        >>> handle = set_session("chat-42")
        >>> current_session_id()
        'chat-42'
        >>> handle.restore()
        >>> print(current_session_id())
        None
    """

    __slots__ = ("_pushed_at", "_token")

    def __init__(self, scope: SessionScope) -> None:
        # The handle owns the entry it pushes: a scope's entry would read as an open block.
        self._token: Entry | None = push(scope._frame_over(current_frame()), self)
        self._pushed_at = here()

    def restore(self) -> None:
        """Put back what was in force before the call that made this handle.

        If a ``with`` block that the call was made in has ended since, it took the values
        out of force already, and this does nothing.

        Raises:
            RuntimeError: called from another thread or task than the one that set it, or
                inside a ``with`` block opened after it (which it would end too); nothing
                changes.
        """
        token = self._token
        if token is None:
            return
        undo(
            token,
            self._pushed_at,
            "restore() was called",
            "call both in the same one and at the same level (for example in a request's "
            "start and end hooks), or use `with using_session(...)` instead",
        )
        self._token = None

    def __enter__(self) -> SessionHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()


def set_session(session_id: str, user_id: str | None = None) -> SessionHandle:
    """Put ``session_id`` (and ``user_id``, if given) in force until the handle is restored.

    For code with no block to wrap: a Streamlit rerun, a notebook cell, a request hook.
    Metadata and tags in force stay in force.

    Example:
        >>> from sessiontrace import current, set_session
        >>> handle = set_session("chat-42", user_id="ada")
        >>> current().user_id
        'ada'
        >>> handle.restore()
    """
    scope = SessionScope(
        session_id=required(session_id, "session_id", "set_session"), user_id=user_id
    )
    return SessionHandle(scope)


def set_user(user_id: str) -> SessionHandle:
    """Put ``user_id`` in force until the returned handle is restored.

    Example:
        >>> from sessiontrace import current_user_id, set_user
        >>> handle = set_user("ada")
        >>> current_user_id()
        'ada'
        >>> handle.restore()
    """
    scope = SessionScope(user_id=required(user_id, "user_id", "set_user"))
    return SessionHandle(scope)


def clear_session() -> SessionHandle:
    """Take everything sessiontrace has in force out of force, until the handle is restored.

    Example:
        >>> from sessiontrace import clear_session, current_session_id, set_session
        >>> first = set_session("chat-42")
        >>> cleared = clear_session()
        >>> print(current_session_id())
        None
        >>> cleared.restore(); first.restore()
    """
    scope = SessionScope(clear=True)
    return SessionHandle(scope)
