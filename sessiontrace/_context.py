"""The one context primitive: push a frame onto the OpenTelemetry context, pop it by its token.

Every producer goes through here: the ``using_*`` blocks and decorators, ``set_session``,
trackers and their steps, the HTTP middlewares and the LangChain integration. What the
OpenTelemetry context holds under ``CONTEXT_KEY`` is an :class:`Entry`: the frame in force and
who pushed it; beside it, under ``RESTORE_KEY``, the context that was current before the push.
Whatever carries the OpenTelemetry context (asyncio tasks, the threading instrumentation,
LangChain's executors) carries both.

The one rule, as structlog's bind and reset with tokens: :func:`push` returns a token (the
entry itself) and :func:`pop` with it brings back the context that was current before the
push; whatever was pushed on top and not popped goes with it (a ``set_session()`` inside a
block). An entry is popped only where it is in force, so a block ended in another thread or
task changes nothing and says so. A ``with`` scope, which several threads may enter at once,
keeps no token: :func:`pop_owned` finds its own, the innermost entry it pushed.

An entry holds no context, so a scope keeps the entry it pushed last and pushes it again when
entered over the same outer frame (a loop, a hot path): re-entering a block makes one new
Context and nothing else.

Example:
    >>> from sessiontrace import current_session_id
    >>> from sessiontrace._context import pop, push
    >>> from sessiontrace._frames import merge
    >>> token = push(merge(None, session_id="chat-42"), owner="example")
    >>> current_session_id()
    'chat-42'
    >>> pop(token)
    True
    >>> print(current_session_id())
    None
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from sessiontrace._frames import Frame
from sessiontrace._keys import CONTEXT_KEY, RESTORE_KEY

logger = logging.getLogger("sessiontrace")


class Entry(NamedTuple):
    """What the OpenTelemetry context holds under ``CONTEXT_KEY``; also the token of a push."""

    frame: Frame
    # Who pushed it: a scope, a set_session() handle, a tracker or step, a request. A scope
    # finds its own entry by it on leaving; trackers find their open step by it.
    owner: object


def _runtime_variable() -> contextvars.ContextVar[Context] | None:
    # OpenTelemetry keeps the current Context in one ContextVar of its default runtime
    # context. Reading and setting it directly saves two layers of calls on every block and
    # every span; with another runtime context configured, the public API is used instead.
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(
        variable, contextvars.ContextVar
    ):
        return variable
    return None


_VARIABLE = _runtime_variable()
get_current: Callable[[], Context]
set_current: Callable[[Context], object]
if _VARIABLE is not None:
    get_current = _VARIABLE.get
    set_current = _VARIABLE.set
else:
    get_current = otel_context.get_current
    set_current = otel_context.attach


# The entry an HTTP middleware put in force for a request, kept apart from the OpenTelemetry
# context: instrumentation that attaches a freshly extracted context per request (the
# OpenTelemetry ASGI, WSGI and Flask middlewares) replaces the context that holds ours. Read
# only where the OpenTelemetry context holds no entry at all, and only once a middleware has
# used it (so code without one never pays for the look-up).
request_entry: contextvars.ContextVar[Entry | None] = contextvars.ContextVar(
    "sessiontrace.request", default=None
)
fallback_in_use = False


def use_request_fallback() -> None:
    """Called by the HTTP middlewares: from now on, look for a request's entry too."""
    global fallback_in_use
    fallback_in_use = True


def hold(entry: Entry | None) -> contextvars.Token[Entry | None]:
    """Keep ``entry`` beside the OpenTelemetry context too (see ``request_entry``).

    Returns the token for :func:`release`; from now on entries are looked for there too.
    """
    use_request_fallback()
    return request_entry.set(entry)


def release(token: contextvars.Token[Entry | None]) -> None:
    """Undo the :func:`hold` that returned ``token``."""
    request_entry.reset(token)


def loose(frame: Frame, owner: object) -> Entry:
    """An entry for ``frame`` in no context, for :func:`hold` alone."""
    return Entry(frame, owner)


def entry_in(context: Context) -> Entry | None:
    """The entry ``context`` holds, else the request's (see ``request_entry``)."""
    entry: Entry | None = context.get(CONTEXT_KEY)  # type: ignore[assignment]
    if entry is None and fallback_in_use:
        entry = request_entry.get()
    return entry


def current_entry() -> Entry | None:
    """The entry in force in the current OpenTelemetry context (or request), if any."""
    return entry_in(get_current())


def current_frame() -> Frame | None:
    """The frame in force in the current OpenTelemetry context, if any."""
    entry = entry_in(get_current())
    return None if entry is None else entry.frame


def stacked(frame: Frame, owner: object, context: Context) -> Context:
    """A copy of ``context`` with an entry for ``frame`` on top; nothing is made current.

    For contexts kept for later, such as a tracker's, which its steps start from.
    """
    values = context.copy()
    values[CONTEXT_KEY] = Entry(frame, owner)
    values[RESTORE_KEY] = context
    return Context(values)


def push(frame: Frame, owner: object, span: trace.Span | None = None) -> Entry:
    """Put ``frame`` in force (and ``span`` current, if given); the token for :func:`pop`."""
    return push_entry(Entry(frame, owner), span)


def push_entry(entry: Entry, span: trace.Span | None = None) -> Entry:
    """:func:`push` of an entry made before (a scope's, see :func:`entry_over`)."""
    context = get_current()
    values = context.copy()
    values[CONTEXT_KEY] = entry
    values[RESTORE_KEY] = context
    new = Context(values)
    if span is not None:
        new = trace.set_span_in_context(span, new)
    set_current(new)
    return entry


def pop(token: Entry) -> bool:
    """Undo the push that returned ``token``, and whatever was pushed on top of it.

    Returns False, changing nothing, where ``token`` is not in force (another thread or task).
    """
    for context, entry in _pushes():
        if entry is token:
            set_current(context[RESTORE_KEY])  # type: ignore[arg-type]
            return True
    return False


class Scope(Protocol):
    """What :func:`enter_scope` needs of a ``with`` scope (``_using.SessionScope``)."""

    # The entry pushed last and the outer frame it was built over: frames never change, so
    # entering again over the same outer frame pushes the same entry.
    _last: tuple[Frame | None, Entry] | None

    def _frame_over(self, outer: Frame | None) -> Frame: ...


def entry_over(scope: Scope, outer: Frame | None) -> Entry:
    """The entry ``scope`` pushes over ``outer``: the last one, when ``outer`` is the same."""
    last = scope._last
    if last is not None and last[0] is outer:
        return last[1]
    entry = Entry(scope._frame_over(outer), scope)
    if outer is None or outer.observer is None:
        # Not over a tracker's frame: scopes live on in caches and in user code, and must not
        # keep a finished tracker's frames (its metadata, step) alive.
        scope._last = (outer, entry)
    return entry


def enter_scope(scope: Any) -> Any:
    """:func:`push` for a ``with`` scope, as its ``__enter__``; returns the scope.

    The hot path of every block, so it is one call deep when the scope was entered over the
    same outer frame before: one dict copy, one new Context.
    """
    context = get_current()
    below: Entry | None = context.get(CONTEXT_KEY)  # type: ignore[assignment]
    if below is None and fallback_in_use:
        below = request_entry.get()
    outer = None if below is None else below.frame
    last = scope._last
    values = context.copy()
    values[CONTEXT_KEY] = (
        last[1] if last is not None and last[0] is outer else entry_over(scope, outer)
    )
    values[RESTORE_KEY] = context
    set_current(Context(values))
    return scope


def leave_scope(scope: object, *exc_info: object) -> None:
    """:func:`pop` for a ``with`` scope, as its ``__exit__``: its innermost entry here.

    Whatever was put in force on top of it and not undone (a set_session()) goes with it.
    A scope not in force here (left in another thread or task) changes nothing and is logged.
    """
    context = get_current()
    entry: Entry | None = context.get(CONTEXT_KEY)  # type: ignore[assignment]
    if entry is not None and entry.owner is scope:  # the usual case, without a walk
        set_current(context[RESTORE_KEY])  # type: ignore[arg-type]
    elif not pop_owned(scope):
        logger.warning(
            "sessiontrace: leaving %r, which is not in force in this context; was it "
            "entered in another thread or task?",
            scope,
        )


def pop_owned(owner: object) -> bool:
    """Undo the innermost push by ``owner`` in force here; False, changing nothing, if none."""
    for context, entry in _pushes():
        if entry.owner is owner:
            set_current(context[RESTORE_KEY])  # type: ignore[arg-type]
            return True
    return False


def _pushes(context: Context | None = None) -> Iterator[tuple[Context, Entry]]:
    """Each entry in force, innermost first, with the context its push made current."""
    current: Context | None = get_current() if context is None else context
    while current is not None:
        entry = current.get(CONTEXT_KEY)
        if not isinstance(entry, Entry):
            return
        yield current, entry
        current = current.get(RESTORE_KEY)  # type: ignore[assignment]


def here() -> tuple[int, object]:
    """Where a push happens: the thread, and the asyncio task if one runs (for :func:`undo`)."""
    try:
        task: object = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return threading.get_ident(), task


def undo(token: Entry, pushed_at: tuple[int, object], what: str, fix: str) -> None:
    """:func:`pop` for a handle, a tracker or a step, which say what went wrong when it fails.

    Where ``token`` is in force it is popped, unless a ``with`` block opened after it is still
    open above it: popping would end that block too, so this raises and changes nothing. Where
    it is not in force: in the thread and task that pushed it, a block it was pushed inside has
    ended and taken it out of force already, so there is nothing to undo; anywhere else this
    raises and changes nothing. ``what`` says what was done ("restore() was called"), ``fix``
    how to do it right.
    """
    block: object = None
    for context, entry in _pushes():
        if entry is token:
            if block is not None:
                raise RuntimeError(
                    f"{what} inside `with {block!r}:`, a block opened after it and still "
                    f"open, which it would end too; {fix}"
                )
            set_current(context[RESTORE_KEY])  # type: ignore[arg-type]
            return
        if block is None and getattr(entry.owner, "_frame_over", None) is not None:
            block = entry.owner  # a `with` scope (see Scope)
    if here() != pushed_at:
        raise RuntimeError(
            f"{what} in another thread or asyncio task than the one that started it; {fix}"
        )


def entries(context: Context | None = None) -> Iterator[Entry]:
    """The entries in force in ``context`` (default: the current one), innermost first."""
    for _, entry in _pushes(context):
        yield entry
