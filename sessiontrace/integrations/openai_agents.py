"""OpenAI Agents SDK: a run's ``group_id`` is the session of every span the run makes.

The SDK groups a conversation's traces by ``group_id``: ``RunConfig(group_id=...)``,
``agents.trace(..., group_id=...)`` around runs, or the group a resumed ``RunState`` carries.
:func:`instrument` makes that group the session (``session.id``, ``gen_ai.conversation.id``)
of every span: the ones OpenInference's (or Traceloop's) agents instrumentation makes from the
SDK's traces, the OpenAI client's, the tools' and the user's own spans inside tools.

Two wrappers (wrapt, undone by :func:`uninstrument`), because neither alone stamps every span:

* ``AgentRunner.run``, ``run_sync`` and ``run_streamed`` (``Runner.run*`` call them) put the
  group's session in force in the OpenTelemetry context for the whole run, set and reset in
  the one call. Everything started inside inherits it: asyncio tasks (``run_streamed``'s
  background task, created inside the call, so the run keeps its session however late the
  stream is consumed) and ``asyncio.to_thread`` (sync tools) copy the context.
* The SDK's ``SynchronousMultiTracingProcessor.on_trace_start`` / ``on_span_start``, which call
  every registered ``TracingProcessor``. A trace the user starts with ``agents.trace(...)``
  begins (and OpenInference starts its root span) in the caller's context, before any run; so
  while those callbacks run, the trace's group is the session, held beside the OpenTelemetry
  context (``_context.hold``) and released in the same call. It is not pushed onto the
  context: the processors attach a context of their own in ``on_span_start`` and detach it
  in ``on_span_end``, and that later detach would put a pushed session back for good.

A processor of our own (``agents.add_trace_processor``) would not do: OpenInference's
instrumentor replaces the SDK's processors with its own by default (``exclusive_processor``),
and a processor cannot change the context the other processors start their spans in.

A session already in force (``using_session``, a tracker, a request's) wins: the group id is
then ignored. An invalid group id (not a str, empty, over 200 characters, control characters)
is ignored with a warning logged once; the run goes on.

Example:
    >>> from sessiontrace.integrations import openai_agents
    >>> openai_agents.instrument()
    >>> openai_agents.is_instrumented()
    True
    >>> openai_agents.uninstrument()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sessiontrace._context import current_frame, hold, loose, release
from sessiontrace._guard import LogOnce, guarded
from sessiontrace._using import using_session
from sessiontrace._validate import MAX_ID_LENGTH, check_id

__all__ = ["instrument", "is_instrumented", "uninstrument"]

logger = logging.getLogger("sessiontrace")

_INSTALL = (
    "sessiontrace.integrations.openai_agents needs the OpenAI Agents SDK: pip install openai-agents"
)

_lock = threading.Lock()
# (owner, attribute, our FunctionWrapper) for each wrapper in place.
_patched: list[tuple[type[Any], str, Any]] = []
# Our wrappers pass straight through while False: a wrapper someone else put over ours cannot
# be taken off without taking theirs too, so uninstrument() leaves it in place, inert.
_active = False
_once = LogOnce()


def _session_of(value: object) -> str | None:
    """``value``, a group id, as a session id if it is a valid one; else None, said once."""
    try:
        return check_id(value, "group_id")
    except (TypeError, ValueError) as error:
        # Once per kind of problem, not per place: a run's bad group id reaches both wrappers.
        _once.log(
            _problem(value),
            "sessiontrace: %s; the run goes on without a session from it. Pass a printable "
            "group_id of at most 200 characters (a hash of a longer one), or put a session in "
            "force around the run with using_session() (logged once)",
            error,
        )
        return None


def _problem(value: object) -> str:
    if not isinstance(value, str):
        return "not a str"
    if not value or value.isspace():
        return "empty"
    return "too long" if len(value) > MAX_ID_LENGTH else "not printable"


def _no_session_in_force() -> bool:
    frame = current_frame()
    return frame is None or frame.session_id is None


def _trace_group(trace: object) -> str | None:
    group_id = getattr(trace, "group_id", None)
    return None if group_id is None else _session_of(group_id)


@guarded("openai_agents run entry")
def _run_session(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The session a run's group names, unless one is in force: its trace's, config's, state's."""
    if not _no_session_in_force():
        return None
    from agents import RunState, get_current_trace

    config = kwargs.get("run_config")
    if isinstance(config, Mapping):  # Runner.run* accept a dict of RunConfig's fields too
        group_id, disabled = config.get("group_id"), config.get("tracing_disabled")
    else:
        group_id = getattr(config, "group_id", None)
        disabled = getattr(config, "tracing_disabled", False)
    # A run inside a trace joins it, and the SDK groups it by the trace's group_id (a run
    # that disables tracing masks the trace instead).
    current = None if disabled else get_current_trace()
    if current is not None and getattr(current, "group_id", None) is not None:
        return _trace_group(current)
    if group_id is not None:
        return _session_of(group_id)
    # args: (starting_agent, input); a resumed run's input is a RunState carrying its group.
    run_input = args[1] if len(args) > 1 else kwargs.get("input")
    if isinstance(run_input, RunState):
        return _trace_group(getattr(run_input, "_trace_state", None))
    return None


def _run_sync(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    # run_sync and run_streamed: the session is in force for the call; run_streamed's
    # background task and run_sync's are created inside it, so they keep it.
    session_id = _run_session(args, kwargs) if _active else None
    if session_id is None:
        return wrapped(*args, **kwargs)
    with using_session(session_id):
        return wrapped(*args, **kwargs)


async def _run_async(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    # The checks run when the run is awaited, in the context it runs in.
    session_id = _run_session(args, kwargs) if _active else None
    if session_id is None:
        return await wrapped(*args, **kwargs)
    with using_session(session_id):
        return await wrapped(*args, **kwargs)


@guarded("openai_agents trace start")
def _trace_start_hold(trace: object) -> Any:
    if not _active or not _no_session_in_force():
        return None
    session_id = _trace_group(trace)
    return None if session_id is None else _hold(session_id)


@guarded("openai_agents span start")
def _span_start_hold(span: object) -> Any:
    if not _active or not _no_session_in_force():
        return None
    from agents import get_current_trace

    # An SDK span has no group of its own: it is its trace's, the current one when it starts.
    current = get_current_trace()
    trace_id = getattr(span, "trace_id", None)
    if current is None or trace_id is None or getattr(current, "trace_id", None) != trace_id:
        return None
    session_id = _trace_group(current)
    return None if session_id is None else _hold(session_id)


def _hold(session_id: str) -> Any:
    scope = using_session(session_id)
    return hold(loose(scope._frame_over(current_frame()), scope))


def _unhold(token: Any) -> None:
    if token is not None:
        with guarded("openai_agents release"):
            release(token)


def _on_trace_start(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    token = _trace_start_hold(args[0]) if args else None
    try:
        return wrapped(*args, **kwargs)
    finally:
        _unhold(token)


def _on_span_start(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    token = _span_start_hold(args[0]) if args else None
    try:
        return wrapped(*args, **kwargs)
    finally:
        _unhold(token)


def instrument() -> None:
    """Make each OpenAI Agents run's group id the session of every span it makes.

    Idempotent. Works with or without an agents instrumentation (OpenInference's,
    Traceloop's) installed before or after it.

    Raises:
        ImportError: the OpenAI Agents SDK is not installed (``pip install openai-agents``).

    Example:
        >>> from sessiontrace.integrations import openai_agents
        >>> openai_agents.instrument()
        >>> openai_agents.instrument()  # a second call changes nothing
        >>> openai_agents.is_instrumented()
        True
        >>> openai_agents.uninstrument()
    """
    global _active
    try:
        import wrapt
        from agents.run import AgentRunner
        from agents.tracing.provider import SynchronousMultiTracingProcessor
    except ImportError as error:
        raise ImportError(_INSTALL) from error
    wrappers: list[tuple[type[Any], str, Callable[..., Any]]] = [
        (AgentRunner, "run", _run_async),
        (AgentRunner, "run_sync", _run_sync),
        (AgentRunner, "run_streamed", _run_sync),
        (SynchronousMultiTracingProcessor, "on_trace_start", _on_trace_start),
        (SynchronousMultiTracingProcessor, "on_span_start", _on_span_start),
    ]
    with _lock:
        if _patched:
            return
        for owner, name, wrapper in wrappers:
            if owner.__dict__.get(name) is None:
                logger.warning(
                    "sessiontrace: %s.%s is gone from this openai-agents release; runs are not "
                    "given their group's session through it",
                    owner.__name__,
                    name,
                )
                continue
            _patched.append((owner, name, wrapt.wrap_function_wrapper(owner, name, wrapper)))
        _active = True


def uninstrument() -> None:
    """Undo :func:`instrument`.

    Example:
        >>> from sessiontrace.integrations import openai_agents
        >>> openai_agents.uninstrument()
        >>> openai_agents.is_instrumented()
        False
    """
    global _active
    with _lock:
        _active = False
        for owner, name, wrapper in reversed(_patched):
            if owner.__dict__.get(name) is wrapper:
                setattr(owner, name, wrapper.__wrapped__)
            else:
                logger.warning(
                    "sessiontrace: %s.%s was wrapped again after sessiontrace's wrapper; that "
                    "wrapper stays, passing every call straight through",
                    owner.__name__,
                    name,
                )
        _patched.clear()


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect.

    Example:
        >>> from sessiontrace.integrations import openai_agents
        >>> isinstance(openai_agents.is_instrumented(), bool)
        True
    """
    return bool(_patched)
