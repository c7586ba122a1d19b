"""The Anthropic instrumentations users install, switched on for one test and fully off after.

``openinference-instrumentation-anthropic`` (3.1.0) and Traceloop's
``opentelemetry-instrumentation-anthropic`` (0.62.4) both put back every method of the
``anthropic`` client at ``uninstrument()``, alone or together, in either order (checked here:
unlike Traceloop's OpenAI instrumentor, see ``openai_instrumentation``). ``instrumented`` still
records the client's methods before and puts back any an instrumentor left changed, so a
regression in either cannot leak into later tests, and yields the list of what it had to put
back, for a test to assert it stays empty.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from helpers.client_methods import client_methods as methods_of
from helpers.client_methods import put_back

INSTRUMENTATIONS = {
    "openinference": "openinference.instrumentation.anthropic",
    "traceloop": "opentelemetry.instrumentation.anthropic",
}


def client_methods() -> dict[tuple[type, str], object]:
    """Every callable on every class of the loaded ``anthropic`` modules."""
    import anthropic.resources  # noqa: F401  (loads the resource modules the wrappers name)

    return methods_of("anthropic")


@contextmanager
def instrumented(*names: str, tracer_provider: Any = None) -> Iterator[list[str]]:
    """Instrument the anthropic client with the instrumentations ``names``, in that order
    (with ``tracer_provider``, else the global one).

    They are uninstrumented in the reverse order. Yields a list that, after the block, names
    each ``Class.method`` an instrumentor left changed and this helper put back.
    """
    before = client_methods()
    instrumentors = []
    restored: list[str] = []
    try:
        for name in names:
            with warnings.catch_warnings():
                # Traceloop's packages declare a pydantic v1-style Config at import, which
                # pydantic 2 warns about; that is their own business, not the tests'.
                warnings.simplefilter("ignore", DeprecationWarning)
                instrumentor = importlib.import_module(
                    INSTRUMENTATIONS[name]
                ).AnthropicInstrumentor()
                instrumentor.instrument(tracer_provider=tracer_provider)
            instrumentors.append(instrumentor)
        yield restored
    finally:
        for instrumentor in reversed(instrumentors):
            instrumentor.uninstrument()
        restored.extend(put_back(before))
