"""Hostile input at every public call, fuzzed with hypothesis.

For each call: input that is valid is in force afterwards (``current()``) and on the span;
input that is not raises ``TypeError`` or ``ValueError`` whose message names the argument,
and nothing is half-applied (``current()`` and the tracker's state are as they were).

Text is drawn from every code point, lone surrogates (U+D800 to U+DFFF) and control
characters included, which hypothesis leaves out unless asked.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiontrace import (
    SessionTracker,
    carrier,
    current,
    observe,
    set_session,
    set_user,
    using_attributes,
    using_carrier,
    using_metadata,
    using_session,
    using_tags,
    using_user,
)
from sessiontrace._json_values import MAX_DEPTH
from sessiontrace._validate import MAX_ID_LENGTH

# Hypothesis warns when the global `random` state changes while it draws. Another test's
# leftover background thread (an OTLP exporter's retry jitter, span ids made in a server
# thread) can change it at that moment; these strategies never use `random` themselves.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# What is in force around every fuzzed call, so "unchanged" is checked against real values.
OUTER = dict(session_id="outer", user_id="outer-user", metadata={"o": 1}, tags=["outer"])

# --- strategies ---------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, categories=None), max_size=30)
printable_text = st.text(
    st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" "), max_size=20
)
lone_surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
control = st.characters(categories=("Cc",))
# Most of any_text is unassigned code points (not printable), which would hide the other
# checks: these put one bad character into otherwise clean text.
hostile_text = st.one_of(
    any_text,
    printable_text,
    st.tuples(printable_text, lone_surrogate, printable_text).map("".join),
    st.tuples(printable_text, control, printable_text).map("".join),
)
long_text = st.text(st.characters(codec=None, categories=None), min_size=190, max_size=230)
id_like = st.one_of(
    hostile_text,
    long_text,
    st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=40),
    st.text(st.characters(categories=("L", "N", "P", "S")), min_size=195, max_size=205),
)
not_text = st.one_of(
    st.integers(), st.floats(), st.binary(max_size=4), st.lists(st.text(max_size=3), max_size=2)
)
# Valid by construction: printable text (no Cs, Cc, Cn, Co, Z but the space), JSON values.
valid_id = st.text(
    st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" "),
    min_size=1,
    max_size=MAX_ID_LENGTH,
).filter(lambda text: not text.isspace())
valid_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(),  # NaN and infinities included
    hostile_text,
    st.binary(max_size=4),
    st.builds(object),
    st.sets(st.integers(), max_size=2),
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def cyclic(items: list[Any]) -> list[Any]:
    items.append(items)
    return items


json_like = st.one_of(
    st.recursive(
        json_leaf,
        lambda inner: st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(hostile_text, inner, max_size=3),
        max_leaves=10,
    ),
    st.integers(MAX_DEPTH - 2, MAX_DEPTH + 3).map(nested),
    st.sampled_from([1_000, 5_000]).map(nested),
    st.lists(st.integers(), max_size=2).map(cyclic),
)
metadata_like = st.one_of(
    st.dictionaries(valid_id, json_like, min_size=1, max_size=3),
    st.dictionaries(st.one_of(hostile_text, st.integers()), json_like, max_size=3),
    not_text,
    st.text(max_size=5),
)
tags_like = st.one_of(
    st.lists(st.one_of(id_like, st.integers(), st.none()), max_size=4),
    st.lists(valid_id, max_size=3),
    st.tuples(id_like),
    hostile_text,
    st.integers(),
)




def with_surrogate_key(text: str) -> dict[str, int]:
    return {text: 1}


# One bad part, paired with the error it must raise; `poisoned` hides it in a valid value.
poison = st.one_of(
    st.tuples(
        st.tuples(printable_text, lone_surrogate, printable_text).map("".join),
        st.just(ValueError),
    ),
    st.tuples(
        st.tuples(printable_text, lone_surrogate).map("".join).map(with_surrogate_key),
        st.just(ValueError),
    ),
    st.tuples(st.integers(MAX_DEPTH + 1, MAX_DEPTH + 40).map(nested), st.just(ValueError)),
    st.tuples(st.sampled_from([2_000, 10_000]).map(nested), st.just(ValueError)),
    st.tuples(st.lists(st.integers(), max_size=2).map(cyclic), st.just(ValueError)),
    st.tuples(st.sampled_from([math.nan, math.inf, -math.inf]), st.just(TypeError)),
    st.tuples(
        st.one_of(st.builds(object), st.binary(max_size=3), st.sets(st.integers(), min_size=1)),
        st.just(TypeError),
    ),
)
def in_list(pair: tuple[Any, tuple[Any, type]]) -> tuple[Any, type]:
    good, (bad, error) = pair
    return [good, bad], error


def in_dict(pair: tuple[Any, tuple[Any, type]]) -> tuple[Any, type]:
    good, (bad, error) = pair
    return {"ok": good, "bad": bad}, error


poisoned = st.one_of(
    poison,
    st.tuples(valid_json, poison).map(in_list),
    st.tuples(valid_json, poison).map(in_dict),
)

# --- oracles: what the documented rules accept ------------------------------------------------


def is_clean_text(value: object, limit: int = MAX_ID_LENGTH) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= limit
        and value.isprintable()  # lone surrogates and control characters are not printable
        and not value.isspace()
    )


def no_surrogate(text: str) -> bool:
    return not any(0xD800 <= ord(character) <= 0xDFFF for character in text)


def is_json_value(value: object, depth: int = 0) -> bool:
    """JSON that sessiontrace accepts: ``depth`` lists/dicts already around ``value``."""
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return no_surrogate(value)
    if isinstance(value, (list, tuple)):
        return depth < MAX_DEPTH and all(is_json_value(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return depth < MAX_DEPTH and all(
            isinstance(key, str) and no_surrogate(key) and is_json_value(item, depth + 1)
            for key, item in value.items()
        )
    return False


def is_metadata(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and key and key.isprintable() and is_json_value(item)
        for key, item in value.items()
    )


def is_tags(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(is_clean_text(tag) for tag in value)


def as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def rejects(call: Any, argument: str) -> None:
    """``call()`` raises TypeError or ValueError naming ``argument``, and changes nothing."""
    before = current()
    with pytest.raises((TypeError, ValueError)) as raised:
        call()
    message = str(raised.value)
    assert argument in message, message
    message.encode("utf-8")  # the message never carries the bad character raw
    assert current() == before


# --- using_* as context managers and decorators ----------------------------------------------


@FUZZ
@given(id_like | not_text)
def test_using_session_and_using_user(tracer, spans, value):
    with using_attributes(**OUTER):
        if not is_clean_text(value):
            rejects(lambda: using_session(value), "session_id")
            rejects(lambda: using_user(value), "user_id")
            return
        with using_session(value), tracer.start_as_current_span("inside"):
            assert current().session_id == value
            assert current().user_id == "outer-user"
        assert spans.all()[-1].attributes["session.id"] == value

        @using_user(value)
        def who() -> str | None:
            with tracer.start_as_current_span("decorated"):
                return current().user_id

        assert who() == value
        assert spans.all()[-1].attributes["user.id"] == value
        assert current().user_id == "outer-user"


@FUZZ
@given(metadata_like)
def test_using_metadata(tracer, spans, value):
    with using_attributes(**OUTER):
        if not is_metadata(value):
            rejects(lambda: using_metadata(value), "metadata")
            return
        expected = {"o": 1, **as_json(value)}
        with using_metadata(value), tracer.start_as_current_span("inside"):
            assert dict(current().metadata) == expected
        assert json.loads(spans.all()[-1].attributes["metadata"]) == expected

        @using_metadata(value)
        def read() -> dict[str, Any]:
            return dict(current().metadata)

        assert read() == expected
        assert dict(current().metadata) == {"o": 1}


@FUZZ
@given(st.dictionaries(valid_id, valid_json, max_size=3), valid_id, poisoned)
def test_one_bad_part_anywhere_in_metadata_is_named_and_nothing_applies(
    spans, metadata, key, poisoned
):
    value, error = poisoned
    hostile = {**metadata, key: value}
    with using_attributes(**OUTER):
        before = current()
        for make in (
            lambda: using_metadata(hostile),
            lambda: using_attributes(session_id="s", metadata=hostile),
            lambda: using_attributes(metadata=hostile, tags=["t"]),
            lambda: SessionTracker("s", metadata=hostile),
        ):
            with pytest.raises(error) as raised:
                make()
            assert str(raised.value).startswith("metadata["), str(raised.value)
            str(raised.value).encode("utf-8")
            assert current() == before
        # The same metadata without the bad part is accepted whole.
        with using_metadata(metadata):
            assert dict(current().metadata) == {"o": 1, **as_json(metadata)}


@FUZZ
@given(tags_like)
def test_using_tags(tracer, spans, value):
    with using_attributes(**OUTER):
        if not is_tags(value):
            rejects(lambda: using_tags(value), "tags")
            return
        expected = tuple(dict.fromkeys(["outer", *value]))
        with using_tags(value), tracer.start_as_current_span("inside"):
            assert current().tags == expected
        assert tuple(spans.all()[-1].attributes["tag.tags"]) == expected
        assert using_tags(value)(lambda: current().tags)() == expected


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "session_id": id_like | not_text,
            "user_id": id_like | not_text,
            "metadata": metadata_like,
            "tags": tags_like,
        },
    )
)
def test_using_attributes_all_or_nothing(tracer, spans, values):
    checks = {
        "session_id": is_clean_text,
        "user_id": is_clean_text,
        "metadata": is_metadata,
        "tags": is_tags,
    }
    bad = [name for name, value in values.items() if not checks[name](value)]
    with using_attributes(**OUTER):
        if bad:
            before = current()
            with pytest.raises((TypeError, ValueError)) as raised:
                using_attributes(**values)
            # The first bad argument in the order the scope checks them is the one named.
            assert any(name in str(raised.value) for name in bad), str(raised.value)
            assert current() == before
            return
        with using_attributes(**values), tracer.start_as_current_span("inside"):
            now = current()
        attributes = spans.all()[-1].attributes
        assert now.session_id == values.get("session_id", "outer")
        assert attributes["session.id"] == now.session_id
        assert now.user_id == values.get("user_id", "outer-user")
        assert dict(now.metadata) == {"o": 1, **as_json(values.get("metadata", {}))}
        assert json.loads(attributes["metadata"]) == dict(now.metadata)
        assert now.tags == tuple(dict.fromkeys(["outer", *values.get("tags", [])]))


# --- set_session / set_user -----------------------------------------------------------------


@FUZZ
@given(id_like | not_text, st.none() | id_like | not_text)
def test_set_session_and_set_user_restore(tracer, spans, session_id, user_id):
    with using_attributes(**OUTER):
        before = current()
        if not is_clean_text(session_id) or (user_id is not None and not is_clean_text(user_id)):
            named = "session_id" if not is_clean_text(session_id) else "user_id"
            rejects(lambda: set_session(session_id, user_id=user_id), named)
            if not is_clean_text(session_id):
                rejects(lambda: set_user(session_id), "user_id")
            return
        handle = set_session(session_id, user_id=user_id)
        try:
            with tracer.start_as_current_span("set"):
                pass
            assert current().session_id == session_id
            assert current().user_id == (user_id or "outer-user")
            assert current().tags == ("outer",)
        finally:
            handle.restore()
        assert spans.all()[-1].attributes["session.id"] == session_id
        assert current() == before
        with set_user(session_id):
            assert current().user_id == session_id
        assert current() == before


# --- carriers ---------------------------------------------------------------------------------


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "session_id": valid_id,
            "user_id": valid_id,
            "metadata": st.dictionaries(valid_id, valid_json, max_size=3),
            "tags": st.lists(valid_id, max_size=3),
        },
    )
)
def test_carrier_round_trips_what_is_in_force(tracer, values):
    with using_attributes(**values), tracer.start_as_current_span("sender") as sender:
        sent = current()
        made = carrier()
    assert all(isinstance(text, str) for text in made.values())
    json.dumps(made).encode("utf-8")  # fit for task headers and JSON
    with using_carrier(made):
        assert current() == sent
        with tracer.start_as_current_span("receiver") as receiver:
            pass
    assert receiver.parent.span_id == sender.get_span_context().span_id


carrier_keys = st.sampled_from(
    ["session_id", "user_id", "metadata", "tags", "traceparent", "tracestate"]
)
def as_carried_json(value: Any) -> str:
    """``value`` as carrier JSON text; what JSON cannot write becomes text nested too deep."""
    try:
        return json.dumps(value, default=repr)
    except (ValueError, RecursionError):  # a cycle, or nesting past the encoder's recursion
        return "[" * 3_000


carrier_values = st.one_of(
    any_text,
    id_like,
    json_like.map(as_carried_json),  # JSON text, often hostile: surrogates, NaN, depth
    st.sampled_from(['{"a": "\\ud800"}', '["\\udfff"]', '{"a": NaN}']),
    st.sampled_from([40, 2_000, 5_000]).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.sampled_from(["00-" + "1" * 32 + "-" + "2" * 16 + "-01", "00-zz-zz-01"]),
    not_text,
)


@FUZZ
@given(st.dictionaries(carrier_keys | any_text, carrier_values, max_size=4))
def test_using_carrier_with_hostile_values_applies_all_or_nothing(values):
    before = current()
    try:
        scope = using_carrier(values)
        scope.__enter__()
    except (TypeError, ValueError) as error:
        message = str(error)
        assert "carrier" in message, message
        message.encode("utf-8")
        assert current() == before
        return
    try:
        now = current()
        if "session_id" in values:
            assert now.session_id == values["session_id"]
        if "tags" in values:
            assert list(now.tags) == list(dict.fromkeys(json.loads(values["tags"])))
    finally:
        scope.__exit__(None, None, None)
    assert current() == before


@pytest.mark.parametrize(
    ("key", "text", "words"),
    [
        ("metadata", '{"a":' * 2_000 + "1" + "}" * 2_000, "carrier['metadata'] is nested"),
        ("metadata", '{"a":' * 40 + "1" + "}" * 40, "carrier['metadata']['a']['a']"),
        ("tags", "[" * 5_000 + "]" * 5_000, "carrier['tags'] is nested too deep"),
        ("metadata", '{"a": "\\ud800"}', "carrier['metadata']['a'] contains the lone"),
        ("tags", '["ok", "\\udfff"]', "carrier['tags'][1] contains the lone surrogate"),
        ("session_id", "chat\ud800", "carrier['session_id'] contains the lone surrogate"),
        ("traceparent", 42, "carrier['traceparent'] must be a str"),
        ("metadata", 42, "carrier['metadata'] must be a str of JSON"),
    ],
)
def test_hostile_carrier_values_name_the_carrier_key(key, text, words):
    with pytest.raises((TypeError, ValueError)) as raised:
        with using_carrier({key: text}):
            pass
    assert words in str(raised.value)
    assert current().session_id is None


def test_carrier_keys_of_any_type_are_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['b', 1\]"):
        with using_carrier({1: "x", "b": "y"}):  # type: ignore[dict-item]
            pass


def test_an_invalid_traceparent_str_is_ignored_like_the_w3c_propagator_does(tracer):
    with using_carrier({"session_id": "s", "traceparent": "00-zz-zz-01"}):
        with tracer.start_as_current_span("root") as root:
            pass
        assert current().session_id == "s"
    assert root.parent is None


# --- SessionTracker and set_state ---------------------------------------------------------


prices_like = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(max_size=8) | st.integers(),
        st.dictionaries(
            st.sampled_from(["prompt", "completion", "other"]),
            st.floats() | st.integers(-5, 5) | st.text(max_size=2) | st.booleans(),
            max_size=2,
        )
        | st.integers()
        | st.lists(st.floats(), max_size=1),
        max_size=2,
    ),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=3),
    st.integers(),
)


def is_prices(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    for model, rates in value.items():
        if not isinstance(model, str) or not model or not isinstance(rates, dict):
            return False
        if set(rates) - {"prompt", "completion"}:
            return False
        for rate in rates.values():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                return False
            if not 0 <= rate < math.inf:
                return False
    return True


def is_max_steps(value: object) -> bool:
    return value is None or (type(value) is int and value > 0)


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "session_id": id_like | not_text,
            "user_id": id_like | not_text,
            "metadata": metadata_like,
            "max_steps": st.none() | st.integers(-3, 5) | st.booleans() | st.floats() | any_text,
            "prices": prices_like,
        },
    )
)
def test_session_tracker_arguments(spans, arguments):
    checks = {
        "session_id": is_clean_text,
        "user_id": is_clean_text,
        "metadata": is_metadata,
        "max_steps": is_max_steps,
        "prices": is_prices,
    }
    bad = [name for name, value in arguments.items() if not checks[name](value)]
    if bad:
        with pytest.raises((TypeError, ValueError)) as raised:
            SessionTracker(**arguments)
        assert any(name in str(raised.value) for name in bad), str(raised.value)
        assert current() == current().__class__()
        return
    with SessionTracker(**arguments) as tracker:
        assert current().session_id == tracker.session_id
        if "session_id" in arguments:
            assert tracker.session_id == arguments["session_id"]
        assert current().user_id == arguments.get("user_id")
        assert dict(current().metadata) == as_json(arguments.get("metadata") or {})
    assert tracker.summary().status == "ok"


def step_state(spans, session_id: str) -> dict[str, Any]:
    (step,) = [
        span
        for span in spans.all()
        if "sessiontrace.state" in (span.attributes or {})
        and span.attributes["session.id"] == session_id
    ]
    return json.loads(step.attributes["sessiontrace.state"])


@FUZZ
@given(id_like | not_text, json_like)
def test_set_state_takes_json_values_and_leaves_the_state_alone_on_error(spans, key, value):
    with SessionTracker() as tracker, tracker.step("one"):
        tracker.set_state("kept", [1, "two"])
        if is_clean_text(key) and is_json_value(value):
            tracker.set_state(key, value)
            expected = {"kept": [1, "two"], key: as_json(value)}
        else:
            with pytest.raises((TypeError, ValueError)) as raised:
                tracker.set_state(key, value)
            message = str(raised.value)
            assert ("key" if not is_clean_text(key) else "value") in message, message
            message.encode("utf-8")
            expected = {"kept": [1, "two"]}
    assert step_state(spans, tracker.session_id) == expected


@FUZZ
@given(valid_id, poisoned)
def test_set_state_names_the_bad_part_of_a_value(spans, key, poisoned):
    value, error = poisoned
    with SessionTracker() as tracker, tracker.step("one"):
        tracker.set_state("kept", 1)
        with pytest.raises(error) as raised:
            tracker.set_state(key, value)
        assert str(raised.value).startswith("value (state["), str(raised.value)
    assert step_state(spans, tracker.session_id) == {"kept": 1}


# --- observe ------------------------------------------------------------------------------


@FUZZ
@given(id_like | not_text | st.none())
def test_observe_name(spans, name):
    if name is None:
        @observe(name=None)
        def unnamed() -> int:
            return 1

        assert unnamed() == 1
        assert spans.all()[-1].name.endswith("unnamed")
        return
    if not (isinstance(name, str) and name.strip() and no_surrogate(name)):
        with pytest.raises((TypeError, ValueError)) as raised:
            observe(name=name)
        assert "name" in str(raised.value)
        return
    with observe(name=name):
        pass
    assert spans.all()[-1].name == name

    @observe(name=name)
    def named() -> int:
        return 2

    assert named() == 2
    assert spans.all()[-1].name == name
