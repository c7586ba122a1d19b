"""_usage: token counts from each dialect family, and is_llm_call on values of any shape."""

from __future__ import annotations

import math

import pytest

from sessiontrace import _keys
from sessiontrace._usage import is_llm_call, model_name, reported_cost, token_counts

OI = (_keys.OI_TOKENS_PROMPT, _keys.OI_TOKENS_COMPLETION, _keys.OI_TOKENS_TOTAL)
GENAI = (_keys.GENAI_INPUT_TOKENS, _keys.GENAI_OUTPUT_TOKENS)
TRACELOOP = (
    _keys.TRACELOOP_PROMPT_TOKENS,
    _keys.TRACELOOP_COMPLETION_TOKENS,
    _keys.TRACELOOP_TOTAL_TOKENS,
)

# Every JSON shape a stored attribute can take, and what a foreign writer may put there.
HOSTILE = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "   ",
    "LLM",
    "chat",
    [],
    ["chat"],
    [["LLM"]],
    {},
    {"chat": 1},
    {"name": "chat"},
    b"chat",
]


# --- token_counts: one family per span -------------------------------------------------


def test_openinference_counts_with_their_own_total():
    prompt, completion, total = OI
    assert token_counts({prompt: 3, completion: 4, total: 10}) == (3, 4, 10)


def test_openinference_total_alone():
    assert token_counts({_keys.OI_TOKENS_TOTAL: 7}) == (None, None, 7)


def test_genai_counts_have_no_total_key_so_it_is_the_sum():
    input_key, output_key = GENAI
    assert token_counts({input_key: 3, output_key: 4}) == (3, 4, 7)
    assert token_counts({input_key: 3}) == (3, None, 3)
    assert token_counts({output_key: 4}) == (None, 4, 4)


def test_traceloop_counts_with_and_without_their_total():
    prompt, completion, total = TRACELOOP
    assert token_counts({prompt: 2, completion: 5, total: 9}) == (2, 5, 9)
    assert token_counts({prompt: 2, completion: 5}) == (2, 5, 7)


def test_the_first_family_a_span_carries_wins_and_others_are_not_added():
    attributes = {
        _keys.OI_TOKENS_PROMPT: 1,
        _keys.GENAI_INPUT_TOKENS: 100,
        _keys.GENAI_OUTPUT_TOKENS: 200,
        _keys.TRACELOOP_TOTAL_TOKENS: 1000,
    }
    assert token_counts(attributes) == (1, None, 1)
    del attributes[_keys.OI_TOKENS_PROMPT]
    assert token_counts(attributes) == (100, 200, 300)


def test_a_family_whose_values_are_all_unusable_is_skipped():
    attributes = {_keys.OI_TOKENS_PROMPT: "many", _keys.GENAI_INPUT_TOKENS: 5}
    assert token_counts(attributes) == (5, None, 5)


def test_no_token_keys_means_no_counts():
    assert token_counts({}) == (None, None, None)
    assert token_counts({"http.method": "GET"}) == (None, None, None)


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_not_a_count(value):
    assert token_counts({_keys.OI_TOKENS_PROMPT: value}) == (None, None, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.0, 3),
        ("12", 12),
        (" 12 ", 12),
        (0, 0),
    ],
)
def test_whole_numbers_in_other_types_are_counts(value, expected):
    assert token_counts({_keys.GENAI_INPUT_TOKENS: value}) == (expected, None, expected)


@pytest.mark.parametrize(
    "value",
    [2.5, float("nan"), float("inf"), "-3", "3.0", "three", "", None, [3], {"n": 3}, b"3"],
)
def test_values_that_are_not_whole_numbers_are_not_counts(value):
    assert token_counts({_keys.GENAI_INPUT_TOKENS: value}) == (None, None, None)


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "1\u00b2", "9" * 5000])
def test_digit_text_int_cannot_read_is_not_a_count(value):
    # Superscripts pass str.isdigit but not int(), and int() refuses more than 4300 digits:
    # both raised ValueError, which lost the span in the store exporter.
    assert token_counts({_keys.GENAI_INPUT_TOKENS: value}) == (None, None, None)
    assert is_llm_call({_keys.OI_TOKENS_PROMPT: value}) is False


def test_decimal_digits_of_other_scripts_still_count():
    assert token_counts({_keys.GENAI_INPUT_TOKENS: "\u0663"}) == (3, None, 3)  # Arabic-Indic 3


def test_a_negative_count_is_not_a_count():
    assert token_counts({_keys.GENAI_INPUT_TOKENS: -3}) == (None, None, None)


@pytest.mark.parametrize("value", [10**30, 2**63, "9" * 30])
def test_a_count_past_sqlites_integers_is_not_a_count(value):
    assert token_counts({_keys.GENAI_INPUT_TOKENS: value}) == (None, None, None)


def test_a_sum_past_sqlites_integers_has_no_total():
    big = 2**63 - 1
    assert token_counts({_keys.GENAI_INPUT_TOKENS: big, _keys.GENAI_OUTPUT_TOKENS: big}) == (
        big,
        big,
        None,
    )


@pytest.mark.parametrize("value", HOSTILE)
def test_token_counts_never_raises(value):
    for key in (*OI, *GENAI, *TRACELOOP):
        prompt, completion, total = token_counts({key: value})
        for count in (prompt, completion, total):
            assert count is None or (isinstance(count, int) and not isinstance(count, bool))


# --- is_llm_call -----------------------------------------------------------------------


def test_openinference_llm_kind_is_a_call():
    assert is_llm_call({_keys.OI_SPAN_KIND: "LLM"})
    assert not is_llm_call({_keys.OI_SPAN_KIND: "TOOL"})


@pytest.mark.parametrize("operation", ["chat", "text_completion", "generate_content"])
def test_genai_model_operations_are_calls(operation):
    assert is_llm_call({_keys.GENAI_OPERATION: operation})


@pytest.mark.parametrize("operation", ["embeddings", "execute_tool", "Chat", ""])
def test_other_genai_operations_are_not(operation):
    assert not is_llm_call({_keys.GENAI_OPERATION: operation})


def test_token_counts_alone_make_a_call():
    assert is_llm_call({_keys.GENAI_OUTPUT_TOKENS: 4})
    assert not is_llm_call({})


@pytest.mark.parametrize("value", HOSTILE)
def test_is_llm_call_takes_any_shape_under_any_key(value):
    for key in (_keys.OI_SPAN_KIND, _keys.GENAI_OPERATION, *OI, *GENAI, *TRACELOOP):
        assert isinstance(is_llm_call({key: value}), bool)


@pytest.mark.parametrize("value", [[], ["chat"], {}, {"chat": 1}, [["chat"]]])
def test_an_unhashable_operation_is_not_a_call(value):
    # A list or object where the operation name belongs raised TypeError.
    assert is_llm_call({_keys.GENAI_OPERATION: value}) is False


def test_an_unhashable_operation_does_not_hide_other_evidence():
    assert is_llm_call({_keys.GENAI_OPERATION: ["chat"], _keys.OI_SPAN_KIND: "LLM"})
    assert is_llm_call({_keys.GENAI_OPERATION: {"x": 1}, _keys.GENAI_INPUT_TOKENS: 3})


# --- model_name and reported_cost ------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_model_name_takes_only_non_empty_text(value):
    name = model_name({_keys.GENAI_REQUEST_MODEL: value})
    assert name == (value if isinstance(value, str) and value else None)


def test_model_name_prefers_openinference_then_the_response_model():
    attributes = {
        _keys.GENAI_REQUEST_MODEL: "requested",
        _keys.GENAI_RESPONSE_MODEL: "answered",
        _keys.OI_MODEL_NAME: "oi",
    }
    assert model_name(attributes) == "oi"
    del attributes[_keys.OI_MODEL_NAME]
    assert model_name(attributes) == "answered"


@pytest.mark.parametrize("value", HOSTILE)
def test_reported_cost_is_a_finite_number_or_none(value):
    cost = reported_cost({_keys.OI_COST_TOTAL: value})
    number = isinstance(value, int | float) and not isinstance(value, bool)
    assert cost == (float(value) if number and math.isfinite(value) else None)
