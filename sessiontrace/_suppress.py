"""suppress_tracing(): a block (or a function) inside which nothing is traced.

Inside it OpenTelemetry's "suppress instrumentation" flag is set, the one that the
instrumentations of OpenTelemetry contrib and OpenInference check before they make a span
(an OpenAI call, an HTTP request); ``SessionSpanProcessor`` stamps nothing; and the pipeline
``configure()`` installs exports no span that starts inside it, whoever starts it. Such spans
are not losses: they are neither exported nor counted.
A processor the application added to its own provider still sees spans that code inside the
block starts by hand; only instrumentations and sessiontrace's own pipeline honour the flag.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

from sessiontrace._context import get_current, set_current

try:
    # The flag's key is a private name of opentelemetry-api, but it is the one every
    # instrumentation checks (opentelemetry-instrumentation's suppress_instrumentation sets it).
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _FLAG
except ImportError:  # pragma: no cover - an API release without it: the plain key below
    _FLAG = "suppress_instrumentation"

# Older contrib instrumentations check the plain text key as well.
_PLAIN_FLAG = "suppress_instrumentation"
# Beside the flags: (the block, the context it replaced).
_RESTORE = otel_context.create_key("sessiontrace.suppress.restore")
logger = logging.getLogger("sessiontrace")


def is_suppressed(context: otel_context.Context | None = None) -> bool:
    """Whether tracing is suppressed in ``context`` or in the current context.

    A span processor gets the context a span was started in, which an instrumentation may
    have built itself (from incoming headers); the flag may be in either.

    Example:
        >>> with suppress_tracing():
        ...     is_suppressed()
        True
        >>> is_suppressed()
        False
    """
    current = otel_context.get_current()
    if current.get(_FLAG) or current.get(_PLAIN_FLAG):
        return True
    return context is not None and bool(context.get(_FLAG) or context.get(_PLAIN_FLAG))


_P = ParamSpec("_P")
_R = TypeVar("_R")


class suppress_tracing:  # lower case: used like a function, as the peers' is
    """Trace nothing inside: no spans from instrumentation or sessiontrace, nothing stamped.

    Usable as a context manager or a decorator (of a function or a coroutine function, whose
    signature it keeps); blocks nest, and each restores exactly what was in force before it,
    also when one object is entered in several threads or tasks at once.

    Example:
        >>> import sessiontrace
        >>> with sessiontrace.suppress_tracing():
        ...     pass  # e.g. run evaluations whose LLM calls should not be traced
        >>> @sessiontrace.suppress_tracing()
        ... def warm_up() -> None: ...
    """

    # What each block replaced is kept in the context it puts in force, never on the object,
    # so one object entered in several threads or tasks at once, or inside itself, restores
    # each entry exactly (the rule of _context, for a flag instead of a frame).
    def __enter__(self) -> suppress_tracing:
        current = get_current()
        values = current.copy()
        values[_FLAG] = values[_PLAIN_FLAG] = True
        values[_RESTORE] = (self, current)
        set_current(otel_context.Context(values))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        context: otel_context.Context | None = get_current()
        while context is not None:
            held: tuple[object, otel_context.Context] | None = context.get(_RESTORE)  # type: ignore[assignment]
            if held is None:
                break
            if held[0] is self:
                set_current(held[1])
                return
            context = held[1]
        logger.warning(
            "sessiontrace: leaving a suppress_tracing() block that is not in force in this "
            "context; was it entered in another thread or task?"
        )

    def __call__(self, function: Callable[_P, _R]) -> Callable[_P, _R]:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_suppressed(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                with suppress_tracing():
                    return await function(*args, **kwargs)

            return run_suppressed  # type: ignore[return-value]

        @functools.wraps(function)
        def call_suppressed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with suppress_tracing():
                return function(*args, **kwargs)

        return call_suppressed
