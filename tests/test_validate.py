"""The checks every public call runs on ids, tags, metadata and state values (_validate)."""

from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiontrace._json_values import MAX_DEPTH, MAX_VALUES
from sessiontrace._validate import (
    MAX_ID_LENGTH,
    check_id,
    check_json_value,
    check_metadata,
    check_state,
    check_tags,
    encode_metadata,
)

# Hypothesis warns when the global `random` state changes while it draws. Another test's
# leftover background thread (an OTLP exporter's retry jitter, span ids made in a server
# thread) can change it at that moment; these strategies never use `random` themselves.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
FUZZ = settings(max_examples=100, deadline=None, database=None)

# Text with no lone surrogate (hypothesis leaves them out by default), and text with one.
clean_text = st.text(max_size=20)
surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
printable = st.text(st.characters(categories=("L", "N", "P", "S")), max_size=20)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | clean_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(clean_text, inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int, leaf: object = "x") -> object:
    """``depth`` lists and dicts around ``leaf``, alternating."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def with_text_at(value: object, text: str) -> object:
    """``value`` with ``text`` added as a str deep inside it (at the first container found)."""
    if isinstance(value, dict):
        return {**value, "added": text}
    if isinstance(value, list):
        return [*value, text]
    return [value, text]


# --- ids and tags -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["chat-42", "x" * MAX_ID_LENGTH, "søren", "会話", "🙂"])
def test_check_id_returns_clean_ids_unchanged(value):
    assert check_id(value, "session_id") is value


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (42, TypeError, "session_id must be a str, got int"),
        (b"chat", TypeError, "pass str(session_id)"),
        ("", ValueError, "session_id must not be empty"),
        (" \t", ValueError, "must not be empty or only whitespace"),
        ("x" * (MAX_ID_LENGTH + 1), ValueError, "is 201 characters long; the limit is 200"),
        ("a\nb", ValueError, "non-printable character '\\n' (U+000A) at position 1"),
        ("ab\ud800", ValueError, "lone surrogate '\\ud800' (U+D800) at position 2"),
        ("\udfff", ValueError, "only valid Unicode text is allowed"),
        # A surrogate pair written as two code points is still two lone surrogates in a str.
        ("\ud83d\ude00", ValueError, "lone surrogate '\\ud83d' (U+D83D) at position 0"),
    ],
)
def test_check_id_names_the_argument_the_problem_and_the_fix(value, error, words):
    with pytest.raises(error) as raised:
        check_id(value, "session_id")
    message = str(raised.value)
    assert message.startswith("session_id")
    assert words in message
    message.encode("utf-8")  # the message itself is always writable, even for a surrogate


def test_check_tags_dedupes_in_order_and_names_the_bad_position():
    assert check_tags(("a", "b", "a")) == ("a", "b")
    assert check_tags(iter(["x"])) == ("x",)
    with pytest.raises(ValueError, match=r"tags\[1\] contains the lone surrogate '\\udc00'"):
        check_tags(["ok", "\udc00"])
    with pytest.raises(TypeError, match=r"tags\[0\] must be a str, got int"):
        check_tags([1])
    with pytest.raises(TypeError, match=r"for one tag write tags=\['beta'\]"):
        check_tags("beta")


# --- metadata -----------------------------------------------------------------------------


def test_check_metadata_copies_deeply_and_freezes():
    inner = {"limits": [1, 2]}
    original = {"plan": "pro", "inner": inner}
    frozen = check_metadata(original)
    assert json.loads(encode_metadata(frozen)) == original
    inner["limits"].append(3)
    assert frozen["inner"] == {"limits": [1, 2]}
    with pytest.raises(TypeError):
        frozen["plan"] = "free"  # type: ignore[index]


@pytest.mark.parametrize(
    ("metadata", "error", "words"),
    [
        (["a"], TypeError, "metadata must be a mapping of str keys"),
        ({1: "a"}, TypeError, "metadata keys must be str, got int key 1"),
        ({"": 1}, ValueError, "metadata key '' must be non-empty printable text"),
        ({"a\nb": 1}, ValueError, "must be non-empty printable text"),
        ({"k\ud800": 1}, ValueError, "metadata key 'k\\ud800' contains the lone surrogate"),
        ({"k": "v\ud800"}, ValueError, "metadata['k'] contains the lone surrogate '\\ud800'"),
        ({"k": ["ok", "\udbff"]}, ValueError, "metadata['k'][1] contains the lone surrogate"),
        ({"k": {"\udc80": 1}}, ValueError, "metadata['k'] key '\\udc80' contains the lone"),
        ({"k": {"deep": [{"x": "\ud800"}]}}, ValueError, "metadata['k']['deep'][0]['x']"),
        ({"k": object()}, TypeError, "metadata['k'] is not JSON-serialisable"),
        ({"k": [1, {2}]}, TypeError, "metadata['k'][1] is not JSON-serialisable"),
        ({"k": math.nan}, TypeError, "metadata['k'] is not JSON-serialisable (Out of range"),
        ({"k": [math.inf]}, TypeError, "metadata['k'][0] is not JSON-serialisable"),
        ({"k": {(1, 2): "v"}}, TypeError, "metadata['k'] has the key (1, 2) of type tuple"),
        ({"k": 10**5000}, TypeError, "metadata['k'] is not JSON-serialisable"),
    ],
)
def test_check_metadata_errors_name_the_key_path(metadata, error, words):
    with pytest.raises(error) as raised:
        check_metadata(metadata)
    assert words in str(raised.value)
    str(raised.value).encode("utf-8")


def test_check_metadata_names_the_argument_it_is_given():
    with pytest.raises(ValueError, match=r"^carrier\['metadata'\]\['k'\] contains the lone"):
        check_metadata({"k": "\ud800"}, "carrier['metadata']")


def test_every_error_message_says_how_to_fix_it():
    bad = [
        lambda: check_id("\ud800", "user_id"),
        lambda: check_metadata({"k": "\ud800"}),
        lambda: check_metadata({"k": nested(MAX_DEPTH + 1)}),
        lambda: check_metadata({"k": object()}),
        lambda: check_json_value(cyclic_list(), "value"),
    ]
    fixes = ("fix the text", "flatten it", "convert it first", "pass a copy without")
    for make in bad:
        with pytest.raises((TypeError, ValueError)) as raised:
            make()
        assert any(fix in str(raised.value) for fix in fixes), str(raised.value)


# --- depth, cycles and size ---------------------------------------------------------------


def cyclic_list() -> list[object]:
    loop: list[object] = ["a"]
    loop.append(loop)
    return loop


def test_nesting_is_allowed_up_to_max_depth_and_an_error_past_it():
    assert MAX_DEPTH == 32
    check_metadata({"k": nested(MAX_DEPTH)})
    check_json_value(nested(MAX_DEPTH), "value")
    with pytest.raises(ValueError, match=r"is nested more than 32 lists/dicts deep"):
        check_metadata({"k": nested(MAX_DEPTH + 1)})
    with pytest.raises(ValueError, match=r"^value\[.*\] is nested more than 32"):
        check_json_value(nested(MAX_DEPTH + 1, leaf=[]), "value")


@pytest.mark.parametrize("depth", [1_000, 10_000, sys.getrecursionlimit() * 3])
def test_deep_nesting_is_a_value_error_never_a_recursion_error(depth):
    value = nested(depth)
    with pytest.raises(ValueError, match="nested more than 32"):
        check_metadata({"k": value})
    with pytest.raises(ValueError, match="nested more than 32"):
        check_state("k", value)


def test_the_key_path_of_a_deep_value_is_shortened():
    with pytest.raises(ValueError) as raised:
        check_metadata({"k": nested(100)})
    assert "[...]" in str(raised.value)
    assert len(str(raised.value)) < 400


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (cyclic_list(), "value ([1]) contains itself"),
        ({"a": {"b": None}}, "value (['a']['b']) contains itself"),
    ],
)
def test_a_value_that_contains_itself_is_a_value_error(value, words):
    if isinstance(value, dict):
        value["a"]["b"] = value
    with pytest.raises(ValueError) as raised:
        check_json_value(value, "value", root="")
    assert words in str(raised.value)
    assert "(a reference cycle)" in str(raised.value)


def test_cycles_in_metadata_and_state_are_value_errors():
    loop = cyclic_list()
    with pytest.raises(ValueError, match=r"metadata\['k'\]\[1\] contains itself"):
        check_metadata({"k": loop})
    with pytest.raises(ValueError, match=r"value \(state\['goal'\]\[1\]\) contains itself"):
        check_state("goal", loop)


def test_a_shared_list_is_fine_but_a_blown_up_dag_is_bounded():
    shared = [1, 2, 3]
    assert json.loads(check_json_value([shared, shared], "value")) == [[1, 2, 3]] * 2
    # 30 levels of [x, x]: 2**30 leaves if walked naively. The walk stops at MAX_VALUES.
    dag: object = "leaf"
    for _ in range(30):
        dag = [dag, dag]
    with pytest.raises(ValueError, match=f"holds more than {MAX_VALUES:,} values"):
        check_metadata({"k": dag})


# --- state values -------------------------------------------------------------------------


def test_check_state_returns_the_json_and_names_key_and_value():
    assert check_state("goal", {"city": "Oslo", "days": [1, 2]}) == (
        '{"city": "Oslo", "days": [1, 2]}'
    )
    with pytest.raises(ValueError, match=r"^key contains the lone surrogate"):
        check_state("\ud800", 1)
    with pytest.raises(TypeError, match=r"^key must be a str, got int"):
        check_state(1, 1)
    with pytest.raises(ValueError, match=r"^value \(state\['goal'\]\) contains the lone"):
        check_state("goal", "\udfff")
    with pytest.raises(TypeError, match=r"^value \(state\['goal'\]\['when'\]\) is not JSON"):
        check_state("goal", {"when": object()})


# --- properties ---------------------------------------------------------------------------


@FUZZ
@given(json_values)
def test_any_json_value_passes_and_round_trips(value):
    text = check_json_value(value, "value")
    assert json.loads(text) == value
    text.encode("utf-8")
    frozen = check_metadata({"k": value})
    assert json.loads(encode_metadata(frozen)) == {"k": value}
    assert dict(frozen) == {"k": value}


@FUZZ
@given(json_values, printable, surrogate, printable)
def test_a_lone_surrogate_anywhere_is_a_value_error_naming_the_argument(value, before, bad, after):
    hostile = with_text_at(value, before + bad + after)
    with pytest.raises(ValueError) as raised:
        check_json_value(hostile, "value")
    assert str(raised.value).startswith("value")
    assert "lone surrogate" in str(raised.value)
    with pytest.raises(ValueError, match=r"^metadata\['k'\]"):
        check_metadata({"k": hostile})
    with pytest.raises(ValueError, match="lone surrogate"):
        check_metadata({before + bad + after: 1})
    with pytest.raises(ValueError, match=r"^session_id contains the lone surrogate"):
        check_id(before + bad + after, "session_id")


@FUZZ
@given(st.text(st.characters(codec=None, categories=None), max_size=300))
def test_any_text_as_an_id_is_accepted_only_if_it_is_clean(text):
    try:
        assert check_id(text, "user_id") == text
    except ValueError as error:
        assert str(error).startswith("user_id")
        assert not (0 < len(text) <= MAX_ID_LENGTH and text.isprintable() and text.strip())
    else:
        text.encode("utf-8")
        assert text.isprintable() and len(text) <= MAX_ID_LENGTH
