"""sessiontrace's pytest plugin: the ``sessiontrace_spans`` fixture for users' test suites.

pytest loads it from the ``pytest11`` entry point. Loading it registers the fixture and its
two ini options and does nothing else: it sets no provider or propagator and reads no
setting (to load it, Python imports the ``sessiontrace`` package, which does neither).
Everything happens when a test requests the fixture, and only then (see
``docs/integrations.md``, "Testing your code: the pytest fixture").

Example (a test file; ``trace.get_tracer`` is the global tracer the application uses)::

    from opentelemetry import trace
    from sessiontrace import using_session

    def test_the_answer_is_in_the_session(sessiontrace_spans):
        with using_session("chat-42"):
            trace.get_tracer("app").start_span("answer").end()
        assert sessiontrace_spans.attributes("answer")["session.id"] == "chat-42"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sessiontrace.testing import CapturedSpans

STRICT_OPTION = "sessiontrace_strict_errors"
DIALECTS_OPTION = "sessiontrace_dialects"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the fixture's ini options (also settable with ``-o NAME=VALUE``)."""
    parser.addini(
        STRICT_OPTION,
        "sessiontrace_spans: sessiontrace's internal errors fail the test (true, the "
        "default) or are only logged (false)",
        type="bool",
        default=True,
    )
    parser.addini(
        DIALECTS_OPTION,
        "sessiontrace_spans: the dialects to stamp captured spans in, as configure() takes "
        "them (default: openinference,genai)",
        type="args",
        default=[],
    )


def strict_setting(config: pytest.Config) -> bool:
    """The ``sessiontrace_strict_errors`` ini option.

    Raises:
        ValueError: it is not a truth value (true/false, yes/no, on/off, 1/0).
    """
    try:
        return bool(config.getini(STRICT_OPTION))
    except (TypeError, ValueError, pytest.UsageError) as error:
        raise ValueError(
            f"the ini option {STRICT_OPTION} is not true or false ({error}); set it to true "
            "(internal errors fail the test) or false (they are only logged)"
        ) from None


def dialects_setting(config: pytest.Config) -> tuple[str, ...] | None:
    """The ``sessiontrace_dialects`` ini option; None if it is not set.

    Names are separated by commas or spaces, or given as a TOML list.

    Raises:
        ValueError: it names a dialect that does not exist, or cannot be read.
    """
    from sessiontrace._processor import normalize_dialects

    argument = f"the ini option {DIALECTS_OPTION}"
    try:  # fails on unbalanced quotes, or a TOML value that is not a list of str
        names = config.getini(DIALECTS_OPTION)
    except (TypeError, ValueError, pytest.UsageError) as error:
        raise ValueError(
            f"{argument} cannot be read ({error}); name dialects, e.g. openinference,langfuse"
        ) from None
    text = ",".join(names).strip(", ")
    return normalize_dialects(text, argument) if text else None


def _leaked_handles() -> list[str]:
    """What set_session() and its kin left in force with no handle restored, innermost first."""
    from sessiontrace._context import entries
    from sessiontrace._handles import SessionHandle

    return [
        repr(entry.frame.snapshot())
        for entry in entries()
        if isinstance(entry.owner, SessionHandle)
    ]


@pytest.fixture
def sessiontrace_spans(request: pytest.FixtureRequest) -> Iterator[CapturedSpans]:
    """Every span the test makes, through the global tracer too, stamped with sessions.

    Yields a :class:`sessiontrace.testing.CapturedSpans`: ``spans()``, ``by_name(name)``,
    ``attributes(name)``, ``sessions()``, ``clear()`` and its ``exporter``. After the test,
    the context is put back as it was before it: a ``set_session()`` the test never restored
    does not reach the next test. A test that starts with such a value still in force (left
    by an earlier test or a fixture) fails at setup, saying what it is.

    Raises:
        RuntimeError: the global tracer provider is not an SDK ``TracerProvider``.
        ValueError: an ini option has a value it does not take.

    Example::

        def test_turns_share_the_session(sessiontrace_spans):
            run_two_turns(session="chat-42")
            assert list(sessiontrace_spans.sessions()) == ["chat-42"]
    """
    from sessiontrace import _context
    from sessiontrace.testing import capture_spans

    strict = strict_setting(request.config)
    dialects = dialects_setting(request.config)
    leaked = _leaked_handles()
    if leaked:
        raise RuntimeError(
            f"sessiontrace_spans: {', '.join(leaked)} is still in force as this test starts: "
            "set by set_session(), set_user() or clear_session() in an earlier test or a "
            "fixture, and never restored. Restore the handle it returned (handle.restore(), "
            "or `with set_session(...):`), or use `with using_session(...):` in the fixture"
        )
    context = _context.get_current()
    request_entry = _context.request_entry.get()
    try:
        with capture_spans(dialects=dialects, global_provider=True, strict=strict) as captured:
            yield captured
    finally:
        # Whatever the test left in force (a set_session() never restored, a span attached
        # and never detached) goes: the next test starts from what this one started from.
        _context.set_current(context)
        _context.request_entry.set(request_entry)
