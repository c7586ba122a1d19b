"""_totals: what each ended span adds to a tracker's totals, priced or as reported."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from sessiontrace._totals import Totals, check_prices, counts_of, priced

PRICES = check_prices({"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}})


def ended(attributes: dict[str, object], failed: bool = False):
    span = TracerProvider().get_tracer("t").start_span("s", attributes=attributes)  # type: ignore[arg-type]
    if failed:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end()
    return span


def test_openinference_tokens_are_priced_from_the_model():
    counts = counts_of(
        ended(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.token_count.prompt": 1_000_000,
                "llm.token_count.completion": 500_000,
                "llm.token_count.total": 1_500_000,
            }
        ),
        PRICES,
    )
    assert counts is not None
    assert (counts.llm_call, counts.prompt, counts.completion, counts.total) == (
        True,
        1_000_000,
        500_000,
        1_500_000,
    )
    assert counts.cost == pytest.approx(0.15 + 0.3)


def test_a_reported_cost_wins_over_prices_and_genai_tokens_count():
    counts = counts_of(
        ended(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 5,
                "llm.cost.total": 0.5,
            }
        ),
        PRICES,
    )
    assert counts is not None
    assert (counts.llm_call, counts.prompt, counts.completion, counts.cost) == (True, 10, 5, 0.5)


def test_plain_and_failed_spans_count_and_the_summary_span_does_not():
    plain = counts_of(ended({}), PRICES)
    failed = counts_of(ended({}, failed=True), PRICES)
    assert plain is not None and failed is not None
    assert (plain.llm_call, plain.cost, plain.failed, failed.failed) == (False, None, False, True)
    assert counts_of(ended({"sessiontrace.span.type": "summary"}), PRICES) is None


def test_totals_add_up_and_become_a_summary():
    totals = Totals()
    for attributes, failed in (({"llm.token_count.prompt": 3, "llm.cost.total": 0.25}, False),
                               ({"llm.token_count.prompt": 4}, True)):  # fmt: skip
        counts = counts_of(ended(attributes, failed), {})
        assert counts is not None
        totals.add(counts)
    summary = totals.summary(
        started_ns=1_000_000_000,
        ended_ns=3_500_000_000,
        session_id="s",
        name=None,
        user_id=None,
        parent_session_id=None,
        status="ok",
        error=None,
        steps=0,
        children=(),
    )
    found = (summary.spans, summary.prompt_tokens, summary.errors, summary.cost_usd)
    assert found == (2, 7, 1, 0.25)
    assert summary.duration_seconds == 2.5
    assert summary.started_at is not None and summary.started_at.year == 1970


def test_a_model_without_a_price_or_counts_costs_nothing_known():
    assert priced(PRICES, "unknown", 10, 10) is None
    assert priced(PRICES, "gpt-4o-mini", None, None) is None
    assert priced(PRICES, None, 10, 10) is None


def test_cache_rates_price_the_cached_part_of_the_prompt():
    rates = check_prices({"c": {"prompt": 3, "completion": 15, "cache_read": 0.3}})
    assert rates == {"c": (3.0, 15.0, 0.3, 3.0)}  # a cache rate left out is the prompt rate
    # 1,000 prompt tokens, 600 of them read from the cache and 100 written to it.
    cost = priced(rates, "c", 1000, 10, cached=(600, 100))
    assert cost == pytest.approx((300 * 3 + 600 * 0.3 + 100 * 3 + 10 * 15) / 1e6)
    # More cached than the prompt (a broken count) never prices more than the prompt holds.
    assert priced(rates, "c", 100, 0, cached=(600, 100)) == pytest.approx(100 * 0.3 / 1e6)
    # Without cache rates, cached tokens are prompt tokens like the rest.
    plain = check_prices({"c": {"prompt": 3, "completion": 15}})
    assert priced(plain, "c", 1000, 10, cached=(600, 100)) == pytest.approx(3.15 / 1e3)


@pytest.mark.parametrize(
    ("prices", "error", "words"),
    [
        ([1], TypeError, "prices must map model names"),
        ({"m": {"prompt": -1}}, ValueError, "finite number >= 0"),
        ({"m": {"prompt": True}}, TypeError, "must be a number of USD"),
        ({"m": {"input": 1}}, ValueError, "unknown key(s) 'input'"),
        ({"m": {"prompt": 1, "cache_read": "0.3"}}, TypeError, "['cache_read'] must be a number"),
        ({"m": {"prompt": 1, "cache_write": float("nan")}}, ValueError, "finite number >= 0"),
    ],
)
def test_bad_prices_are_refused_whole(prices, error, words):
    with pytest.raises(error) as raised:
        check_prices(prices)
    assert words in str(raised.value)
