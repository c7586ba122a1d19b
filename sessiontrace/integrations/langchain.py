"""LangChain and LangGraph: the conversation named in a run's config is the session of its spans.

Users name a conversation in ``config={"metadata": {"thread_id": ...}}`` (or ``session_id``,
``conversation_id``); LangGraph's checkpointers use ``config={"configurable": {"thread_id":
...}}``. :func:`instrument` wraps the entry points of every LangChain runnable (``invoke``,
``ainvoke``, ``stream``, ``astream``, ``batch``, ``abatch``) so that a top-level run whose
config names a conversation runs with that session in force: every span started inside it
(LangChain's, OpenAI's, a tool's) is stamped by :class:`~sessiontrace.SessionSpanProcessor`.

Why the entry points and not a callback handler: a handler would have to put the session in
force in ``on_chain_start`` and take it out in ``on_chain_end``, and LangChain runs those two
callbacks in different contexts (async handlers, executor threads), so the set and the reset
would not pair up. A wrapper sets and resets within the one call, as every scope here does.

A session already in force (``using_session``) wins over the config, and is protected from
``openinference-instrumentation-langchain``, which rewrites ``session.id`` and ``metadata`` from
the run's metadata when a span ends (see ``docs/integrations.md``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sessiontrace import _keys
from sessiontrace._context import Entry, current_frame, hold, loose, pop, push, release
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._using import SessionScope, using_session
from sessiontrace._validate import check_id
from sessiontrace._wrap import wrap_function

try:
    from langchain_core.runnables import Runnable
except ImportError as error:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "sessiontrace.integrations.langchain needs langchain-core: "
        "pip install 'sessiontrace[langchain]'"
    ) from error

__all__ = ["METADATA_KEYS", "instrument", "is_instrumented", "uninstrument"]

logger = logging.getLogger("sessiontrace")

# Where a run's config names its conversation, in the order they are tried (the order
# openinference-instrumentation-langchain reads them in, so both agree on a run naming two).
METADATA_KEYS: tuple[str, ...] = ("session_id", "conversation_id", "thread_id")
_SINGLE = ("invoke", "ainvoke", "stream", "astream")
_MANY = ("batch", "abatch")
_MARK = "__sessiontrace_langchain__"

_lock = threading.Lock()
_patched: list[tuple[type[Any], str, Any]] = []
_protected: list[tuple[Any, str, Any]] = []
_once = LogOnce()


def session_from_config(config: object) -> str | None:
    """The valid conversation id a run's config names, or None.

    An invalid id is ignored (logged once per reason), never an error in the run.

    Example:
        >>> session_from_config({"metadata": {"thread_id": "chat-42"}})
        'chat-42'
        >>> print(session_from_config({"configurable": {"thread_id": ""}}))
        None
    """
    if not isinstance(config, Mapping):
        return None
    for section, keys in (("metadata", METADATA_KEYS), ("configurable", ("thread_id",))):
        values = config.get(section)
        if not isinstance(values, Mapping):
            continue
        for key in keys:
            value = values.get(key)
            if value is None:
                continue
            try:
                return check_id(value, f"config[{section!r}][{key!r}]")
            except (TypeError, ValueError) as error:
                _log_once(f"{section}.{key}", str(error))
                return None
    return None


def _log_once(reason: str, message: str) -> None:
    _once.log(reason, "sessiontrace: %s; the run goes on without a session (logged once)", message)


def _config_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # args[0] is the runnable, args[1] the input, args[2] the config (positional or keyword).
    if "config" in kwargs:
        return kwargs["config"]
    return args[2] if len(args) > 2 else None


class _RunHooks:
    """Puts the session a top-level run's config names in force while its code runs."""

    __slots__ = ("_many",)

    def __init__(self, many: bool) -> None:
        self._many = many

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SessionScope | None:
        with guarded("langchain run entry"):
            frame = current_frame()
            if frame is not None and frame.session_id is not None:
                return None  # a session in force wins (explicit, or this run's own)
            config = _config_argument(args, kwargs)
            if not self._many:
                session_id = session_from_config(config)
            elif isinstance(config, list | tuple):
                # One session for the whole batch only if every run names the same one; else
                # each run's own invoke puts its own in force.
                found = {session_from_config(each) for each in config}
                session_id = found.pop() if len(found) == 1 else None
            else:
                session_id = session_from_config(config)
            return None if session_id is None else using_session(session_id)
        return None

    def enter(self, scope: SessionScope | None) -> Any:
        if scope is None:
            return None
        return push(scope._frame_over(current_frame()), scope)

    def exit(self, scope: SessionScope | None, token: Entry | None) -> None:
        if token is not None:
            pop(token)

    def item(self, scope: SessionScope | None, value: Any) -> None:
        pass

    def finish(self, scope: SessionScope | None, error: BaseException | None, result: Any) -> None:
        pass


_HOOKS = {False: _RunHooks(many=False), True: _RunHooks(many=True)}


class _CallbackHooks(_RunHooks):
    """Around a callback manager's ``on_*_start``: the run's own session, while handlers run.

    A sequence's ``batch()`` starts every input's run in the caller's context before any
    input's own call runs, so the entry-point wrapper cannot help there; the handlers that
    start spans for those runs (a LangChain instrumentation's tracer) run inside this call,
    and the manager carries each run's metadata. Those handlers attach a context in
    ``on_*_start`` and detach it in ``on_*_end``, so the session must not go into the
    OpenTelemetry context here (their later detach would bring it back): it goes into the
    variable beside it that the processor reads when the context holds no session, set and
    reset within the one call.
    """

    __slots__ = ()

    def enter(self, scope: SessionScope | None) -> Any:
        if scope is None:
            return None
        return hold(loose(scope._frame_over(None), scope))

    def exit(self, scope: SessionScope | None, token: Any) -> None:
        if token is not None:
            release(token)

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SessionScope | None:
        with guarded("langchain callback start"):
            frame = current_frame()
            if frame is not None and frame.session_id is not None:
                return None
            manager = args[0] if args else None
            session_id = session_from_config({"metadata": getattr(manager, "metadata", None)})
            return None if session_id is None else using_session(session_id)
        return None


_CALLBACK_HOOKS = _CallbackHooks(many=False)
_CALLBACK_STARTS = (
    "on_chain_start",
    "on_llm_start",
    "on_chat_model_start",
    "on_tool_start",
    "on_retriever_start",
)


def _wrap_callback_managers() -> None:
    from langchain_core.callbacks.manager import AsyncCallbackManager, CallbackManager

    for cls in (CallbackManager, AsyncCallbackManager):
        for name in _CALLBACK_STARTS:
            original = cls.__dict__.get(name)
            if original is None or getattr(original, _MARK, False):
                continue
            wrapped = wrap_function(original, _CALLBACK_HOOKS)
            setattr(wrapped, _MARK, True)
            setattr(cls, name, wrapped)
            _patched.append((cls, name, original))


def _wrap_class(cls: type[Any]) -> None:
    """Wrap the entry points ``cls`` itself defines (inherited ones are wrapped where defined)."""
    for name in (*_SINGLE, *_MANY):
        original = cls.__dict__.get(name)
        if original is None or not callable(original) or getattr(original, _MARK, False):
            continue
        wrapped = wrap_function(original, _HOOKS[name in _MANY])
        setattr(wrapped, _MARK, True)
        setattr(cls, name, wrapped)
        _patched.append((cls, name, original))


def _all_subclasses(root: type[Any]) -> list[type[Any]]:
    seen: dict[type[Any], None] = {root: None}
    pending = [root]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in seen:
                seen[sub] = None
                pending.append(sub)
    return list(seen)


def _init_subclass(cls: type[Any], /, **kwargs: Any) -> None:
    # Installed on Runnable, so classes defined after instrument() are wrapped too.
    super(Runnable, cls).__init_subclass__(**kwargs)
    with _lock:
        _wrap_class(cls)


def instrument() -> None:
    """Give every LangChain run whose config names a conversation that session.

    Idempotent. Covers runnables defined before and after the call (LangGraph's included).

    Example:
        >>> from sessiontrace.integrations import langchain
        >>> langchain.instrument()
        >>> langchain.is_instrumented()
        True
        >>> langchain.uninstrument()
    """
    with _lock:
        if _patched:
            return
        for cls in _all_subclasses(Runnable):
            _wrap_class(cls)
        Runnable.__init_subclass__ = classmethod(_init_subclass)  # type: ignore[assignment]
        _wrap_callback_managers()
        _protect_openinference()


def uninstrument() -> None:
    """Undo :func:`instrument`.

    Example:
        >>> from sessiontrace.integrations import langchain
        >>> langchain.uninstrument()
        >>> langchain.is_instrumented()
        False
    """
    with _lock:
        if "__init_subclass__" in Runnable.__dict__:
            del Runnable.__init_subclass__
        for cls, name, original in reversed(_patched):
            setattr(cls, name, original)
        _patched.clear()
        for module, name, original in reversed(_protected):
            setattr(module, name, original)
        _protected.clear()


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect.

    Example:
        >>> from sessiontrace.integrations import langchain
        >>> isinstance(langchain.is_instrumented(), bool)
        True
    """
    return bool(_patched)


# --- openinference-instrumentation-langchain's end-of-span rewrite -------------------------
# Its tracer calls the module function `_update_span(span, run)` just before ending each span;
# that writes `session.id` (from the run's metadata keys session_id/conversation_id/thread_id)
# and `metadata` (the run's metadata as JSON), over what the processor stamped at start. The
# wrapper reads the span's stamped values first and puts them back after: what was in force
# when the span started wins, as it does everywhere else. Its own metadata keys are kept, ours
# win on a clash. If the function is gone (a new release), nothing is patched.
def _protect_openinference() -> None:
    try:
        from openinference.instrumentation.langchain import _tracer
    except Exception:
        return
    original = getattr(_tracer, "_update_span", None)
    if not callable(original) or getattr(original, _MARK, False):
        return
    update: Callable[[Any, Any], None] = original

    def _update_span(span: Any, run: Any) -> None:
        stamped = _stamped(span)
        update(span, run)
        if stamped:
            _restore(span, stamped)

    setattr(_update_span, _MARK, True)
    setattr(_tracer, "_update_span", _update_span)  # noqa: B010 - typed as wrapt's wrapper
    _protected.append((_tracer, "_update_span", original))


@guarded("langchain _update_span (before)", default={})
def _stamped(span: Any) -> dict[str, Any]:
    attributes = span.attributes or {}
    keys = (_keys.OI_SESSION_ID, _keys.OI_METADATA)
    return {key: attributes[key] for key in keys if key in attributes}


def _restore(span: Any, stamped: dict[str, Any]) -> None:
    with guarded("langchain _update_span (after)"):
        now = span.attributes or {}
        restore: dict[str, Any] = {}
        session_id = stamped.get(_keys.OI_SESSION_ID)
        if session_id is not None and now.get(_keys.OI_SESSION_ID) != session_id:
            restore[_keys.OI_SESSION_ID] = session_id
        ours = stamped.get(_keys.OI_METADATA)
        theirs = now.get(_keys.OI_METADATA)
        if ours is not None and theirs != ours:
            merged = ours
            if isinstance(theirs, str):
                parsed_theirs, parsed_ours = json.loads(theirs), json.loads(ours)
                if isinstance(parsed_theirs, dict) and isinstance(parsed_ours, dict):
                    merged = json.dumps({**parsed_theirs, **parsed_ours}, ensure_ascii=False)
            restore[_keys.OI_METADATA] = merged
        if restore:
            span.set_attributes(restore)
