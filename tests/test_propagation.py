"""Carriers: the session and the trace into other processes."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from helpers.workers import describe
from sessiontrace import (
    carrier,
    carry,
    current,
    current_session_id,
    using_attributes,
    using_carrier,
)

VALUES = dict(session_id="batch-7", user_id="ada", metadata={"job": "nightly"}, tags=["etl"])


def test_carrier_holds_strings_only_for_what_is_in_force(tracer):
    assert carrier() == {}
    with using_attributes(**VALUES), tracer.start_as_current_span("parent") as parent:
        values = carrier()
    assert values["session_id"] == "batch-7"
    assert values["user_id"] == "ada"
    assert values["metadata"] == '{"job": "nightly"}'
    assert values["tags"] == '["etl"]'
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert values["traceparent"].split("-")[1] == trace_id
    assert all(isinstance(value, str) for value in values.values())


def test_using_carrier_round_trips_and_restores(tracer):
    with using_attributes(**VALUES):
        values = carrier()
    with using_carrier(values):
        assert current().session_id == "batch-7"
        assert dict(current().metadata) == {"job": "nightly"}
        assert current().tags == ("etl",)
    assert current_session_id() is None


@pytest.mark.parametrize(
    ("values", "error", "words"),
    [
        ({"session_id": ""}, ValueError, "session_id must not be empty"),
        ({"sesion_id": "x"}, ValueError, "unknown key(s) ['sesion_id']"),
        ({"metadata": "{not json"}, ValueError, "carrier['metadata'] is not JSON"),
        ({"tags": '{"a": 1}'}, TypeError, "carrier['tags'] must hold a JSON list"),
        (["session_id"], TypeError, "takes the dict carrier() made"),
    ],
)
def test_a_malformed_carrier_is_a_clear_error_and_applies_nothing(values, error, words):
    with pytest.raises(error) as raised:
        with using_carrier(values):
            pass
    assert words in str(raised.value)
    assert current_session_id() is None


def test_carried_call_pickles():
    with using_attributes(**VALUES):
        task = carry(describe)
    restored = pickle.loads(pickle.dumps(task))
    assert restored.carrier == task.carrier
    with pytest.raises(TypeError, match="takes a function"):
        carry(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_process_pool_workers_get_the_session_and_the_trace(tracer, start_method):
    context = multiprocessing.get_context(start_method)
    with using_attributes(**VALUES), tracer.start_as_current_span("dispatch") as dispatch:
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            carried = [pool.submit(carry(describe), f"job-{i}") for i in range(3)]
            bare = pool.submit(describe, "bare")
            results = [future.result(timeout=60) for future in carried]
            plain = bare.result(timeout=60)
    dispatch_context = dispatch.get_span_context()
    for result in results:
        assert result["session_id"] == "batch-7"
        assert result["user_id"] == "ada"
        assert result["metadata"] == {"job": "nightly"}
        assert result["tags"] == ["etl"]
        assert result["span_attributes"]["session.id"] == "batch-7"
        assert result["span_trace_id"] == dispatch_context.trace_id
        assert result["span_parent_id"] == dispatch_context.span_id
    # Without carry() a worker has nothing in force (with fork it may inherit a copy of the
    # parent's context at fork time, which is why carry() is the only reliable way).
    if start_method == "spawn":
        assert plain["session_id"] is None
        assert "session.id" not in plain["span_attributes"]
