"""_guard: an internal error is logged once per place and never raised, except in strict mode;
LogOnce says each reason once."""

from __future__ import annotations

import logging
import threading

import pytest

from sessiontrace import _guard
from sessiontrace._guard import LogOnce, guarded, internal_error, reset_reported, set_strict


@pytest.fixture
def lenient():
    previous = set_strict(False)
    reset_reported()
    try:
        yield
    finally:
        set_strict(previous)
        reset_reported()


def fail_in(where: str) -> None:
    try:
        raise RuntimeError(f"broken in {where}")
    except RuntimeError:
        internal_error(where)


def test_each_place_is_logged_once_with_its_traceback_and_nothing_is_raised(lenient, caplog):
    caplog.set_level(logging.DEBUG, logger="sessiontrace")
    for _ in range(5):
        fail_in("exporter")
    fail_in("processor")
    records = [r for r in caplog.records if r.name == "sessiontrace"]
    assert [r.getMessage().split(";")[0] for r in records] == [
        "sessiontrace: internal error in exporter",
        "sessiontrace: internal error in processor",
    ]
    assert all(r.levelno == logging.ERROR and r.exc_info for r in records)
    assert "broken in exporter" in caplog.text


def test_after_a_reset_a_place_is_logged_again(lenient, caplog):
    fail_in("exporter")
    reset_reported()
    fail_in("exporter")
    assert caplog.text.count("internal error in exporter") == 2


def test_many_threads_failing_at_once_log_one_record(lenient, caplog):
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait(timeout=10)
        for _ in range(200):
            fail_in("hot path")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert caplog.text.count("internal error in hot path") == 1


def test_strict_mode_raises_the_original_error():
    previous = set_strict(True)
    try:
        with pytest.raises(RuntimeError, match="broken in strict"):
            fail_in("strict")
    finally:
        set_strict(previous)
    assert _guard._strict is previous


def test_log_once_warns_once_per_reason_then_quietly_or_not_at_all(caplog):
    quieter = LogOnce(repeats=logging.DEBUG)
    levels = [quieter.level(reason) for reason in ("disk full", "disk full", "locked", "locked")]
    assert levels == [logging.WARNING, logging.DEBUG, logging.WARNING, logging.DEBUG]
    assert LogOnce().level("disk full") == logging.WARNING  # each keeps its own
    caplog.set_level(logging.DEBUG, logger="sessiontrace")
    once = LogOnce()
    for _ in range(3):
        once.log(("dropped", "queue-full"), "sessiontrace: %s spans dropped", 3)
    assert [r.getMessage() for r in caplog.records] == ["sessiontrace: 3 spans dropped"]
    once.forget()
    once.log(("dropped", "queue-full"), "again")
    assert caplog.records[-1].getMessage() == "again"


def test_guarded_as_a_block_reports_once_and_goes_on(lenient, caplog):
    reached = []
    for _ in range(3):
        with guarded("a block"):
            raise ValueError("broken block")
        reached.append(True)
    assert reached == [True] * 3
    assert caplog.text.count("internal error in a block") == 1
    assert "broken block" in caplog.text


def test_guarded_as_a_decorator_returns_the_default_and_keeps_the_name(lenient, caplog):
    @guarded("a parser", default=-1)
    def parse(text: str) -> int:
        """Parse text."""
        return int(text)

    assert parse("7") == 7
    assert parse("x") == -1
    assert parse.__name__ == "parse" and parse.__doc__ == "Parse text."
    assert "internal error in a parser" in caplog.text


def test_guarded_lets_interrupts_through_and_raises_in_strict_mode(lenient):
    with pytest.raises(KeyboardInterrupt), guarded("interrupted"):
        raise KeyboardInterrupt
    previous = set_strict(True)
    try:
        with pytest.raises(ValueError, match="strict block"), guarded("strict"):
            raise ValueError("strict block")

        @guarded("strict function")
        def broken() -> None:
            raise ValueError("strict function")

        with pytest.raises(ValueError, match="strict function"):
            broken()
    finally:
        set_strict(previous)
