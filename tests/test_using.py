"""The using_* scopes, the imperative API and the readers: nesting, restore, bad input."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sessiontrace import (
    SessionContext,
    clear_session,
    current,
    current_session_id,
    current_user_id,
    set_session,
    set_user,
    using_attributes,
    using_metadata,
    using_session,
    using_tags,
    using_user,
    without_session,
)


def test_nothing_in_force_by_default():
    assert current() == SessionContext()
    assert current_session_id() is None
    assert current_user_id() is None


def test_inner_session_and_user_win_and_outer_returns():
    with using_attributes(session_id="outer", user_id="ada"):
        with using_session("inner"):
            assert (current_session_id(), current_user_id()) == ("inner", "ada")
            with using_user("bob"):
                assert current().user_id == "bob"
            assert current().user_id == "ada"
        assert current_session_id() == "outer"
    assert current_session_id() is None


def test_metadata_merges_key_by_key_inner_wins():
    with using_metadata({"plan": "free", "region": "eu"}):
        with using_metadata({"plan": "pro", "tier": 2}):
            assert dict(current().metadata) == {"plan": "pro", "region": "eu", "tier": 2}
        assert dict(current().metadata) == {"plan": "free", "region": "eu"}


def test_tags_are_a_union_in_first_seen_order():
    with using_tags(["b", "a"]), using_tags(["c", "a", "d", "c"]):
        assert current().tags == ("b", "a", "c", "d")


def test_leaving_restores_exactly_also_on_exception():
    with using_attributes(session_id="s", metadata={"k": 1}, tags=["t"]):
        before = current()
        with (
            pytest.raises(RuntimeError),
            using_attributes(session_id="x", user_id="u", metadata={"k": 2}, tags=["z"]),
        ):
            raise RuntimeError("boom")
        assert current() == before


def test_snapshot_is_immutable():
    with using_metadata({"a": [1, 2]}):
        snapshot = current()
        with pytest.raises(AttributeError):
            snapshot.session_id = "x"  # type: ignore[misc]
        with pytest.raises(TypeError):
            snapshot.metadata["a"] = 3  # type: ignore[index]


def test_metadata_is_copied_at_the_call():
    source = {"nested": {"n": 1}}
    scope = using_metadata(source)
    source["nested"]["n"] = 2
    with scope:
        assert current().metadata["nested"] == {"n": 1}


def test_same_scope_object_reentered_does_not_leak():
    scope = using_session("again")
    with scope:
        with using_session("other"), scope:
            assert current_session_id() == "again"
        assert current_session_id() == "again"
    assert current_session_id() is None
    with scope:
        pass
    assert current_session_id() is None


async def test_same_scope_object_in_two_tasks_at_once():
    scope = using_session("shared")
    entered: list[str] = []
    both_inside = asyncio.Event()

    async def use(own: str) -> tuple[str | None, str | None]:
        with using_user(own):
            async with scope:
                entered.append(own)
                if len(entered) == 2:
                    both_inside.set()
                await both_inside.wait()
                inside = current_session_id()
            await asyncio.sleep(0)
            return inside, current_session_id()

    results = await asyncio.gather(use("a"), use("b"))
    assert results == [("shared", None), ("shared", None)]


def test_exit_in_another_thread_warns_and_leaves_context_alone(caplog):
    scope = using_session("mine")
    scope.__enter__()
    try:
        worker = threading.Thread(target=lambda: scope.__exit__(None, None, None))
        worker.start()
        worker.join()
        assert "not in force in this context" in caplog.text
        assert current_session_id() == "mine"
    finally:
        scope.__exit__(None, None, None)


def test_set_session_leaves_metadata_and_restores():
    with using_attributes(session_id="block", metadata={"m": 1}):
        handle = set_session("hook", user_id="ada")
        assert (current_session_id(), current_user_id()) == ("hook", "ada")
        assert dict(current().metadata) == {"m": 1}
        handle.restore()
        handle.restore()  # a second restore is a no-op
        assert (current_session_id(), current_user_id()) == ("block", None)


def test_set_user_and_handle_as_context_manager():
    with set_user("ada"):
        assert current_user_id() == "ada"
    assert current_user_id() is None


def test_clear_session_takes_everything_out_of_force_until_restored():
    with using_attributes(session_id="s", user_id="u", metadata={"a": 1}, tags=["t"]):
        handle = clear_session()
        assert current() == SessionContext()
        handle.restore()
        assert current().tags == ("t",)


def test_set_session_inside_block_is_undone_when_block_exits():
    with using_session("block"):
        set_session("hook")
        set_session("hook-again")
        assert current_session_id() == "hook-again"
    assert current_session_id() is None


def test_restore_from_another_thread_is_a_clear_error():
    handle = set_session("s")
    errors: list[BaseException] = []

    def restore() -> None:
        try:
            handle.restore()
        except RuntimeError as error:
            errors.append(error)

    worker = threading.Thread(target=restore)
    worker.start()
    worker.join()
    assert "same one" in str(errors[0])
    assert current_session_id() == "s"
    handle.restore()
    assert current_session_id() is None


def test_without_session_clears_and_new_values_start_fresh():
    with using_attributes(session_id="request", user_id="u", tags=["t"]):
        with without_session():
            assert current() == SessionContext()
            with using_session("worker"):
                assert current() == SessionContext(session_id="worker")
        assert current_session_id() == "request"


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: using_session(42), TypeError, "session_id must be a str, got int"),
        (lambda: using_session(None), TypeError, "using_attributes(session_id=...)"),
        (lambda: using_session(""), ValueError, "must not be empty"),
        (lambda: using_session("   "), ValueError, "must not be empty"),
        (lambda: using_session("a\nb"), ValueError, "non-printable character"),
        (lambda: using_session("x" * 201), ValueError, "limit is 200"),
        (lambda: using_user(b"ada"), TypeError, "user_id must be a str, got bytes"),
        (lambda: using_user("tab\there"), ValueError, "non-printable character"),
        (lambda: set_session(7), TypeError, "session_id must be a str"),
        (lambda: set_session("ok", user_id=""), ValueError, "user_id must not be empty"),
        (lambda: set_user("\x00"), ValueError, "non-printable character"),
        (lambda: using_metadata(["a"]), TypeError, "metadata must be a mapping"),
        (lambda: using_metadata({1: "a"}), TypeError, "keys must be str"),
        (lambda: using_metadata({"when": object()}), TypeError, "metadata['when']"),
        (lambda: using_metadata({"x": float("nan")}), TypeError, "metadata['x']"),
        (lambda: using_metadata({"": 1}), ValueError, "non-empty"),
        (lambda: using_tags("beta"), TypeError, "tags=['beta']"),
        (lambda: using_tags(["ok", 3]), TypeError, "tags[1] must be a str"),
        (lambda: using_tags([""]), ValueError, "tags[0]"),
        (lambda: using_attributes(session_id="ok", tags=[None]), TypeError, "tags[0]"),
        (lambda: using_tags(["ok", "t" * 201]), ValueError, "tags[1] is 201 characters long"),
        (lambda: using_tags(5), TypeError, "tags must be a list of str, got int"),
        (lambda: using_metadata({"deep": {"x": {1, 2}}}), TypeError, "metadata['deep']"),
    ],
)
def test_bad_input_raises_at_the_call_and_applies_nothing(make, error, words):
    with using_attributes(session_id="before", user_id="u", metadata={"k": 1}, tags=["t"]):
        before = current()
        with pytest.raises(error) as raised:
            made = make()
            # Reached only when the call did not raise: a block that checked its input late
            # (on entry, or after pushing part of it) fails here, or leaves something behind.
            with made:
                pass
        assert words in str(raised.value)
        assert current() == before
        # The error came from the call itself, before any object to enter existed.
        assert "made" not in locals()


def test_any_iterable_of_tags_and_any_mapping_of_metadata_are_accepted():
    from types import MappingProxyType

    with using_tags(tag for tag in ("a", "b")), using_tags(("c",)):
        with using_metadata(MappingProxyType({"k": [1, {"n": None}]})):
            assert current().tags == ("a", "b", "c")
            assert dict(current().metadata) == {"k": [1, {"n": None}]}


def test_exactly_200_characters_is_accepted():
    with using_session("x" * 200):
        assert len(current_session_id() or "") == 200


def test_unicode_ids_are_accepted():
    with using_attributes(session_id="会话-1", user_id="zoë"):
        assert current() == SessionContext(session_id="会话-1", user_id="zoë")
