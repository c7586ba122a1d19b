"""Checked by mypy in tests/test_typing.py, never run: what a type checker sees of the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

from typing_extensions import assert_type

import sessiontrace
from sessiontrace import Observe, observe, suppress_tracing


@observe
def bare(city: str, *, days: int = 1) -> str:
    return city * days


@observe(kind="tool", capture_output=False)
def configured(city: str) -> list[str]:
    return [city]


@observe("fetch")
async def fetched(url: str) -> bytes:
    return url.encode()


@observe
async def streamed(n: int) -> AsyncIterator[int]:
    yield n


@suppress_tracing()
def quiet(x: float) -> float:
    return x


assert_type(bare("Oslo", days=2), str)
assert_type(configured("Oslo"), list[str])
coroutine = assert_type(fetched("x"), Coroutine[Any, Any, bytes])
coroutine.close()
assert_type(streamed(3), AsyncIterator[int])
assert_type(quiet(1.5), float)
assert_type(observe("block"), Observe)
assert_type(sessiontrace.force_flush(timeout=1.0), bool)
bare(42)  # E: the decorated function still checks its arguments
