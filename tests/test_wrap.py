"""Scopes as decorators on each function kind; generator bodies see values only while running."""

from __future__ import annotations

import asyncio
import functools

import pytest

from sessiontrace import current_session_id, using_metadata, using_session


def test_plain_function():
    @using_session("plain")
    def work(x: int) -> tuple[int, str | None]:
        return x, current_session_id()

    assert work(1) == (1, "plain")
    assert current_session_id() is None
    assert work.__name__ == "work"


def test_plain_function_restores_on_exception():
    @using_session("plain")
    def fail() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        fail()
    assert current_session_id() is None


async def test_coroutine_function_sees_value_across_awaits():
    @using_session("async")
    async def work() -> list[str | None]:
        seen = [current_session_id()]
        await asyncio.sleep(0)
        seen.append(current_session_id())
        return seen

    assert asyncio.iscoroutinefunction(work)
    assert await work() == ["async", "async"]
    assert current_session_id() is None


def test_generator_body_sees_value_and_consumer_does_not():
    @using_session("gen")
    def produce():
        for index in range(3):
            received = yield (index, current_session_id())
            assert current_session_id() == "gen"
            if received:
                yield ("echo", received, current_session_id())
        return "done"

    consumer_saw = []
    items = []
    generator = produce()
    for item in generator:
        consumer_saw.append(current_session_id())
        items.append(item)
    assert items == [(0, "gen"), (1, "gen"), (2, "gen")]
    assert consumer_saw == [None, None, None]


def test_generator_send_throw_close_and_return_value():
    closed = []

    @using_session("gen")
    def produce():
        try:
            value = yield 1
            while True:
                try:
                    value = yield ("got", value, current_session_id())
                except ValueError as error:
                    value = f"caught {error} in {current_session_id()}"
        finally:
            closed.append(current_session_id())

    generator = produce()
    assert next(generator) == 1
    assert generator.send("a") == ("got", "a", "gen")
    assert generator.throw(ValueError("v")) == ("got", "caught v in gen", "gen")
    generator.close()
    assert closed == ["gen"]
    assert current_session_id() is None

    @using_session("ret")
    def returns():
        yield 1
        return current_session_id()

    generator = returns()
    next(generator)
    with pytest.raises(StopIteration) as stop:
        next(generator)
    assert stop.value.value == "ret"


def test_generator_consumed_after_the_creating_block_closed():
    # The decorator's values travel with the generator; a block's values do not.
    @using_session("decorated")
    def decorated():
        yield current_session_id()

    def plain():
        yield current_session_id()

    with using_session("block"):
        from_decorated, from_plain = decorated(), plain()
    assert next(from_decorated) == "decorated"
    assert next(from_plain) is None


def test_generator_nested_scopes_merge_with_consumer_context():
    @using_metadata({"inner": 1})
    def produce():
        yield current_session_id()

    with using_session("consumer"):
        generator = produce()
        assert next(generator) == "consumer"
    generator.close()


async def test_async_generator_body_sees_value_and_consumer_does_not():
    @using_session("agen")
    async def produce():
        for index in range(2):
            await asyncio.sleep(0)
            received = yield (index, current_session_id())
            assert received is None
        yield ("last", current_session_id())

    items, consumer_saw = [], []
    async for item in produce():
        items.append(item)
        consumer_saw.append(current_session_id())
    assert items == [(0, "agen"), (1, "agen"), ("last", "agen")]
    assert consumer_saw == [None, None, None]


async def test_async_generator_athrow_and_aclose():
    finally_saw = []

    @using_session("agen")
    async def produce():
        try:
            while True:
                try:
                    yield current_session_id()
                except LookupError:
                    yield f"handled in {current_session_id()}"
        finally:
            finally_saw.append(current_session_id())

    generator = produce()
    assert await generator.asend(None) == "agen"
    assert await generator.athrow(LookupError("x")) == "handled in agen"
    await generator.aclose()
    assert finally_saw == ["agen"]


def test_decorating_a_method_keeps_binding():
    class Bot:
        @using_session("method")
        def answer(self) -> tuple[str, str | None]:
            return type(self).__name__, current_session_id()

    assert Bot().answer() == ("Bot", "method")


def test_decorating_a_non_callable_is_a_clear_error():
    with pytest.raises(TypeError, match="decorates functions"):
        using_session("x")(42)  # type: ignore[arg-type]


def test_partial_objects_are_treated_as_plain_functions():
    def work(prefix: str) -> str:
        return f"{prefix}{current_session_id()}"

    wrapped = using_session("p")(functools.partial(work, "id="))
    assert wrapped() == "id=p"


async def test_async_generator_consumed_after_the_creating_block_closed():
    @using_session("decorated")
    async def decorated():
        yield current_session_id()

    async def plain():
        yield current_session_id()

    with using_session("block"):
        from_decorated, from_plain = decorated(), plain()
    assert await from_decorated.__anext__() == "decorated"
    assert await from_plain.__anext__() is None
    await from_decorated.aclose()
    await from_plain.aclose()
