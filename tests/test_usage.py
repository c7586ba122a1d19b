"""_usage: token counts from each dialect family, and is_llm_call on values of any shape."""

from __future__ import annotations

import math

import pytest

from sessiontrace import _keys
from sessiontrace._usage import (
    CallLedger,
    CallRecord,
    is_llm_call,
    model_name,
    reported_cost,
    token_counts,
)

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


# --- Anthropic's three span shapes: cache tokens are in the prompt, never added again ----

# The token attributes each writer puts on the span of one call whose usage is
# input_tokens=3, cache_read_input_tokens=40, cache_creation_input_tokens=5, output_tokens=5
# (read off their source and off spans of the real client in tests/test_anthropic.py).
ANTHROPIC_SPANS = {
    "openinference": {
        "llm.token_count.prompt": 48,  # input + cache read + cache write
        "llm.token_count.completion": 5,
        "llm.token_count.total": 53,
        "llm.token_count.prompt_details.cache_read": 40,
        "llm.token_count.prompt_details.cache_write": 5,
    },
    "traceloop": {
        "gen_ai.usage.input_tokens": 48,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.total_tokens": 53,
        "gen_ai.usage.cache_read.input_tokens": 40,
        "gen_ai.usage.cache_creation.input_tokens": 5,
    },
    "anthropic-sdk": {
        "gen_ai.usage.input_tokens": 48,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 40,
        "gen_ai.usage.cache_write.input_tokens": 5,
    },
}


@pytest.mark.parametrize("writer", list(ANTHROPIC_SPANS))
def test_anthropic_spans_count_cache_tokens_once(writer):
    assert token_counts(ANTHROPIC_SPANS[writer]) == (48, 5, 53)


# --- CallLedger: a call two spans report is counted once ------------------------------


def record(span_id, parent_id=None, response_id=None, tokens=(48, 5), start=10, end=20):
    return CallRecord(span_id, parent_id, response_id, tokens, start, end)


def test_a_wrapper_around_the_sdk_span_repeats_it_in_either_order():
    ledger = CallLedger()
    assert not ledger.repeats(record(2, parent_id=1, response_id="msg_1"))
    assert ledger.repeats(record(1, parent_id=9, start=5, end=25))
    ledger = CallLedger()  # the parent first (a stream that ends the other way round)
    assert not ledger.repeats(record(1, parent_id=9, start=5, end=25))
    assert ledger.repeats(record(2, parent_id=1, response_id="msg_1"))


def test_parent_and_child_with_other_tokens_are_two_calls():
    ledger = CallLedger()
    assert not ledger.repeats(record(2, parent_id=1, tokens=(10, 2)))
    assert not ledger.repeats(record(1, tokens=(48, 5)))


def test_one_response_id_in_two_traces_overlapping_is_one_call_even_with_other_counts():
    ledger = CallLedger()
    assert not ledger.repeats(record(2, response_id="msg_1", tokens=(48, 5), start=11, end=19))
    assert ledger.repeats(record(1, response_id="msg_1", tokens=(48, 6), start=10, end=20))


def test_a_server_that_repeats_one_id_still_makes_calls_that_follow_each_other_two():
    ledger = CallLedger()
    assert not ledger.repeats(record(1, parent_id=7, response_id="fake", start=10, end=20))
    assert not ledger.repeats(record(2, parent_id=7, response_id="fake", start=30, end=40))
    assert not ledger.repeats(record(3, parent_id=7, response_id="fake", start=50, end=60))


def test_a_sibling_without_an_id_repeats_the_overlapping_sdk_span():
    # OpenInference's messages.stream span is not current when the SDK sends the request.
    ledger = CallLedger()
    assert not ledger.repeats(record(2, parent_id=7, response_id="msg_1", start=11, end=19))
    assert ledger.repeats(record(1, parent_id=7, start=10, end=20))


def test_concurrent_identical_calls_stay_apart():
    # asyncio.gather of one prompt three times: same parent, same tokens, overlapping.
    ledger = CallLedger()
    sdk = [record(n, parent_id=7, response_id=f"msg_{n}", start=10 + n, end=30) for n in (1, 2, 3)]
    assert [ledger.repeats(r) for r in sdk] == [False, False, False]
    wrappers = [record(10 + n, parent_id=7, start=10, end=31) for n in (1, 2, 3)]
    assert [ledger.repeats(r) for r in wrappers] == [True, True, True]


def test_a_span_stands_in_for_one_sibling_at_most():
    # Were a wrapper to end before its SDK span, call 2's SDK span must not hide behind
    # call 1's wrapper and leave call 2's wrapper a repeat of itself.
    ledger = CallLedger()
    assert not ledger.repeats(record(11, parent_id=7, start=10, end=30))  # call 1's wrapper
    assert ledger.repeats(record(2, parent_id=7, response_id="msg_2", start=12, end=29))
    assert not ledger.repeats(record(12, parent_id=7, start=11, end=31))  # call 2's wrapper
    assert ledger.repeats(record(1, parent_id=7, response_id="msg_1", start=11, end=29))


def test_two_spans_without_ids_are_never_siblings_of_one_call():
    ledger = CallLedger()
    assert not ledger.repeats(record(1, parent_id=7))
    assert not ledger.repeats(record(2, parent_id=7))


def test_the_ledger_keeps_a_bounded_number_of_records():
    ledger = CallLedger()
    for n in range(3 * CallLedger.KEPT):
        ledger.repeats(record(n + 1, parent_id=n % 3, response_id=f"msg_{n}"))
    assert len(ledger._by_span) == len(ledger._by_response) == CallLedger.KEPT
    assert all(len(siblings) <= CallLedger.SIBLINGS for siblings in ledger._by_parent.values())


def test_totals_skip_a_repeat_but_count_its_span_and_error():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    from sessiontrace._totals import Totals, counts_of

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("wrapper", attributes=ANTHROPIC_SPANS["openinference"]) as w:
        with tracer.start_as_current_span("sdk", attributes=ANTHROPIC_SPANS["anthropic-sdk"]):
            pass
        w.set_status(Status(StatusCode.ERROR))
    with tracer.start_as_current_span("another call", attributes=ANTHROPIC_SPANS["traceloop"]):
        pass
    totals = Totals()
    for span in exporter.get_finished_spans():  # in end order: sdk, wrapper, another call
        totals.add(counts_of(span, {}))
    assert (totals.spans, totals.errors) == (3, 1)
    assert (totals.llm_calls, totals.prompt, totals.completion, totals.total) == (2, 96, 10, 106)
