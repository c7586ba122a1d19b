"""_units: ages and sizes as people write them, and the errors for what they should not.

tests/test_retention.py already checks whole amounts in every unit and that garbage raises
only TypeError or ValueError; here are the fractions, the exact messages, the boundaries and
the round trip of a printed number.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiontrace._units import AGE_HELP, SIZE_HELP, parse_age, parse_size

# As tests/test_fuzz_api.py: leftover threads of other tests may touch `random` mid-draw.
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

AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}


# --- what is accepted --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 604800.0),
        ("90m", 5400.0),
        ("1.5h", 5400.0),
        ("0.5d", 43200.0),
        ("2w", 1209600.0),
        ("45s", 45.0),
        ("12H", 43200.0),
        (" 7 d ", 604800.0),
        ("\t3m\n", 180.0),
        ("0.001s", 0.001),
    ],
)
def test_ages_in_every_spelling(text, seconds):
    result = parse_age(text)
    assert result == seconds
    assert type(result) is float


@pytest.mark.parametrize(("value", "seconds"), [(3600, 3600.0), (0.25, 0.25), (1e9, 1e9)])
def test_a_number_is_an_age_in_seconds(value, seconds):
    result = parse_age(value)
    assert result == seconds
    assert type(result) is float


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500MB", 500_000_000),
        ("500mb", 500_000_000),
        ("1GiB", 1 << 30),
        ("1gib", 1 << 30),
        ("1.5GiB", 1_610_612_736),
        ("2.5KB", 2500),
        ("4096", 4096),
        ("4096B", 4096),
        (" 10 KiB ", 10240),
        ("1.9", 1),  # a fraction of a byte is cut, not rounded
        ("3TiB", 3 * 1024**4),
    ],
)
def test_sizes_in_every_spelling(text, size):
    result = parse_size(text)
    assert result == size
    assert type(result) is int


def test_a_whole_size_is_exact_past_float_precision():
    # 2**53 + 1 bytes is not a float; whole amounts never go through one.
    assert parse_size(str(2**53 + 1)) == 2**53 + 1
    assert parse_size("9007199254740993TiB") == 9007199254740993 * 1024**4
    assert parse_size(2**70) == 2**70


# --- what is refused, and what the message says ------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("7 days", f"store_max_age '7 days' is not an age; write {AGE_HELP}"),
        ("7y", f"store_max_age '7y' is not an age; write {AGE_HELP}"),
        ("", f"store_max_age '' is not an age; write {AGE_HELP}"),
        ("d", f"store_max_age 'd' is not an age; write {AGE_HELP}"),
        ("-7d", f"store_max_age '-7d' is not an age; write {AGE_HELP}"),
        ("1e3s", f"store_max_age '1e3s' is not an age; write {AGE_HELP}"),
        ("1.d", f"store_max_age '1.d' is not an age; write {AGE_HELP}"),
        ("7MB", f"store_max_age '7MB' is not an age; write {AGE_HELP}"),
        # Text needs its unit (docs/cli.md: "a number and a unit"); a number is seconds.
        ("45", f"store_max_age '45' is not an age; write {AGE_HELP}"),
        ("0d", f"store_max_age must be more than 0 seconds, got '0d'; write {AGE_HELP}"),
        (0, f"store_max_age must be more than 0 seconds, got 0; write {AGE_HELP}"),
        (-1.5, f"store_max_age must be more than 0 seconds, got -1.5; write {AGE_HELP}"),
        (math.nan, f"store_max_age must be more than 0 seconds, got nan; write {AGE_HELP}"),
        (-math.inf, f"store_max_age must be more than 0 seconds, got -inf; write {AGE_HELP}"),
        (math.inf, f"store_max_age inf is too long an age; write {AGE_HELP}"),
        ("9" * 400 + "w", "is too long an age"),
        (10**400, f"store_max_age (a number past 10**30) is too long an age; write {AGE_HELP}"),
        (-(10**400), "must be more than 0 seconds, got (a number below -10**30)"),
    ],
)
def test_a_bad_age_is_a_value_error_naming_the_argument(value, message):
    with pytest.raises(ValueError) as raised:
        parse_age(value, "store_max_age")
    assert message in str(raised.value)
    assert str(raised.value).startswith("store_max_age ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5PB", f"store_max_bytes '5PB' is not a size; write {SIZE_HELP}"),
        ("5 megabytes", f"store_max_bytes '5 megabytes' is not a size; write {SIZE_HELP}"),
        ("-5MB", f"store_max_bytes '-5MB' is not a size; write {SIZE_HELP}"),
        ("7d", f"store_max_bytes '7d' is not a size; write {SIZE_HELP}"),
        ("0", f"store_max_bytes must be more than 0 bytes, got '0'; write {SIZE_HELP}"),
        ("0.5", f"store_max_bytes must be more than 0 bytes, got '0.5'; write {SIZE_HELP}"),
        (0, f"store_max_bytes must be more than 0 bytes, got 0; write {SIZE_HELP}"),
        (-4096, f"store_max_bytes must be more than 0 bytes, got -4096; write {SIZE_HELP}"),
        ("9" * 5000, "store_max_bytes '9999999999999999999999999999999999999999999999999999999"),
        ("9" * 5000, f"999... is too large; write {SIZE_HELP}"),
        ("9" * 400 + ".5TiB", "is too large"),
    ],
)
def test_a_bad_size_is_a_value_error_naming_the_argument(value, message):
    with pytest.raises(ValueError) as raised:
        parse_size(value, "store_max_bytes")
    assert message in str(raised.value)
    assert str(raised.value).startswith("store_max_bytes ")


def test_a_long_bad_value_is_cut_in_the_message():
    with pytest.raises(ValueError) as raised:
        parse_age("x" * 500, "older_than")
    shown = str(raised.value).split(" is not an age")[0].removeprefix("older_than ")
    assert len(shown) == 60 and shown.endswith("...")


@pytest.mark.parametrize("parse", [parse_age, parse_size])
@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "bool"), (None, "NoneType"), (b"7d", "bytes"), (["7d"], "list")],
)
def test_a_value_of_the_wrong_type_is_a_type_error_naming_the_argument(parse, value, kind):
    with pytest.raises(TypeError) as raised:
        parse(value, "--older-than")
    assert str(raised.value).startswith("--older-than must be ")
    assert str(raised.value).endswith(f"got {kind}")


def test_a_size_is_whole_bytes_not_a_float():
    with pytest.raises(TypeError, match=r"^store_max_bytes must be bytes .* got float$"):
        parse_size(1.5e9, "store_max_bytes")


def test_the_argument_name_defaults_to_age_and_size():
    with pytest.raises(ValueError, match=r"^age 'soon' is not an age"):
        parse_age("soon")
    with pytest.raises(ValueError, match=r"^size 'big' is not a size"):
        parse_size("big")


def test_the_help_names_every_unit_accepted():
    for unit in AGE_UNITS:
        assert parse_age(f"1{unit}") > 0
        assert f" {unit}" in AGE_HELP or f"{unit}," in AGE_HELP
    for unit in SIZE_UNITS:
        assert parse_size(f"1{unit}") > 0
        assert unit in SIZE_HELP or unit == "B"


# --- a number printed with a unit parses back --------------------------------------------

# repr() of a float writes no exponent from 1e-4 up to (not including) 1e16.
printed_floats = st.floats(min_value=1e-4, max_value=1e15, exclude_max=True)


@FUZZ
@given(seconds=printed_floats, upper=st.booleans(), space=st.sampled_from(["", " ", "\t"]))
def test_a_printed_age_in_seconds_parses_back_to_the_same_float(seconds, upper, space):
    text = repr(seconds)
    assert "e" not in text
    unit = "S" if upper else "s"
    assert parse_age(f"{text}{space}{unit}") == seconds
    assert parse_age(seconds) == seconds


@FUZZ
@given(amount=printed_floats, unit=st.sampled_from(sorted(AGE_UNITS)))
def test_a_printed_age_in_any_unit_is_that_many_units(amount, unit):
    assert parse_age(f"{amount!r}{unit}") == amount * AGE_UNITS[unit]


@FUZZ
@given(size=st.integers(min_value=1, max_value=10**4000))
def test_a_printed_whole_size_parses_back_to_the_same_int(size):
    assert parse_size(str(size)) == size
    assert parse_size(f"{size}B") == size
    assert parse_size(size) == size


@FUZZ
@given(amount=st.integers(min_value=1, max_value=10**40), unit=st.sampled_from(sorted(SIZE_UNITS)))
def test_a_printed_size_with_a_unit_is_exactly_that_many_units(amount, unit):
    size = parse_size(f"{amount} {unit.upper()}")
    assert size == amount * SIZE_UNITS[unit]
    assert parse_size(str(size)) == size  # and printed again as bytes, it reads back


@FUZZ
@given(amount=printed_floats, unit=st.sampled_from(sorted(SIZE_UNITS)))
def test_a_printed_fractional_size_is_the_bytes_it_names_cut_to_whole(amount, unit):
    expected = int(amount * SIZE_UNITS[unit])
    if expected < 1:
        with pytest.raises(ValueError, match="must be more than 0 bytes"):
            parse_size(f"{amount!r}{unit}")
    else:
        assert parse_size(f"{amount!r}{unit}") == expected
