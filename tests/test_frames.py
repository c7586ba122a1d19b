"""_frames: snapshots travel to other processes intact; frames build attributes from the table."""

from __future__ import annotations

import json
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from sessiontrace import SessionContext, current, using_attributes
from sessiontrace._validate import check_metadata


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


# --- frames: built lazily, from the dialect table ------------------------------------------


def test_a_frame_builds_its_json_and_attributes_when_first_asked_and_keeps_them():
    from sessiontrace._frames import merge

    frame = merge(None, session_id="s", metadata=check_metadata({"plan": "pro", "seats": 3}))
    assert frame.attributes == {} and frame._metadata_json is None  # nothing built at entry
    first = frame.attributes_for(("openinference",))
    assert first == {"session.id": "s", "metadata": '{"plan": "pro", "seats": 3}'}
    assert frame.attributes_for(("openinference",)) is first  # built once


def test_merged_metadata_is_encoded_from_the_merged_values():
    from sessiontrace._frames import merge

    outer = merge(None, metadata=check_metadata({"a": 1, "b": 1}))
    inner = merge(outer, metadata=check_metadata({"b": 2}))
    assert json.loads(inner.metadata_json) == {"a": 1, "b": 2}


def test_a_new_dialect_is_one_row_in_the_table(monkeypatch):
    from sessiontrace import _keys
    from sessiontrace._frames import build_attributes, merge

    row = _keys.Dialect(
        "acme", "acme.session", None, metadata_prefix="acme.meta.", metadata_text=True
    )
    monkeypatch.setitem(_keys.DIALECTS, "acme", row)
    frame = merge(
        None,
        session_id="s",
        user_id="ada",
        metadata=check_metadata({"plan": "pro", "n": 2}),
        tags=("t",),
    )
    assert build_attributes(frame, ("acme",)) == {
        "acme.session": "s",
        "acme.meta.plan": "pro",
        "acme.meta.n": "2",
    }


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (
            "openinference",
            {"session.id": "s", "user.id": "u", "metadata": '{"k": "v"}', "tag.tags": ("t",)},
        ),
        ("genai", {"gen_ai.conversation.id": "s", "user.id": "u"}),
        (
            "langfuse",
            {
                "langfuse.session.id": "s",
                "langfuse.user.id": "u",
                "langfuse.trace.metadata.k": '"v"',
                "langfuse.trace.tags": ("t",),
            },
        ),
        (
            "traceloop",
            {
                "traceloop.association.properties.session_id": "s",
                "traceloop.association.properties.user_id": "u",
                "traceloop.association.properties.k": "v",
            },
        ),
    ],
)
def test_each_dialect_writes_its_backends_keys(dialect, expected):
    from sessiontrace._frames import build_attributes, merge

    frame = merge(
        None, session_id="s", user_id="u", metadata=check_metadata({"k": "v"}), tags=("t",)
    )
    assert build_attributes(frame, (dialect,)) == expected
