"""observe(): a span around the user's own functions and blocks, with input, output and errors.

Spans follow OpenInference (``openinference.span.kind``, ``input.value``, ``output.value``),
so Phoenix and Langfuse show the user's steps beside the auto-instrumented LLM calls; a tool
or an agent also carries the OpenTelemetry GenAI agent keys (``_genai_agent``). Encoding
of arguments and results never raises: what JSON cannot carry is shown by its ``repr``.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from sessiontrace import _keys
from sessiontrace._genai_agent import observe_attributes
from sessiontrace._guard import guarded
from sessiontrace._validate import check_span_name
from sessiontrace._version import __version__
from sessiontrace._wrap import AsyncContextFromSync, wrap_function

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("sessiontrace")

MAX_VALUE_CHARS = 16_000
_tracer = trace.get_tracer("sessiontrace", __version__)

# The observe() blocks open in this context, innermost last: (block, span, token to detach).
# One variable for the module: a variable per block would stay in every context it was set in
# for as long as that context lives, one more entry per block ever entered.
_OpenBlock = tuple["Observe", Span, contextvars.Token[Context]]
_open_blocks: contextvars.ContextVar[tuple[_OpenBlock, ...]] = contextvars.ContextVar(
    "sessiontrace.observe", default=()
)


def encode_value(value: Any) -> tuple[str, str]:
    """``value`` as span text and its mime type: str as is, anything else as JSON, capped.

    >>> encode_value({"city": "Oslo"})
    ('{"city": "Oslo"}', 'application/json')
    """
    if isinstance(value, str):
        text, mime = value, "text/plain"
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=_fallback)
        except (TypeError, ValueError):
            text = json.dumps(repr(value), ensure_ascii=False)
        mime = "application/json"
    if len(text) > MAX_VALUE_CHARS:
        return text[:MAX_VALUE_CHARS] + "…(truncated)", "text/plain"
    return text, mime


def _fallback(value: Any) -> Any:
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump(mode="json")
    return repr(value)


class _Call:
    """One call of an observed function: its span and, for generators, what it yielded."""

    __slots__ = ("items", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.items: list[Any] = []


class Observe(AsyncContextFromSync):
    """A span around a function or a block; made by :func:`observe`."""

    __slots__ = ("_attributes", "_capture_input", "_capture_output", "_kind", "_name")

    def __init__(
        self, name: str | None, kind: str, capture_input: bool, capture_output: bool
    ) -> None:
        if name is not None:
            check_span_name(name, "observe() name")
        if not isinstance(kind, str) or kind.upper() not in _keys.OI_SPAN_KINDS:
            raise ValueError(
                f"observe() kind {kind!r} is not an OpenInference span kind; choose from "
                f"{sorted(k.lower() for k in _keys.OI_SPAN_KINDS)}"
            )
        self._name = name
        self._kind = kind.upper()
        self._capture_input = capture_input
        self._capture_output = capture_output
        # What a block's span starts with (a decorated function's: _ObserveHooks), built once.
        self._attributes = start_attributes(self._kind, name) if name is not None else {}

    # --- decorator ---------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"observe() decorates functions, got {type(func).__name__}")
        name = self._name or getattr(func, "__qualname__", None) or repr(func)
        return wrap_function(func, _ObserveHooks(self, name, func))

    # --- context manager ---------------------------------------------------------------
    def __enter__(self) -> Span:
        if self._name is None:
            raise TypeError('observe() as a context manager needs a name: with observe("step"):')
        span = _tracer.start_span(self._name, attributes=self._attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        # Kept in this context, never on the block, so one block can be entered from several
        # tasks at once, or again inside itself.
        _open_blocks.set((*_open_blocks.get(), (self, span, token)))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entries = _open_blocks.get()
        index = len(entries) - 1
        while index >= 0 and entries[index][0] is not self:
            index -= 1
        if index < 0:
            logger.warning(
                "sessiontrace: leaving observe(%r), which was not entered in this context; "
                "enter and leave a block in the same thread or task",
                self._name,
            )
            return
        _, span, token = entries[index]
        _open_blocks.set(entries[:index] + entries[index + 1 :])
        try:
            otel_context.detach(token)
        finally:
            _end(span, exc)


def start_attributes(kind: str, name: str) -> dict[str, AttributeValue]:
    """What an observe() span of ``kind`` named ``name`` starts with: its OpenInference kind,
    and its GenAI operation and tool or agent name where it has them."""
    return {_keys.OI_SPAN_KIND: kind, **observe_attributes(kind, name)}


def describe_error(error: BaseException) -> str:
    """How an exception reads in a span's status and a tracker's summary: ``Type: message``."""
    return f"{type(error).__name__}: {error}"


def record_error(span: Span, error: BaseException) -> None:
    """Record ``error`` on ``span`` as an exception event and an ERROR status."""
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, describe_error(error)))


@guarded("observe")
def _end(span: Span, error: BaseException | None) -> None:
    if error is not None and not isinstance(error, GeneratorExit):
        record_error(span, error)
    span.end()


class _ObserveHooks:
    __slots__ = ("_attributes", "_name", "_observe", "_signature")

    def __init__(self, observe: Observe, name: str, func: Callable[..., Any]) -> None:
        self._observe = observe
        self._name = name
        self._attributes = start_attributes(observe._kind, name)
        try:
            self._signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self._signature = None

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call:
        attributes: dict[str, Any] = {**self._attributes}
        if self._observe._capture_input:
            with guarded("observe input"):
                text, mime = encode_value(self._arguments(args, kwargs))
                attributes[_keys.OI_INPUT_VALUE] = text
                attributes[_keys.OI_INPUT_MIME_TYPE] = mime
        return _Call(_tracer.start_span(self._name, attributes=attributes))

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._signature is None:
            return {"args": list(args), "kwargs": kwargs}
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError:
            return {"args": list(args), "kwargs": kwargs}
        return {
            name: value for name, value in bound.arguments.items() if name not in ("self", "cls")
        }

    def enter(self, call: _Call) -> contextvars.Token[Context]:
        return otel_context.attach(trace.set_span_in_context(call.span))

    def exit(self, call: _Call, token: contextvars.Token[Context]) -> None:
        otel_context.detach(token)

    def item(self, call: _Call, value: Any) -> None:
        if self._observe._capture_output:
            call.items.append(value)

    def finish(self, call: _Call, error: BaseException | None, result: Any) -> None:
        if self._observe._capture_output and (error is None or isinstance(error, GeneratorExit)):
            with guarded("observe output"):
                output = result
                if call.items:
                    items = call.items
                    output = "".join(items) if all(isinstance(i, str) for i in items) else items
                if output is not None:
                    text, mime = encode_value(output)
                    call.span.set_attributes(
                        {_keys.OI_OUTPUT_VALUE: text, _keys.OI_OUTPUT_MIME_TYPE: mime}
                    )
        _end(call.span, error)


@overload
def observe(
    name: F, *, kind: str = ..., capture_input: bool = ..., capture_output: bool = ...
) -> F: ...


@overload
def observe(
    name: str | None = None,
    *,
    kind: str = ...,
    capture_input: bool = ...,
    capture_output: bool = ...,
) -> Observe: ...


def observe(
    name: str | Callable[..., Any] | None = None,
    *,
    kind: str = "chain",
    capture_input: bool = True,
    capture_output: bool = True,
) -> Any:
    """Trace the user's own function or block as a span, beside the auto-instrumented ones.

    As a decorator (with or without parentheses) it works on plain, async, generator and async
    generator functions, recording the arguments as ``input.value``, the result (for
    generators: the yielded items, joined when they are all str) as ``output.value``, and
    any exception. As a context manager it needs a name and yields the span. A decorated
    function keeps its signature for type checkers: ``@observe`` and ``@observe(...)`` both
    return the function's own type.

    Args:
        name: the span name; the function's qualified name by default.
        kind: the OpenInference span kind: chain, llm, tool, agent, retriever, embedding, ...
            A tool's span is also a GenAI ``execute_tool`` span (``gen_ai.tool.name`` is its
            name), an agent's an ``invoke_agent`` span (``gen_ai.agent.name``).
        capture_input: record the arguments.
        capture_output: record the result.

    Example:
        >>> from sessiontrace import observe
        >>> @observe(kind="tool")
        ... def lookup_weather(city: str) -> str:
        ...     return "sunny"
        >>> lookup_weather("Oslo")
        'sunny'
    """
    if callable(name):
        return Observe(None, kind, capture_input, capture_output)(name)
    return Observe(name, kind, capture_input, capture_output)
