"""_tracker_checks: positive, flag and hex_id, each naming the argument it refuses."""

from __future__ import annotations

import pytest

from sessiontrace._tracker_checks import flag, hex_id, positive

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"

# --- positive ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 3, 10**30])
def test_a_positive_int_is_returned_as_it_is(value):
    assert positive(value, "max_steps", allow_none=True) == value
    assert positive(value, "max_steps", allow_none=False) == value


def test_none_passes_only_where_allowed():
    assert positive(None, "max_steps", allow_none=True) is None
    with pytest.raises(TypeError) as raised:
        positive(None, "max_state_bytes", allow_none=False)
    assert str(raised.value) == "max_state_bytes must be a positive int, got NoneType (None)"


@pytest.mark.parametrize(
    ("value", "allow_none", "message"),
    [
        (0, True, "max_steps must be a positive int or None, got 0; pass 1 or more"),
        (-1, True, "max_steps must be a positive int or None, got -1; pass 1 or more"),
        (0, False, "max_steps must be a positive int, got 0; pass 1 or more"),
    ],
)
def test_zero_and_negatives_are_value_errors(value, allow_none, message):
    with pytest.raises(ValueError) as raised:
        positive(value, "max_steps", allow_none=allow_none)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "bool (True)"),
        (False, "bool (False)"),
        (2.0, "float (2.0)"),
        ("3", "str ('3')"),
        ([3], "list ([3])"),
    ],
)
def test_anything_but_an_int_is_a_type_error(value, shown):
    with pytest.raises(TypeError) as raised:
        positive(value, "max_steps", allow_none=True)
    assert str(raised.value) == f"max_steps must be a positive int or None, got {shown}"


def test_a_long_value_is_cut_to_60_characters_in_the_message():
    with pytest.raises(TypeError) as raised:
        positive("x" * 500, "max_steps", allow_none=False)
    assert str(raised.value) == f"max_steps must be a positive int, got str ('{'x' * 59})"


# --- flag --------------------------------------------------------------------------------


def test_a_flag_is_true_or_false():
    assert flag(True, "generate_id") is True
    assert flag(False, "generate_id") is False


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1, "int (1)"), (0, "int (0)"), (None, "NoneType (None)"), ("yes", "str ('yes')")],
)
def test_anything_else_is_a_type_error_naming_the_argument(value, shown):
    with pytest.raises(TypeError) as raised:
        flag(value, "steps_as_children")
    assert str(raised.value) == f"steps_as_children must be True or False, got {shown}"


# --- hex_id ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "digits", "number"),
    [
        (TRACE_ID, 32, 0x4BF92F3577B34DA6A3CE929D0E0E4736),
        (TRACE_ID.upper(), 32, 0x4BF92F3577B34DA6A3CE929D0E0E4736),
        (SPAN_ID, 16, 0x00F067AA0BA902B7),
        ("0" * 31 + "1", 32, 1),
        ("f" * 32, 32, 16**32 - 1),
        ("f" * 16, 16, 16**16 - 1),
        (1, 32, 1),
        (16**32 - 1, 32, 16**32 - 1),
        (16**16 - 1, 16, 16**16 - 1),
    ],
)
def test_hex_digits_or_an_int_give_the_id(value, digits, number):
    assert hex_id(value, "trace_id", digits) == number


@pytest.mark.parametrize(
    ("value", "digits"),
    [
        ("0" * 32, 32),  # an all-zero id is invalid in W3C trace context
        (0, 32),
        (-1, 32),
        (16**32, 32),  # too large
        (16**16, 16),
        (TRACE_ID[:-1], 32),  # wrong length
        (TRACE_ID + "0", 32),
        (TRACE_ID, 16),
        (SPAN_ID, 32),
        ("", 16),
        ("g" * 32, 32),  # not hex
        ("0x" + TRACE_ID[2:], 32),
        (" " + TRACE_ID[1:], 32),
        ("-" + TRACE_ID[1:], 32),
        ("\u0663" * 16, 16),  # a digit, but not a hex digit
        ("4bf9-2f35-77b3-4da6", 16),
    ],
)
def test_zero_too_large_wrong_length_and_non_hex_are_value_errors(value, digits):
    with pytest.raises(ValueError) as raised:
        hex_id(value, "span_id", digits)
    message = str(raised.value)
    assert message.startswith(f"span_id must be {digits} hex digits (as in a traceparent header)")
    assert f"or a non-zero int below 16**{digits}, got " in message
    assert message.endswith(f"got {value!r:.60}")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "bool"),
        (False, "bool"),
        (1.0, "float"),
        (TRACE_ID.encode(), "bytes"),
        (None, "NoneType"),
    ],
)
def test_bools_and_other_types_are_type_errors(value, kind):
    with pytest.raises(TypeError) as raised:
        hex_id(value, "trace_id", 32)
    assert str(raised.value) == (
        "trace_id must be 32 hex digits (str, as in a traceparent header) or a non-zero int, "
        f"got {kind} ({value!r:.60})"
    )
