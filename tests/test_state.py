"""_state: the snapshot of what is in force travels to other processes intact."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from sessiontrace import SessionContext, current, using_attributes


def _described(context: SessionContext) -> tuple[object, ...]:
    # Runs in a pool worker: the snapshot arrived by pickle.
    return (context.session_id, context.user_id, dict(context.metadata), context.tags)


def test_a_snapshot_pickles_and_stays_read_only():
    with using_attributes(session_id="chat-1", user_id="ada", metadata={"k": [1, {"n": None}]}):
        snapshot = current()
    copy = pickle.loads(pickle.dumps(snapshot))
    assert copy == snapshot
    with pytest.raises(TypeError):
        copy.metadata["k"] = 2  # type: ignore[index]
    assert pickle.loads(pickle.dumps(SessionContext())) == SessionContext()


def test_a_snapshot_reaches_a_process_pool_worker():
    with using_attributes(session_id="chat-2", metadata={"plan": "pro"}, tags=["beta"]):
        snapshot = current()
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(_described, snapshot).result(timeout=60) == (
            "chat-2",
            None,
            {"plan": "pro"},
            ("beta",),
        )
