"""_guard: an internal error is logged once per place and never raised, except in strict mode."""

from __future__ import annotations

import logging
import threading

import pytest

from sessiontrace import _guard
from sessiontrace._guard import RepeatQuieter, internal_error, reset_reported, set_strict


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


def test_repeat_quieter_warns_once_per_reason():
    quieter = RepeatQuieter()
    levels = [quieter.level(reason) for reason in ("disk full", "disk full", "locked", "locked")]
    assert levels == [logging.WARNING, logging.DEBUG, logging.WARNING, logging.DEBUG]
    assert RepeatQuieter().level("disk full") == logging.WARNING  # each keeps its own
