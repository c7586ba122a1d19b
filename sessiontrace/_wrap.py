"""Apply a scope to plain, coroutine, generator and async-generator functions alike.

A bare ``contextmanager`` used as a decorator loses its values inside ``async def`` bodies and
leaks them out of generators between yields. Here each function kind gets a wrapper that keeps
the scope in force exactly while the function's own code runs: for generators, during each
resumption, never in the consumer between two items.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Generic, Protocol, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
State = TypeVar("State")
Token = TypeVar("Token")


class Hooks(Protocol, Generic[State, Token]):
    """What a scope does around one call of a wrapped function."""

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> State:
        """Once per call, before the body first runs."""

    def enter(self, state: State) -> Token:
        """Each time the body is about to run (once, or once per generator resumption)."""

    def exit(self, state: State, token: Token) -> None:
        """Each time the body stops running; undoes ``enter``."""

    def item(self, state: State, value: Any) -> None:
        """For generators: each value the body yields."""

    def finish(self, state: State, error: BaseException | None, result: Any) -> None:
        """Once per call, when the body is done (returned, raised or was closed)."""


class AsyncContextFromSync:
    """``async with`` for a class whose ``__enter__``/``__exit__`` never block."""

    __slots__ = ()

    def __enter__(self) -> Any:
        raise NotImplementedError

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> Any:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, traceback: Any) -> Any:
        return self.__exit__(exc_type, exc, traceback)


def wrap_function(func: F, hooks: Hooks[Any, Any]) -> F:
    """Return ``func`` wrapped so that ``hooks`` run around each call, for any function kind."""
    if inspect.isasyncgenfunction(func):
        wrapper: Callable[..., Any] = _wrap_async_generator(func, hooks)
    elif inspect.isgeneratorfunction(func):
        wrapper = _wrap_generator(func, hooks)
    elif inspect.iscoroutinefunction(func):
        wrapper = _wrap_coroutine(func, hooks)
    else:
        wrapper = _wrap_plain(func, hooks)
    return cast(F, functools.wraps(func)(wrapper))


def _wrap_plain(func: Callable[..., Any], hooks: Hooks[Any, Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            hooks.exit(state, token)
            hooks.finish(state, error, None)
            raise
        hooks.exit(state, token)
        hooks.finish(state, None, result)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Any], hooks: Hooks[Any, Any]) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            result = await func(*args, **kwargs)
        except BaseException as error:
            hooks.exit(state, token)
            hooks.finish(state, error, None)
            raise
        hooks.exit(state, token)
        hooks.finish(state, None, result)
        return result

    return wrapper


def _wrap_generator(func: Callable[..., Any], hooks: Hooks[Any, Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            generator = func(*args, **kwargs)
        except BaseException as error:
            hooks.exit(state, token)
            hooks.finish(state, error, None)
            raise
        hooks.exit(state, token)
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                token = hooks.enter(state)
                try:
                    if to_throw is None:
                        value = generator.send(to_send)
                    else:
                        value = generator.throw(to_throw)
                except StopIteration as stop:
                    result = stop.value
                    break
                finally:
                    hooks.exit(state, token)
                to_send, to_throw = None, None
                hooks.item(state, value)
                try:
                    to_send = yield value
                except GeneratorExit:
                    token = hooks.enter(state)
                    try:
                        generator.close()
                    finally:
                        hooks.exit(state, token)
                    raise
                except BaseException as thrown:
                    to_throw = thrown
        except BaseException as error:
            hooks.finish(state, error, None)
            raise
        hooks.finish(state, None, result)
        return result

    return wrapper


def _wrap_async_generator(func: Callable[..., Any], hooks: Hooks[Any, Any]) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        state = hooks.start(args, kwargs)
        token = hooks.enter(state)
        try:
            generator = func(*args, **kwargs)
        except BaseException as error:
            hooks.exit(state, token)
            hooks.finish(state, error, None)
            raise
        hooks.exit(state, token)
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                token = hooks.enter(state)
                try:
                    if to_throw is None:
                        value = await generator.asend(to_send)
                    else:
                        value = await generator.athrow(to_throw)
                except StopAsyncIteration:
                    break
                finally:
                    hooks.exit(state, token)
                to_send, to_throw = None, None
                hooks.item(state, value)
                try:
                    to_send = yield value
                except GeneratorExit:
                    token = hooks.enter(state)
                    try:
                        await generator.aclose()
                    finally:
                        hooks.exit(state, token)
                    raise
                except BaseException as thrown:
                    to_throw = thrown
        except BaseException as error:
            hooks.finish(state, error, None)
            raise
        hooks.finish(state, None, None)

    return wrapper
