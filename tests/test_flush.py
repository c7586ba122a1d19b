"""force_flush(): the spans that ended are in the store when it returns; bad input fails at once.

Real parts: configure()'s batching pipeline writing a real SQLite store, read back with the
store's reader right after the call.
"""

from __future__ import annotations

import math

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider

import sessiontrace
from sessiontrace import force_flush, using_session
from sessiontrace.store import SessionStore


def test_ended_spans_are_stored_when_it_returns(tmp_path):
    provider = TracerProvider(shutdown_on_exit=False)
    db = tmp_path / "sessions.db"
    sessiontrace.configure(tracer_provider=provider, store_path=db, batch=True)
    try:
        tracer = provider.get_tracer("app")
        with using_session("flushed"):
            for number in range(50):
                tracer.start_span(f"turn {number}").end()
        assert force_flush(timeout=10, tracer_provider=provider) is True
        # Read at once, while the batching queue's own schedule would still be waiting.
        with SessionStore(db) as store:
            (summary,) = store.sessions()
        assert (summary.session_id, summary.span_count) == ("flushed", 50)
    finally:
        provider.shutdown()


def test_a_provider_without_spans_to_flush_reports_done():
    # The global provider of the test suite, and the API's no-op one used through the global.
    assert force_flush() is True
    assert force_flush(timeout=0.5) is True


@pytest.mark.parametrize(
    ("arguments", "error", "says"),
    [
        ({"timeout": "5"}, TypeError, r"timeout=.*number of seconds, got str"),
        ({"timeout": True}, TypeError, r"timeout=.*got bool"),
        ({"timeout": 0}, ValueError, r"timeout=.*greater than zero; got 0"),
        ({"timeout": -1.0}, ValueError, r"greater than zero; got -1.0"),
        ({"timeout": math.nan}, ValueError, r"finite"),
        ({"timeout": math.inf}, ValueError, r"finite"),
        ({"tracer_provider": NoOpTracerProvider()}, TypeError, r"SDK TracerProvider or None"),
    ],
)
def test_bad_arguments_fail_at_the_call_and_name_the_argument(arguments, error, says):
    with pytest.raises(error, match=says):
        force_flush(**arguments)
