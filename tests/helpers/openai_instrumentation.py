"""The OpenAI instrumentations users install, switched on for one test and fully off after.

``opentelemetry-instrumentation-openai`` (Traceloop, 0.62.4) leaves wrappers on
``Completions.create`` when it is uninstrumented (two more after each instrument and
uninstrument), so every later test's call would make extra spans. ``instrumented`` records
the client's methods before and puts back any its instrumentor left changed.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from helpers.client_methods import client_methods, put_back

INSTRUMENTATIONS = {
    "openinference": "openinference.instrumentation.openai",
    "opentelemetry-v2": "opentelemetry.instrumentation.openai_v2",
    "traceloop": "opentelemetry.instrumentation.openai",
}


def _client_methods() -> dict[tuple[type, str], object]:
    import openai.resources  # noqa: F401  (loads the resource modules the wrappers name)

    return client_methods("openai.resources")


@contextmanager
def instrumented(name: str) -> Iterator[None]:
    """Instrument the openai client with the instrumentation called ``name`` for a block."""
    before = _client_methods()
    with warnings.catch_warnings():
        # traceloop's instrumentation declares a pydantic v1-style Config at import, which
        # pydantic 2 warns about; that is its own business, not the tests'.
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor = importlib.import_module(INSTRUMENTATIONS[name]).OpenAIInstrumentor()
        instrumentor.instrument()
    try:
        yield
    finally:
        instrumentor.uninstrument()
        put_back(before)
