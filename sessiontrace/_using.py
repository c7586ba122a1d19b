"""The using_* context managers and decorators, and the readers of what is in force.

Arguments are validated when the scope is created, so a bad id fails at the line that passed
it and nothing is ever half-applied. Entering merges with what is in force (once per outer
frame: the result is reused) and leaving restores exactly the context that was current before,
also on an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from sessiontrace._context import (
    Entry,
    current_frame,
    enter_scope,
    entry_over,
    leave_scope,
    pop,
    push_entry,
)
from sessiontrace._frames import EMPTY_CONTEXT, EMPTY_FRAME, Frame, SessionContext, merge
from sessiontrace._validate import check_id, check_metadata, check_tags
from sessiontrace._wrap import AsyncContextFromSync, wrap_function

F = TypeVar("F", bound=Callable[..., Any])


class SessionScope(AsyncContextFromSync):
    """Puts session values in force: a context manager (``with``/``async with``) and a decorator.

    Made by :func:`using_session`, :func:`using_user`, :func:`using_metadata`,
    :func:`using_tags`, :func:`using_attributes` and :func:`without_session`. One scope object
    may be entered again, nested, or from several tasks or threads at once: each entry keeps
    what it must restore in its own context, never on the scope.

    Example:
        >>> from sessiontrace import current, using_session
        >>> scope = using_session("chat-42")
        >>> with scope:
        ...     current().session_id
        'chat-42'
    """

    __slots__ = (
        "_clear",
        "_last",
        "_metadata",
        "_session_id",
        "_tags",
        "_user_id",
    )

    def __init__(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        clear: bool = False,
    ) -> None:
        self._session_id = None if session_id is None else check_id(session_id, "session_id")
        self._user_id = None if user_id is None else check_id(user_id, "user_id")
        self._metadata = None if metadata is None else check_metadata(metadata)
        self._tags = () if tags is None else check_tags(tags)
        self._clear = clear
        # The entry pushed last and the outer frame it was built over, as one tuple so that
        # threads replacing it never pair one entry's outer with another's (_context).
        self._last: tuple[Frame | None, Entry] | None = None

    def __repr__(self) -> str:
        fields = {
            "session_id": self._session_id,
            "user_id": self._user_id,
            "metadata": dict(self._metadata) if self._metadata else None,
            "tags": list(self._tags) or None,
        }
        shown = ", ".join(f"{name}={value!r}" for name, value in fields.items() if value)
        return f"{type(self).__name__}({'clear' if self._clear else shown})"

    def _frame_over(self, outer: Frame | None) -> Frame:
        """The frame this scope puts in force over ``outer``."""
        if self._clear:
            return EMPTY_FRAME
        return merge(
            outer,
            session_id=self._session_id,
            user_id=self._user_id,
            metadata=self._metadata,
            tags=self._tags,
        )

    # Entering and leaving are _context's push and pop for scopes, one call deep: every
    # block runs them.
    __enter__ = enter_scope
    __exit__ = leave_scope

    def __call__(self, func: F) -> F:
        """Decorate ``func`` (plain, async, generator or async generator) with this scope."""
        if not callable(func):
            raise TypeError(
                f"{type(self).__name__} decorates functions, got {type(func).__name__}; "
                "use it as `with ...:` to wrap a block"
            )
        return wrap_function(func, _ScopeHooks(self))


class _ScopeHooks:
    """Runs a scope around each stretch of a decorated function's own code."""

    __slots__ = ("_scope",)

    def __init__(self, scope: SessionScope) -> None:
        self._scope = scope

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        return None

    def enter(self, state: None) -> Entry:
        scope = self._scope
        return push_entry(entry_over(scope, current_frame()))

    def exit(self, state: None, token: Entry) -> None:
        pop(token)

    def item(self, state: None, value: Any) -> None:
        pass

    def finish(self, state: None, error: BaseException | None, result: Any) -> None:
        pass


# Scopes never change, so using_session(x) and using_user(x) hand out one scope per value.
_CACHE_SIZE = 4096
_session_scopes: dict[str, SessionScope] = {}
_user_scopes: dict[str, SessionScope] = {}


def _cached_scope(cache: dict[str, SessionScope], value: str, argument: str) -> SessionScope:
    scope = cache.get(value)
    if scope is None:
        scope = (
            SessionScope(session_id=value)
            if argument == "session_id"
            else SessionScope(user_id=value)
        )
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[value] = scope
    return scope


def using_session(session_id: str) -> SessionScope:
    """Put ``session_id`` in force for a block or a decorated function.

    Raises:
        TypeError: ``session_id`` is not a str.
        ValueError: it is empty, over 200 characters, or holds control characters.

    Example:
        >>> from sessiontrace import current_session_id, using_session
        >>> with using_session("chat-42"):
        ...     current_session_id()
        'chat-42'
    """
    if type(session_id) is str:
        scope = _session_scopes.get(session_id)
        return (
            scope if scope is not None else _cached_scope(_session_scopes, session_id, "session_id")
        )
    return SessionScope(session_id=required(session_id, "session_id", "using_session"))


def using_user(user_id: str) -> SessionScope:
    """Put ``user_id`` in force for a block or a decorated function.

    Example:
        >>> from sessiontrace import current_user_id, using_user
        >>> with using_user("ada"):
        ...     current_user_id()
        'ada'
    """
    if type(user_id) is str:
        scope = _user_scopes.get(user_id)
        return scope if scope is not None else _cached_scope(_user_scopes, user_id, "user_id")
    return SessionScope(user_id=required(user_id, "user_id", "using_user"))


def using_metadata(metadata: Mapping[str, Any]) -> SessionScope:
    """Merge ``metadata`` (str keys, JSON-serialisable values) into what is in force.

    Nested blocks merge key by key; the inner value wins.

    Example:
        >>> from sessiontrace import current, using_metadata
        >>> with using_metadata({"plan": "pro"}), using_metadata({"region": "eu"}):
        ...     dict(current().metadata)
        {'plan': 'pro', 'region': 'eu'}
    """
    return SessionScope(metadata=required(metadata, "metadata", "using_metadata"))


def using_tags(tags: Iterable[str]) -> SessionScope:
    """Add ``tags`` (a list of str) to the tags in force; nested tags form a union.

    Example:
        >>> from sessiontrace import current, using_tags
        >>> with using_tags(["beta"]), using_tags(["web", "beta"]):
        ...     current().tags
        ('beta', 'web')
    """
    return SessionScope(tags=required(tags, "tags", "using_tags"))


def using_attributes(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
) -> SessionScope:
    """Put any of session id, user id, metadata and tags in force at once; None leaves one as is.

    Example:
        >>> from sessiontrace import current, using_attributes
        >>> with using_attributes(session_id="chat-42", user_id="ada", tags=["beta"]):
        ...     current().user_id
        'ada'
    """
    return SessionScope(session_id=session_id, user_id=user_id, metadata=metadata, tags=tags)


def without_session() -> SessionScope:
    """A block or decorator under which nothing from sessiontrace is in force.

    For background work started from inside a session that must not inherit it, such as a
    long-lived worker started while handling one request.

    Example:
        >>> from sessiontrace import current_session_id, using_session, without_session
        >>> with using_session("chat-42"), without_session():
        ...     print(current_session_id())
        None
    """
    return SessionScope(clear=True)


def required(value: Any, argument: str, function: str) -> Any:
    """``value``, unless it is None: then a TypeError that says how to pass None."""
    if value is None:
        raise TypeError(
            f"{function}() needs {argument}, got None; to put it in force only when you have "
            f"one, use using_attributes({argument}=...), which accepts None"
        )
    return value


def current() -> SessionContext:
    """An immutable snapshot of the session, user, metadata and tags in force.

    Example:
        >>> from sessiontrace import current, using_attributes
        >>> with using_attributes(session_id="chat-42", tags=["beta"]):
        ...     snapshot = current()
        >>> snapshot.session_id, snapshot.tags
        ('chat-42', ('beta',))
    """
    frame = current_frame()
    return EMPTY_CONTEXT if frame is None else frame.snapshot()


def current_session_id() -> str | None:
    """The session id in force, or None.

    Example:
        >>> from sessiontrace import current_session_id
        >>> print(current_session_id())
        None
    """
    frame = current_frame()
    return None if frame is None else frame.session_id


def current_user_id() -> str | None:
    """The user id in force, or None.

    Example:
        >>> from sessiontrace import current_user_id, using_user
        >>> with using_user("ada"):
        ...     current_user_id()
        'ada'
    """
    frame = current_frame()
    return None if frame is None else frame.user_id
